"""`make demo` now against the demo as it was when issue #11 was filed, one right after the other.

Each run is its own `python -m convnet train fashion_mnist ...` process (numpy imported
first, no environment set, as a user runs it), the demos alternating for `--rounds`
rounds. The table gives each run's test accuracy and training time (the time of
`fit`, from the run's metrics.json), the medians, and the ratios of the medians.

  filed   the demo as it was when the issue was filed: the code of commit FILED_COMMIT
          (unpacked from this repository's history into a temporary folder, run with
          this interpreter and its packages) with that commit's DEMO_ARGS: 10 epochs
          of all 60,000 training images, batch 64, Adam 2e-3 decayed by 0.75 per
          epoch, dropout 0.3, validating on the test set after every epoch. Its
          kernels are compiled by one short untimed run first.
  before  the same settings on today's code (today's `convnet train` with
          --validation-split 0, given the test split as its validation data:
          --before-child): the stricter comparison, which credits the new demo
          with none of the engine's speed-ups since.
  now     DEMO_ARGS of the Makefile: what `make demo` runs.

    python benchmarks/demo.py               # 2 rounds (about 16 minutes on 2 cores)
    python benchmarks/demo.py --no-filed    # before and now only (about 11 minutes)
    python benchmarks/demo.py --quick       # 1 epoch of 2,000 images each, end to end
"""

import argparse
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile

from common import ROOT, bench_env, machine_info

MAKEFILE = os.path.join(ROOT, "Makefile")
#: the last commit before issue #11 was filed (2026-11-28 10:12 UTC)
FILED_COMMIT = "715b096"
#: that commit's DEMO_ARGS
FILED_ARGS = "--model fmnist-cnn --epochs 10 --batch-size 64 --dropout 0.3 --learning-rate 2e-3 --lr-decay 0.75"
BEFORE_ARGS = FILED_ARGS + " --validation-split 0"


def demo_args(makefile=MAKEFILE):
    """The DEMO_ARGS line of the Makefile, as a list of arguments."""
    with open(makefile) as f:
        for line in f:
            name, sep, value = line.partition("?=")
            if sep and name.strip() == "DEMO_ARGS":
                return shlex.split(value)
    raise RuntimeError(f"{makefile} has no DEMO_ARGS ?= line")


def before_child(argv):
    """`convnet train` validating on the test split after every epoch, as the demo did
    when the issue was filed (today it holds out part of the training split)."""
    from convnet import cli

    split_as_today = cli.training_data

    def test_split_validates(args):
        train, _, test, class_names, input_shape, labels = split_as_today(args)
        return train, test, test, class_names, input_shape, labels
    cli.training_data = test_split_validates
    sys.exit(cli.main(["train", "fashion_mnist", *argv]))


def unpack_filed_code(folder):
    """FILED_COMMIT's tree, from this repository's history, into `folder`."""
    proc = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", FILED_COMMIT],
                          capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"git archive {FILED_COMMIT} failed (a clone with its history is needed): "
                           f"{proc.stderr.decode(errors='replace')}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(folder, filter="data")


def train(args, before=False, code=ROOT):
    """One `convnet train fashion_mnist` process (or a --before-child one) on the
    convnet package in `code`: its metrics.json as a dict."""
    with tempfile.TemporaryDirectory() as out:
        start = [os.path.abspath(__file__), "--before-child"] if before else ["-m", "convnet", "train", "fashion_mnist"]
        cmd = [sys.executable, *start, *args, "--verbose", "0", "--output-dir", out]
        env = bench_env() if code == ROOT else bench_env(PYTHONPATH=code)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        (run_dir,) = os.listdir(out)
        with open(os.path.join(out, run_dir, "metrics.json")) as f:
            return json.load(f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 epoch on 2,000 images")
    parser.add_argument("--no-filed", action="store_true", help="leave out the demo on the code as filed")
    parser.add_argument("--before-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.before_child is not None:
        before_child(a.before_child)
    configs = {"before": shlex.split(BEFORE_ARGS), "now": demo_args()}
    if not a.no_filed:
        configs = {"filed": shlex.split(FILED_ARGS), **configs}
    if a.quick:
        a.rounds = 1
        configs = {k: v + ["--epochs", "1", "--limit", "2000"] for k, v in configs.items()}
    with tempfile.TemporaryDirectory() as filed_code:
        if "filed" in configs:
            unpack_filed_code(filed_code)
            train(shlex.split(FILED_ARGS) + ["--epochs", "1", "--limit", "2000"], code=filed_code)  # compiles
        runs = {k: [] for k in configs}
        for r in range(a.rounds):
            for name, args in configs.items():
                m = train(args, before=name == "before", code=filed_code if name == "filed" else ROOT)
                runs[name].append(m)
                print(f"round {r + 1} {name}: test accuracy {m['test_accuracy']:.4f}, "
                      f"training {m['train_seconds']:.1f} s", flush=True)
    info = machine_info()
    print(f"\n{info.get('date', '')} {info.get('cpu', '')}")
    print("| demo | code, arguments | test accuracy per run | training s per run | median s |")
    print("|---|---|---|---|---|")
    median = {}
    for name, args in configs.items():
        acc = ", ".join(f"{m['test_accuracy']:.2%}" for m in runs[name])
        secs = [m["train_seconds"] for m in runs[name]]
        median[name] = statistics.median(secs)
        code = f"{FILED_COMMIT}, " if name == "filed" else "this tree, "
        how = code + f"`{shlex.join(args)}`" + (", validating on the test split" if name != "now" else "")
        print(f"| {name} | {how} | {acc} | {', '.join(f'{s:.1f}' for s in secs)} "
              f"| {median[name]:.1f} |")
    for name in ("filed", "before"):
        if name in median:
            print(f"\nnow / {name} training time: {median['now'] / median[name]:.3f}")


if __name__ == "__main__":
    main()
