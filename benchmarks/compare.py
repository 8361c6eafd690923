"""convnet vs PyTorch, side by side, written to benchmarks/RESULTS.md.

Runs the engines in separate processes (their thread pools would interfere in
one), alternating them over `--rounds` rounds (the order flips every round), and
reports the median images/s of each configuration and the ratio convnet/torch:

  training   W1-W3 at batch 32 and 128 (train.py / torch_workloads.py --mode train)
  inference  W1-W3 at batch 1, 32 and 128 (infer.py / torch_workloads.py --mode infer)
  memory     peak RSS of W2 training at batch 128, each engine in its own process
  start-up   first W1 training step in a new process, warm and cold Numba cache
  layers     each conv layer's GFLOP/s at batch 128 vs numpy's GEMM rate
  threads    the GEMM-then-parallel-kernel interference per thread setting

    python benchmarks/compare.py                  # everything, 5 rounds, writes RESULTS.md
    python benchmarks/compare.py --rounds 3 --no-write

The OpenBLAS overrides OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed from the
benchmark processes' environment. Text below the "<!-- notes -->" line of an
existing RESULTS.md (the hand-written analysis) is kept.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

from common import ROOT, bench_env, blas_info, machine_info, parse_json_line, versions, wait_for_quiet

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
NOTES_MARK = "<!-- notes -->"

TRAIN_BATCHES = [32, 128]
INFER_BATCHES = [1, 32, 128]
busy_log = []     # CPU busy fraction seen before each benchmark process started
TARGETS = {("train", "W1"): 1.0, ("train", "W2"): 0.8, ("train", "W3"): 1.0,
           ("infer", "W1"): 1.0, ("infer", "W2"): 1.0, ("infer", "W3"): 1.0}


def script(name, *args, env=None, timeout=900):
    proc = subprocess.run([sys.executable, os.path.join(HERE, name), *map(str, args), "--json"],
                          capture_output=True, text=True, env=bench_env(**(env or {})), cwd=ROOT,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return parse_json_line(proc.stdout)


def torch_available():
    proc = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return proc.returncode == 0


def throughput_rounds(rounds, workloads, min_time, with_torch, log):
    """{(engine_kind, mode, workload, batch): [images/s per round]}"""
    runs = {}
    busy_log.clear()
    jobs = [("convnet", "train", "train.py", ["--batch", *TRAIN_BATCHES]),
            ("torch", "train", "torch_workloads.py", ["--mode", "train", "--batch", *TRAIN_BATCHES]),
            ("convnet", "infer", "infer.py", ["--batch", *INFER_BATCHES]),
            ("torch", "infer", "torch_workloads.py", ["--mode", "infer", "--batch", *INFER_BATCHES])]
    if not with_torch:
        jobs = [j for j in jobs if j[0] != "torch"]
    for rnd in range(rounds):
        order = jobs if rnd % 2 == 0 else [jobs[i ^ 1] for i in range(len(jobs))]
        for kind, mode, name, args in order:
            busy = wait_for_quiet()
            log(f"round {rnd + 1}/{rounds}: {kind} {mode} (CPU busy before start "
                f"{'?' if busy is None else f'{100 * busy:.0f}%'})")
            busy_log.append(busy)
            for r in script(name, *args, "--workload", *workloads, "--min-time", min_time):
                runs.setdefault((kind, mode, r["workload"], r["batch"]), []).append(r["images_per_s"])
    return runs


def memory_rounds(rounds, with_torch):
    out = {"convnet": [], "torch": []}
    for rnd in range(rounds):
        engines = ["convnet", "torch"] if rnd % 2 == 0 else ["torch", "convnet"]
        for engine in engines:
            if engine == "torch" and not with_torch:
                continue
            r = script("memory.py", "--engine", engine)
            out[engine].append(r)
    return out


def fmt_rate(v):
    return f"{v:,.0f}" if v is not None else "n/a"


def build_report(info, runs, mem, startup, layers, threads, rounds, command, load_before, load_after,
                 with_torch):
    med = {k: statistics.median(v) for k, v in runs.items()}
    best = {k: max(v) for k, v in runs.items()}
    lines = ["# convnet benchmark results", "",
             f"Produced by `{command}` on {info['date']} "
             f"(load average {load_before:.2f} before, {load_after:.2f} after).", "",
             "## Machine and versions", "",
             f"- CPU: {info['cpu']}, {info['cores']} cores, AVX-512: {'yes' if info['avx512'] else 'no'}, "
             f"memory {info.get('memory_gib', '?')} GiB; {info['platform']}",
             f"- Python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, "
             f"torch {info['torch']} (CPU, `torch.set_num_threads(2)`)",
             f"- numpy BLAS: {info['blas']}",
             f"- convnet numba threads: {info['threads']}",
             "- OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from the benchmark processes' environment",
             f"- Each number is the median over {rounds} rounds; every round runs each engine in a fresh "
             "process, engines alternating (order flipped every round); inside a process, the median "
             "of 5 timing windows after 2 warm-up steps. float32, random data, Adam.",
             "- The machine is shared: before each process starts, the script waits (up to 90 s) until "
             "other processes use < 25% of the CPUs; busy fractions seen: "
             + ", ".join("?" if b is None else f"{100 * b:.0f}%" for b in busy_log) + ". "
             "'best' is the best round of each engine: the least disturbed one, for both engines.",
             ""]

    def table(mode, batches):
        head = ("| workload | batch | convnet (numba) img/s | PyTorch img/s | ratio | target | met "
                "| best convnet | best PyTorch | ratio of bests |")
        rows = [head, "|---|---|---|---|---|---|---|---|---|---|"]
        for w in ("W1", "W2", "W3"):
            for n in batches:
                c = med.get(("convnet", mode, w, n))
                t = med.get(("torch", mode, w, n))
                if c is None:
                    continue
                ratio = c / t if t else None
                target = TARGETS[(mode, w)]
                met = "" if ratio is None else ("yes" if ratio >= target else "**no**")
                bc, bt = best.get(("convnet", mode, w, n)), best.get(("torch", mode, w, n))
                best_ratio = f"{bc / bt:.2f}x" if bt else ""
                rows.append(f"| {w} | {n} | {fmt_rate(c)} | {fmt_rate(t)} | "
                            f"{'' if ratio is None else f'{ratio:.2f}x'} | >= {target:.1f}x | {met} | "
                            f"{fmt_rate(bc)} | {fmt_rate(bt) if bt else 'n/a'} | {best_ratio} |")
        return rows

    lines += ["## Training throughput (images/s, forward + loss + backward + Adam)", ""]
    lines += table("train", TRAIN_BATCHES)
    lines += ["", "## Inference throughput (images/s, `model.predict` / `net(x).softmax` under inference_mode)",
              ""]
    lines += table("infer", INFER_BATCHES)
    if not with_torch:
        lines += ["", "PyTorch is not installed: the torch columns are empty."]

    lines += ["", "## Per-round numbers (images/s)", "",
              "| engine | mode | workload | batch | rounds |", "|---|---|---|---|---|"]
    for (kind, mode, w, n), vals in sorted(runs.items()):
        lines.append(f"| {kind} | {mode} | {w} | {n} | {', '.join(f'{v:,.0f}' for v in vals)} |")

    lines += ["", "## Memory: peak RSS of W2 training, batch 128 (whole process, imports included)", ""]
    c_peak = statistics.median(r["peak_rss_mib"] for r in mem["convnet"])
    c_imp = statistics.median(r["after_import_mib"] for r in mem["convnet"])
    lines += ["| engine | peak RSS MiB | RSS after import MiB |", "|---|---|---|",
              f"| convnet (numba) | {c_peak:.0f} | {c_imp:.0f} |"]
    if mem["torch"]:
        t_peak = statistics.median(r["peak_rss_mib"] for r in mem["torch"])
        t_imp = statistics.median(r["after_import_mib"] for r in mem["torch"])
        lines.append(f"| PyTorch | {t_peak:.0f} | {t_imp:.0f} |")
        lines += ["", f"Ratio convnet / PyTorch: **{c_peak / t_peak:.2f}x** (target <= 1.5x: "
                  f"{'met' if c_peak / t_peak <= 1.5 else 'not met'})."]

    warm, cold = startup
    lines += ["", "## Start-up: first W1 training step (batch 32) in a new process", "",
              "| Numba cache | import convnet s | first step s | steady step ms | first - steady s |",
              "|---|---|---|---|---|"]
    for s in (warm, cold):
        lines.append(f"| {s['cache']} | {s['import_s']:.2f} | {s['first_s']:.3f} | {s['steady_s'] * 1e3:.1f} | "
                     f"{s['overhead_s']:.3f} |")
    lines += ["", f"Warm-cache overhead {warm['overhead_s']:.2f} s (target < 1 s: "
              f"{'met' if warm['overhead_s'] < 1 else 'not met'}); cold compile of every kernel the "
              f"W1 step uses: {cold['overhead_s']:.1f} s (empty NUMBA_CACHE_DIR)."]

    import layers as layers_mod
    square, lrows = layers
    lines += ["", "## Conv layers at batch 128 (training: forward + backward)", "",
              "fwd+bwd GF/s = (forward + backward FLOPs) / (forward + backward time), times the minimum "
              "of 7 repeats; the first layer's "
              "backward computes only the weight gradient. Target: >= 60% of the measured numpy float32 "
              "GEMM rate.", ""]
    lines += layers_mod.format_rows(square, lrows).splitlines()

    import threads as threads_mod
    lines += ["", "## Threads: GEMM then a parallel Numba kernel (benchmarks/threads.py)", "",
              "Each setting in its own process (median of 3); `pair` alternates the W2 conv2 chunk's "
              "im2col and GEMM; a ratio near 1 means no interference.", ""]
    lines += threads_mod.format_rows(threads).splitlines()
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workload", nargs="+", default=["W1", "W2", "W3"])
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--no-write", action="store_true", help="print the report instead of writing it")
    args = parser.parse_args(argv)
    command = "python benchmarks/compare.py" + (f" --rounds {args.rounds}" if args.rounds != 5 else "")

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    with_torch = torch_available()
    if not with_torch:
        log("torch is not installed: running convnet only (pip install torch==2.13.0, CPU build)")
    load_before = os.getloadavg()[0]
    info = machine_info()
    info.update(versions())
    info["blas"] = blas_info()
    info["threads"] = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, '.'); import convnet as cn; "
         "from convnet.backend.numba import threads; cn.get_ops('numba').relu(__import__('numpy').ones(1 << 17)); "
         "print(threads.describe())"], capture_output=True, text=True, cwd=ROOT, env=bench_env()
    ).stdout.strip() or "numba not available"

    runs = throughput_rounds(args.rounds, args.workload, args.min_time, with_torch, log)
    wait_for_quiet()
    log("memory")
    mem = memory_rounds(max(3, args.rounds // 2), with_torch)
    log("start-up")
    startup = (script("startup.py"), script("startup.py", "--cold", "--repeats", 1))
    wait_for_quiet()
    log("layers")
    lay = script("layers.py", "--workload", *args.workload)
    wait_for_quiet()
    log("threads")
    thr = script("threads.py", "--rounds", 3)
    load_after = os.getloadavg()[0]
    report = build_report(info, runs, mem, startup, (lay["square_gemm_gflops"], lay["rows"]), thr,
                          args.rounds, command, load_before, load_after, with_torch)
    if args.no_write:
        print(report)
        return
    notes = ""
    if os.path.exists(RESULTS):
        with open(RESULTS) as fh:
            old = fh.read()
        if NOTES_MARK in old:
            notes = old[old.index(NOTES_MARK):]
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(report + "\n" + (notes or NOTES_MARK + "\n"))
    os.replace(tmp, RESULTS)
    log(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
