"""Start-up cost: the first W1 training step in a new process vs the steady state.

With Numba, the first call of each kernel either loads it from the on-disk cache
(warm cache, cache=True) or compiles it (cold cache). This script starts fresh
processes and reports, for each:

  import_s   time to `import convnet` (and select the backend)
  first_s    the first model.train_step of W1 (batch 32), build excluded
  steady_s   median of the following steps
  overhead   first_s - steady_s: what a user waits for beyond the steady state

    python benchmarks/startup.py              # warm cache (the cache is filled first)
    python benchmarks/startup.py --cold       # an empty NUMBA_CACHE_DIR: compile time
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import bench_env, parse_json_line


def child(batch):
    t0 = time.perf_counter()
    import convnet as cn
    backend = cn.get_backend()
    t1 = time.perf_counter()
    import workloads as wl
    model = wl.build("W1")
    x, y = wl.batch("W1", batch)
    t2 = time.perf_counter()
    model.train_step(x, y)
    t3 = time.perf_counter()
    steps = []
    for _ in range(10):
        s = time.perf_counter()
        model.train_step(x, y)
        steps.append(time.perf_counter() - s)
    steady = statistics.median(steps)
    print("JSON " + json.dumps({"backend": backend, "import_s": t1 - t0, "first_s": t3 - t2,
                                "steady_s": steady, "overhead_s": (t3 - t2) - steady}))


def run(cold, batch=32, repeats=3):
    here = os.path.abspath(__file__)
    results = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(repeats):
            env = {}
            if cold:
                # a new empty cache directory for every run: everything compiles
                env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir=cache)
            proc = subprocess.run([sys.executable, here, "--child", "--batch", str(batch)],
                                  capture_output=True, text=True, env=bench_env(**env), check=True)
            results.append(parse_json_line(proc.stdout))
    keys = ("import_s", "first_s", "steady_s", "overhead_s")
    out = {k: statistics.median(r[k] for r in results) for k in keys}
    out.update({"cache": "cold" if cold else "warm", "backend": results[0]["backend"], "batch": batch,
                "runs": len(results)})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help="empty NUMBA_CACHE_DIR (compile everything)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        child(args.batch)
        return
    if not args.cold:
        # make sure the cache is filled (the default cache location) before timing
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--batch", str(args.batch)],
                       capture_output=True, text=True, env=bench_env(), check=True)
    out = run(args.cold, args.batch, args.repeats)
    if args.json:
        print("JSON " + json.dumps(out))
    else:
        print(f"{out['backend']} ({out['cache']} cache): import {out['import_s']:.2f} s, first W1 step "
              f"{out['first_s']:.3f} s, steady {out['steady_s'] * 1e3:.1f} ms, overhead "
              f"{out['overhead_s']:.3f} s (median of {out['runs']} processes, batch {out['batch']})")


if __name__ == "__main__":
    main()
