"""convnet vs PyTorch, Keras/TensorFlow and ONNX Runtime, written to benchmarks/RESULTS.md.

Measures the way users run code: every convnet process imports numpy first, then
convnet, with no environment variable set (only the OpenBLAS overrides below are
removed). Runs each engine in its own process (their thread pools would interfere
in one), alternating them over `--rounds` rounds (the order flips every round),
and reports the median images/s of each configuration and convnet's ratios:

  training   W1-W5 at batch 32 and 128: convnet model.train_step, PyTorch eager step,
             Keras model.fit over 16 in-memory batches
  inference  W1-W5 at batch 1, 32 and 128: convnet model.predict, PyTorch softmax under
             inference_mode, Keras predict_on_batch, ONNX Runtime session.run (CPU, 2 threads)
  memory     peak RSS of W2 training at batch 128, each engine in its own process
  start-up   first W1 training step in a new process, warm and cold Numba cache
  layers     each conv layer's GFLOP/s at batch 128 vs numpy's GEMM rate, and its algorithm
  threads    the GEMM-then-parallel-kernel interference per thread setting

PyTorch, TensorFlow and ONNX Runtime are optional (the bench extra: pip install
-e '.[bench]'); a missing one is skipped with a message and its column is empty.

    python benchmarks/compare.py                  # everything, 5 rounds, writes RESULTS.md (long)
    python benchmarks/compare.py --rounds 3 --no-write
    python benchmarks/compare.py --quick          # tiny settings, end to end in ~2 min; prints only

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

WORKLOAD_NAMES = ["W1", "W2", "W3", "W4", "W5"]
TRAIN_BATCHES = [32, 128]
INFER_BATCHES = [1, 32, 128]
busy_log = []     # CPU busy fraction seen before each benchmark process started
ENGINES = ["torch", "keras", "onnx"]
ENGINE_TITLES = {"convnet": "convnet", "torch": "PyTorch", "keras": "Keras/TF", "onnx": "ONNX RT"}
#: minimum ratio convnet / engine, per (mode, engine, workload) (issue #9)
TARGETS = {("train", "torch", "W1"): 1.5, ("train", "torch", "W2"): 1.2, ("train", "torch", "W3"): 1.5,
           ("train", "torch", "W4"): 1.5, ("train", "torch", "W5"): 1.0,   # W5: issue #10
           **{("train", "keras", w): 1.0 for w in WORKLOAD_NAMES},
           **{("infer", "torch", w): 1.5 for w in WORKLOAD_NAMES},
           **{("infer", "onnx", w): 0.7 for w in WORKLOAD_NAMES}}


def script(name, *args, env=None, timeout=900):
    proc = subprocess.run([sys.executable, os.path.join(HERE, name), *map(str, args), "--json"],
                          capture_output=True, text=True, env=bench_env(**(env or {})), cwd=ROOT,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return parse_json_line(proc.stdout)


def available(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return proc.returncode == 0


#: the engines and the packages each needs, with the command that installs them
NEEDS = {"torch": (["torch"], "pip install torch==2.13.0 (CPU build)"),
         "keras": (["tensorflow"], "pip install tensorflow-cpu"),
         "onnx": (["torch", "onnx", "onnxruntime"], "pip install torch==2.13.0 onnx onnxruntime")}


def engines_available(log):
    found = []
    for engine in ENGINES:
        modules, fix = NEEDS[engine]
        missing = [m for m in modules if not available(m)]
        if missing:
            log(f"{ENGINE_TITLES[engine]}: {', '.join(missing)} not installed, skipped ({fix})")
        else:
            found.append(engine)
    return found


def throughput_rounds(rounds, workloads, min_time, windows, engines, train_batches, infer_batches, log,
                      quiet=True):
    """{(engine_kind, mode, workload, batch): [images/s per round]}"""
    runs = {}
    busy_log.clear()
    scripts = {"convnet": {"train": "train.py", "infer": "infer.py"},
               "torch": {"train": "torch_workloads.py", "infer": "torch_workloads.py"},
               "keras": {"train": "keras_workloads.py", "infer": "keras_workloads.py"},
               "onnx": {"infer": "onnx_workloads.py"}}
    jobs = []
    for mode, batches in (("train", train_batches), ("infer", infer_batches)):
        for kind in ["convnet", *engines]:
            if mode in scripts[kind]:
                args = ([] if kind == "convnet" else ["--mode", mode]) + ["--batch", *batches]
                jobs.append((kind, mode, scripts[kind][mode], args))
    for rnd in range(rounds):
        order = jobs if rnd % 2 == 0 else jobs[::-1]
        for kind, mode, name, args in order:
            busy = wait_for_quiet() if quiet else None
            log(f"round {rnd + 1}/{rounds}: {kind} {mode} (CPU busy before start "
                f"{'?' if busy is None else f'{100 * busy:.0f}%'})")
            busy_log.append(busy)
            for r in script(name, *args, "--workload", *workloads, "--min-time", min_time, "--windows", windows):
                runs.setdefault((kind, mode, r["workload"], r["batch"]), []).append(r["images_per_s"])
    return runs


def memory_rounds(rounds, with_torch, batch=128):
    out = {"convnet": [], "torch": []}
    for rnd in range(rounds):
        engines = ["convnet", "torch"] if rnd % 2 == 0 else ["torch", "convnet"]
        for engine in engines:
            if engine == "torch" and not with_torch:
                continue
            r = script("memory.py", "--engine", engine, "--batch", batch)
            out[engine].append(r)
    return out


def fmt_rate(v):
    return f"{v:,.0f}" if v is not None else "n/a"


def build_report(info, runs, mem, startup, layers, threads, rounds, command, load_before, load_after,
                 engines, train_batches=TRAIN_BATCHES, infer_batches=INFER_BATCHES, layers_batch=128):
    med = {k: statistics.median(v) for k, v in runs.items()}
    lines = ["# convnet benchmark results", "",
             f"Produced by `{command}` on {info['date']} "
             f"(load average {load_before:.2f} before, {load_after:.2f} after).", "",
             "## Machine and versions", "",
             f"- CPU: {info['cpu']}, {info['cores']} cores, AVX-512: {'yes' if info['avx512'] else 'no'}, "
             f"memory {info.get('memory_gib', '?')} GiB; {info['platform']}",
             f"- Python {info['python']}, numpy {info['numpy']}, numba {info['numba']}, "
             f"torch {info['torch']} (CPU, `torch.set_num_threads(2)`); engines compared: "
             + (", ".join(ENGINE_TITLES[e] for e in engines) or "none installed"),
             "- convnet runs as users run it: each script imports numpy first, then convnet, "
             "with no environment variable set",
             f"- numpy BLAS: {info['blas']}",
             f"- convnet numba threads: {info['threads']}",
             "- OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from the benchmark processes' environment",
             f"- Each number is the median over {rounds} rounds; every round runs each engine in a fresh "
             "process, engines alternating (order flipped every round); inside a process, the median "
             "of 5 timing windows after 2 warm-up steps. float32, random data, Adam.",
             "- The machine is shared: before each process starts, the script waits (up to 90 s) until "
             "other processes use < 25% of the CPUs; busy fractions seen: "
             + ", ".join("?" if b is None else f"{100 * b:.0f}%" for b in busy_log) + ".",
             ""]

    def table(mode, batches):
        others = [e for e in engines if mode == "train" and e != "onnx" or mode == "infer"]
        head = "| workload | batch | convnet img/s | " + " | ".join(f"{ENGINE_TITLES[e]} img/s" for e in others)
        head += " | " + " | ".join(f"vs {ENGINE_TITLES[e]} (target)" for e in others) + " |"
        rows = [head, "|" + "---|" * (3 + 2 * len(others))]
        for w in WORKLOAD_NAMES:
            for n in batches:
                c = med.get(("convnet", mode, w, n))
                if c is None:
                    continue
                rates, ratios = [], []
                for e in others:
                    t = med.get((e, mode, w, n))
                    rates.append(fmt_rate(t))
                    target = TARGETS.get((mode, e, w))
                    if not t:
                        ratios.append("")
                        continue
                    ratio = c / t
                    verdict = "" if target is None else (f" (>= {target:.1f}x: " +
                                                         ("met)" if ratio >= target else "**missed**)"))
                    ratios.append(f"{ratio:.2f}x{verdict}")
                rows.append(f"| {w} | {n} | {fmt_rate(c)} | " + " | ".join(rates + ratios) + " |")
        return rows

    lines += ["## Training throughput (images/s, forward + loss + backward + Adam)", ""]
    lines += table("train", train_batches)
    lines += ["", "## Inference throughput (images/s: convnet `model.predict`, PyTorch softmax under "
              "inference_mode, Keras `predict_on_batch`, ONNX Runtime `session.run` + softmax)", ""]
    lines += table("infer", infer_batches)
    if not engines:
        lines += ["", "No other engine is installed: only convnet's columns are filled."]

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
        lines += ["", f"Ratio convnet / PyTorch: **{c_peak / t_peak:.2f}x** (target <= 1.0x: "
                  f"{'met' if c_peak / t_peak <= 1.0 else 'not met'})."]

    warm, cold = startup
    lines += ["", "## Start-up: first W1 training step (batch 32) in a new process", "",
              "| Numba cache | import convnet s | first step s | steady step ms | first - steady s |",
              "|---|---|---|---|---|"]
    for s in (warm, cold):
        if s is None:
            continue
        lines.append(f"| {s['cache']} | {s['import_s']:.2f} | {s['first_s']:.3f} | {s['steady_s'] * 1e3:.1f} | "
                     f"{s['overhead_s']:.3f} |")
    lines += ["", f"Warm-cache overhead {warm['overhead_s']:.2f} s (target < 0.5 s: "
              f"{'met' if warm['overhead_s'] < 0.5 else 'not met'})" + (
                  "" if cold is None else f"; cold compile of every kernel the W1 step uses: "
                  f"{cold['overhead_s']:.1f} s (empty NUMBA_CACHE_DIR; target < 10 s: "
                  f"{'met' if cold['overhead_s'] < 10 else 'not met'})") + "."]

    import layers as layers_mod
    square, lrows = layers
    lines += ["", f"## Conv layers at batch {layers_batch} (training: forward + backward)", "",
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
    parser.add_argument("--workload", nargs="+", default=WORKLOAD_NAMES)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the report instead of writing it")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings (1 round, batch 4, short windows, no cold start), to check the "
                             "scripts end to end; prints the report, never writes RESULTS.md")
    args = parser.parse_args(argv)
    train_batches, infer_batches, layers_batch, mem_batch = TRAIN_BATCHES, INFER_BATCHES, 128, 128
    if args.quick:
        args.rounds, args.min_time, args.windows, args.no_write = 1, 0.02, 1, True
        train_batches, infer_batches, layers_batch, mem_batch = [4], [1, 4], 4, 8
    command = "python benchmarks/compare.py" + (f" --rounds {args.rounds}" if args.rounds != 5 else "")

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    engines = engines_available(log)
    quiet = wait_for_quiet if not args.quick else (lambda: None)
    load_before = os.getloadavg()[0]
    info = machine_info()
    info.update(versions())
    info["blas"] = blas_info()
    info["threads"] = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, '.'); import numpy as np; import convnet as cn; "
         "from convnet.backend.numba import threads; cn.get_ops('numba').relu(np.ones(1 << 21)); "
         "print(threads.describe())"], capture_output=True, text=True, cwd=ROOT, env=bench_env()
    ).stdout.strip() or "numba not available"

    runs = throughput_rounds(args.rounds, args.workload, args.min_time, args.windows, engines,
                             train_batches, infer_batches, log, quiet=not args.quick)
    quiet()
    log("memory")
    mem = memory_rounds(1 if args.quick else max(3, args.rounds // 2), "torch" in engines, mem_batch)
    log("start-up")
    startup = (script("startup.py", *(["--repeats", 1] if args.quick else [])),
               None if args.quick else script("startup.py", "--cold", "--repeats", 1))
    quiet()
    log("layers")
    lay = script("layers.py", "--workload", *args.workload, "--batch", layers_batch,
                 *(["--repeats", 1] if args.quick else []))
    quiet()
    log("threads")
    thr = script("threads.py", "--rounds", 1 if args.quick else 3, *(["--reps", 2] if args.quick else []))
    load_after = os.getloadavg()[0]
    report = build_report(info, runs, mem, startup, (lay["square_gemm_gflops"], lay["rows"]), thr,
                          args.rounds, command, load_before, load_after, engines, train_batches,
                          infer_batches, layers_batch)
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
