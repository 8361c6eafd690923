"""Entry point of `make bench`: the whole benchmark suite, results in RESULTS.md.

    python benchmarks/run_all.py              # compare.py with 5 rounds (about 15-20 min)
    python benchmarks/run_all.py --quick      # compare.py --quick: tiny settings, prints only

Run it on a quiet machine (check `uptime`): other processes on the two cores
move the numbers by tens of percent.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"note: load average is {load:.2f}; timings will be noisy", file=sys.stderr)
    cmd = [sys.executable, os.path.join(HERE, "compare.py")]
    if args.quick:
        cmd += ["--quick"]
    else:
        cmd += ["--rounds", str(args.rounds)]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
