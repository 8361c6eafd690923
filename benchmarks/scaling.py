"""How cost grows: convnet's training throughput as the batch and the image grow.

Two tables, each configuration in its own process (numpy imported first, no
environment set), the median of `--rounds` processes:

  batch  W1 and W4 training at batch 8, 32, 128 and 512
  input  W4 training at batch 32 with inputs of 64, 128, 256 and 512 pixels a side

Images/s and the time per image (us) show where the curve bends: per-call
overheads dominate small batches, and once a layer's activations outgrow the
caches (L2 per core, then the shared L3) memory bandwidth does.

    python benchmarks/scaling.py                 # both tables, 3 rounds
    python benchmarks/scaling.py --quick         # tiny settings, to check it end to end
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from common import bench_env, parse_json_line, throughput

HERE = os.path.dirname(os.path.abspath(__file__))
BATCHES = [8, 32, 128, 512]
SIZES = [64, 128, 256, 512]


def child(workload, batch, size, min_time, windows):
    import workloads as wl
    model = wl.build(workload, size=size)
    x, y = wl.batch(workload, batch, size=size)
    rate = throughput(lambda: model.train_step(x, y), batch, min_time, windows)
    print("JSON " + json.dumps({"workload": workload, "batch": batch, "size": size, "images_per_s": rate}))


def measure(workload, batch, size, rounds, min_time, windows):
    rates = []
    for _ in range(rounds):
        proc = subprocess.run([sys.executable, os.path.join(HERE, "scaling.py"), "--child", workload,
                               str(batch), str(size or 0), "--min-time", str(min_time), "--windows", str(windows)],
                              capture_output=True, text=True, env=bench_env(), timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"scaling.py {workload} batch {batch} size {size} failed:\n{proc.stderr}")
        rates.append(parse_json_line(proc.stdout)["images_per_s"])
    return statistics.median(rates)


def run(rounds=3, min_time=0.4, windows=3, batches=BATCHES, sizes=SIZES):
    by_batch = [(w, n, measure(w, n, None, rounds, min_time, windows)) for w in ("W1", "W4") for n in batches]
    by_size = [(s, measure("W4", 32, s, rounds, min_time, windows)) for s in sizes]
    return by_batch, by_size


def format_tables(by_batch, by_size):
    lines = ["### Training throughput by batch size", "",
             "| workload | batch | images/s | us per image |", "|---|---|---|---|"]
    lines += [f"| {w} | {n} | {r:,.0f} | {1e6 / r:,.0f} |" for w, n, r in by_batch]
    lines += ["", "### W4 training at batch 32, by input size", "",
              "| input | images/s | us per image | us per image per 1,000 pixels |", "|---|---|---|---|"]
    lines += [f"| {s}x{s} | {r:,.0f} | {1e6 / r:,.0f} | {1e9 / r / (s * s):.2f} |" for s, r in by_size]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("WORKLOAD", "BATCH", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round, short windows, small batches and sizes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        workload, batch, size = args.child
        child(workload, int(batch), int(size) or None, args.min_time, args.windows)
        return
    batches, sizes = BATCHES, SIZES
    if args.quick:
        args.rounds, args.min_time, args.windows = 1, 0.02, 1
        batches, sizes = [2, 8], [64, 128]
    by_batch, by_size = run(args.rounds, args.min_time, args.windows, batches, sizes)
    if args.json:
        print("JSON " + json.dumps({"by_batch": by_batch, "by_size": by_size}))
    else:
        print(format_tables(by_batch, by_size))


if __name__ == "__main__":
    main()
