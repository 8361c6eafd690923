"""The GPU run of issue #13: GPU tests, then convnet's cupy backend against PyTorch CUDA eager.

    python benchmarks/gpu.py --tests --out gpu-results     # on a machine with an NVIDIA GPU
    python benchmarks/gpu.py --workloads W1 --batch 128     # benchmark only, prints a table

Steps (each writes into --out, so a short GPU session keeps what it measured):
1. --tests: `pytest -m gpu tests/`, i.e. every test parametrised over the backend grid
   with its real `cupy` entry (layer gradient checks, end-to-end training, save/load,
   CLI) plus the tests marked `gpu`; output in tests.txt.
2. For W1-W3 (benchmarks/workloads.py) at each batch size (128 and 512 by default):
   training steps (train_step: forward, loss, backward, Adam) and inference (predict)
   on convnet's cupy backend, then the same networks in PyTorch CUDA eager
   (benchmarks/torch_workloads.py, cuDNN, NCHW). Per configuration: images/s, peak
   device memory, host<->device copies per step (CupyOps.transfers), and the share of
   wall time the GPU was busy (cupyx.profiler.benchmark: GPU time / CPU time; the rest
   is kernel launches and Python). Results in gpu.json and printed as a table.

Without a working CUDA device it says so and exits 0 (1 with --require-gpu); the
benchmark code itself runs on any CuPy-compatible module, which is how
tests/test_benchmarks_gpu.py checks it on the CPU (the numbers there mean nothing).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from workloads import WORKLOADS, batch, build  # noqa: E402


def gpu_status():
    """(True, description) when CuPy sees a CUDA device, else (False, why not)."""
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - ImportError or any CUDA driver error
        return False, f"no CUDA GPU through CuPy ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "CuPy found no CUDA GPU"
    try:
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    except Exception:  # noqa: BLE001 - the stand-in and odd drivers
        name = "CUDA device 0"
    return True, f"{name} (CuPy {getattr(cupy, '__version__', '?')})"


def _timed(step, sync, repeats, warmup):
    """Median seconds per call of step() over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _gpu_share(step, repeats):
    """GPU-busy time / wall time per step from cupyx.profiler.benchmark, or None
    where cupyx is missing (the CPU stand-in)."""
    try:
        from cupyx.profiler import benchmark
    except ImportError:
        return None
    result = benchmark(step, n_repeat=repeats, n_warmup=1)
    cpu = float(result.cpu_times.mean())
    gpu = float(result.gpu_times.mean())
    return gpu / cpu if cpu > 0 else None


def measure_convnet(workload, n, mode, repeats=10, warmup=3):
    """One configuration on convnet's cupy backend: a result dict."""
    import cupy

    import convnet as cn
    with cn.use_backend("cupy") as ops:
        model = build(workload)
        x, y = batch(workload, n)
        pool = cupy.get_default_memory_pool()
        sync = cupy.cuda.get_current_stream().synchronize
        if mode == "train":
            step = lambda: model.train_step(x, y)
        else:
            step = lambda: model.predict(x, batch_size=n)
        step()                                      # allocations, slots, kernel compilation
        ops.transfers.reset()
        step()
        transfers = ops.transfers.as_dict()
        seconds = _timed(step, sync, repeats, warmup)
        share = _gpu_share(step, repeats)
        peak = pool.total_bytes()                   # the pool keeps its high-water mark
    return {"engine": "convnet-cupy", "workload": workload, "mode": mode, "batch": n,
            "images_per_s": n / seconds, "peak_device_bytes": int(peak),
            "transfers_per_step": transfers, "gpu_busy_share": share}


def measure_torch(workload, n, mode, repeats=10, warmup=3):
    """The same configuration in PyTorch CUDA eager, or None without a CUDA torch."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    import numpy as np
    from torch_workloads import build as torch_build
    device = torch.device("cuda")
    net = torch_build(workload, torch).to(device)
    x, y = batch(workload, n)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
    yt = torch.from_numpy(y).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)

    def train():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        loss.backward()
        optimizer.step()
        return loss.item()                          # one sync per step, as convnet's float(loss)

    def infer():
        with torch.inference_mode():
            return torch.softmax(net(xt), dim=1).cpu().numpy()

    step = train if mode == "train" else infer
    torch.cuda.reset_peak_memory_stats()
    seconds = _timed(step, torch.cuda.synchronize, repeats, warmup)
    return {"engine": "torch-cuda", "workload": workload, "mode": mode, "batch": n,
            "images_per_s": n / seconds, "peak_device_bytes": int(torch.cuda.max_memory_allocated()),
            "transfers_per_step": None, "gpu_busy_share": None}


def run_tests(out_dir):
    """pytest -m gpu over tests/; returns its exit status, output in tests.txt."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           os.path.join(ROOT, "tests")], capture_output=True, text=True, cwd=ROOT)
    with open(os.path.join(out_dir, "tests.txt"), "w") as f:
        f.write(proc.stdout + proc.stderr)
    print((proc.stdout.strip().splitlines() or ["(no output)"])[-1])
    return proc.returncode


def table(results):
    lines = [f"{'engine':<14}{'wl':<4}{'mode':<7}{'batch':>6}{'img/s':>12}{'peak MiB':>10}{'GPU busy':>10}"]
    for r in results:
        share = "-" if r["gpu_busy_share"] is None else f"{100 * r['gpu_busy_share']:.0f}%"
        lines.append(f"{r['engine']:<14}{r['workload']:<4}{r['mode']:<7}{r['batch']:>6}"
                     f"{r['images_per_s']:>12,.0f}{r['peak_device_bytes'] / 2**20:>10.1f}{share:>10}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=sorted(WORKLOADS), choices=sorted(WORKLOADS))
    parser.add_argument("--batch", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tests", action="store_true", help="run pytest -m gpu first")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch CUDA out")
    parser.add_argument("--require-gpu", action="store_true", help="exit 1 when no GPU works")
    parser.add_argument("--out", default=None, help="folder for gpu.json and tests.txt")
    args = parser.parse_args(argv)

    ok, what = gpu_status()
    print(("GPU: " if ok else "GPU part skipped: ") + what)
    if not ok:
        return 1 if args.require_gpu else 0
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    status = 0
    if args.tests:
        status = run_tests(args.out or ".")
    results = []
    for workload in args.workloads:
        for n in args.batch:
            for mode in args.modes:
                results.append(measure_convnet(workload, n, mode, args.repeats, args.warmup))
                if not args.no_torch:
                    ref = measure_torch(workload, n, mode, args.repeats, args.warmup)
                    if ref is not None:
                        results.append(ref)
    print(table(results))
    if args.out:
        with open(os.path.join(args.out, "gpu.json"), "w") as f:
            json.dump({"device": what, "results": results}, f, indent=2)
    return status


if __name__ == "__main__":
    sys.exit(main())
