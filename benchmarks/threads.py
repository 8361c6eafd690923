"""Do OpenBLAS and Numba's threads fight? GEMM followed by a parallel Numba kernel.

On 2 cores both OpenBLAS (numpy's GEMM) and Numba's parallel kernels want both
cores. With Numba's OpenMP layer, OpenMP workers spin-wait after a parallel
region while OpenBLAS's workers do the same after a GEMM, so alternating the two
(what a convolution does: im2col, GEMM, im2col, ...) can run far slower than the
two apart. This script measures, for each setting in its own process:

  gemm      the W2 conv2 chunk GEMM alone           (7168x288 @ 288x32)
  kernel    the parallel im2col of that chunk alone
  pair      im2col then GEMM, alternated            (ratio: pair / (gemm + kernel))
  launch    the cost of starting a parallel kernel on a tiny input (batch-1 inference)
  W1, W2    a whole training step at batch 128

    python benchmarks/threads.py            # prints the table
convnet/backend/threads.py applies the winner; RESULTS.md records the numbers.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import bench_env, parse_json_line

SETTINGS = [
    ("omp (spinning), 2 threads", {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "ACTIVE"}),
    ("omp passive, 2 threads", {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "PASSIVE"}),
    ("omp, 1 numba thread", {"NUMBA_THREADING_LAYER": "omp", "NUMBA_NUM_THREADS": "1"}),
    ("workqueue, 2 threads", {"NUMBA_THREADING_LAYER": "workqueue"}),
    ("tbb, 2 threads", {"NUMBA_THREADING_LAYER": "tbb"}),
]


def child(reps):
    # convnet before numpy: it sets OpenBLAS's thread timeout before numpy loads
    # OpenBLAS (convnet/_openblas_env.py), as the other benchmark scripts do
    import time  # noqa: I001
    import convnet as cn
    from convnet.backend.numba.im2col import _im2col_wide as _im2col
    import numpy as np
    import workloads as wl

    def best(fn, r=reps):
        fn()
        ts = []
        for _ in range(r):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    rng = np.random.default_rng(0)
    x = rng.random((7, 32, 32, 32), dtype=np.float32)
    cols = np.empty((7 * 1024, 288), np.float32)
    W = rng.random((288, 32), dtype=np.float32)
    y = np.empty((7 * 1024, 32), np.float32)
    gemm = best(lambda: np.matmul(cols, W, out=y))
    kernel = best(lambda: _im2col(x, 3, 3, 1, 1, 1, 1, 32, 32, cols))

    def pair():
        for _ in range(10):
            _im2col(x, 3, 3, 1, 1, 1, 1, 32, 32, cols)
            np.matmul(cols, W, out=y)
    paired = best(pair) / 10
    # launch cost of a parallel kernel on a tiny input (what batch-1 inference pays)
    xs = rng.random((1, 4, 4, 2), dtype=np.float32)
    small = np.empty((16, 18), np.float32)

    def launches():
        for _ in range(100):
            _im2col(xs, 3, 3, 1, 1, 1, 1, 4, 4, small)
    launch_us = best(launches) * 10
    out = {"gemm_ms": gemm, "kernel_ms": kernel, "pair_ms": paired,
           "pair_ratio": paired / (gemm + kernel), "launch_us": launch_us}
    with cn.use_backend("numba"):
        for w in ("W1", "W2"):
            model = wl.build(w)
            xb, yb = wl.batch(w, 128)
            out[f"{w}_step_ms"] = best(lambda model=model, xb=xb, yb=yb: model.train_step(xb, yb),
                                       max(3, reps // 3))
    import numba
    out["layer"] = numba.threading_layer()
    out["threads"] = numba.get_num_threads()
    print("JSON " + json.dumps(out))


def run(rounds=3, reps=15):
    here = os.path.dirname(os.path.abspath(__file__))
    results = {name: [] for name, _ in SETTINGS}
    for _ in range(rounds):
        for name, env in SETTINGS:
            proc = subprocess.run([sys.executable, os.path.join(here, "threads.py"), "--child",
                                   "--reps", str(reps)], capture_output=True, text=True,
                                  env=bench_env(**env))
            if proc.returncode != 0:        # e.g. the tbb layer is not installed
                results.pop(name, None)
                continue
            if name in results:
                results[name].append(parse_json_line(proc.stdout))
    rows = []
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], float)}
        med["setting"] = name
        med["layer"] = runs[0]["layer"]
        rows.append(med)
    return rows


def format_rows(rows):
    head = (f"| {'setting':<28} | gemm ms | im2col ms | pair ms | pair/(gemm+im2col) "
            f"| launch us | W1 step ms | W2 step ms |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        lines.append(f"| {r['setting']:<28} | {r['gemm_ms']:7.2f} | {r['kernel_ms']:9.2f} | "
                     f"{r['pair_ms']:7.2f} | {r['pair_ratio']:18.2f} | {r['launch_us']:9.1f} | "
                     f"{r['W1_step_ms']:10.1f} | "
                     f"{r['W2_step_ms']:10.1f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        child(args.reps)
        return
    rows = run(args.rounds, args.reps)
    if args.json:
        print("JSON " + json.dumps(rows))
    else:
        print(format_rows(rows))


if __name__ == "__main__":
    main()
