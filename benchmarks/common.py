"""Shared helpers of the benchmark scripts: timing, machine description, environment."""

import datetime
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# These OpenBLAS settings (set on some machines here) force a slower kernel or
# cache size; benchmark subprocesses run without them. Tests never touch them.
BLAS_ENV_TO_DROP = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def bench_env(**extra):
    """os.environ for a benchmark subprocess: without the OpenBLAS overrides."""
    env = {k: v for k, v in os.environ.items() if k not in BLAS_ENV_TO_DROP}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def throughput(step, images_per_step, min_time=0.4, windows=5, warmup=2):
    """Median images/s over `windows` timing windows of at least `min_time` s each,
    after `warmup` untimed calls of step()."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(windows):
        count = 0
        t0 = time.perf_counter()
        while True:
            step()
            count += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        rates.append(count * images_per_step / elapsed)
    return statistics.median(rates)


def blas_info():
    """The BLAS numpy uses (kernel/architecture and threads) via threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = []
    for pool in threadpool_info():
        parts.append(f"{pool.get('internal_api')} {pool.get('version')} "
                     f"{pool.get('architecture', '')} {pool.get('num_threads')} threads "
                     f"({pool.get('user_api')}, {os.path.basename(pool.get('filepath', ''))})")
    return "; ".join(parts)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def has_avx512():
    try:
        with open("/proc/cpuinfo") as fh:
            return "avx512f" in fh.read()
    except OSError:
        return False


def versions():
    import numpy
    out = {"python": platform.python_version(), "numpy": numpy.__version__}
    try:
        import numba
        out["numba"] = numba.__version__
    except ImportError:
        out["numba"] = "not installed"
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = "not installed"
    return out


def machine_info():
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "avx512": has_avx512(),
            "platform": platform.platform(), "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load": os.getloadavg()}
    try:
        import psutil
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info


def cpu_busy(interval=1.0):
    """Fraction of all CPUs busy over `interval` seconds (from /proc/stat), or None."""
    def sample():
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return idle, sum(fields)
    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except (OSError, ValueError):
        return None
    total = total1 - total0
    return 1.0 - (idle1 - idle0) / total if total > 0 else None


def wait_for_quiet(threshold=0.25, max_wait=90.0):
    """Wait (up to max_wait s) until other processes use < threshold of the CPUs,
    so a benchmark process does not start in the middle of someone else's job.
    Returns the busy fraction last seen."""
    start = time.perf_counter()
    busy = cpu_busy()
    while busy is not None and busy >= threshold and time.perf_counter() - start < max_wait:
        busy = cpu_busy()
    return busy


def emit(results, as_json):
    """Print results (list of dicts) as one JSON line or as a table."""
    if as_json:
        print("JSON " + json.dumps(results))
        return
    for r in results:
        print(f"{r['engine']:<20} {r['workload']:<4}{r['mode']:<7}batch {r['batch']:>4}"
              f"{r['images_per_s']:>12,.0f} img/s")


def parse_json_line(text):
    for line in text.splitlines():
        if line.startswith("JSON "):
            return json.loads(line[5:])
    raise ValueError("no JSON line in the output:\n" + text[-2000:])


def convnet_main(run, description, default_batches, argv=None):
    """Command line shared by train.py and infer.py: parse, run convnet, print or emit JSON."""
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default=None, help="numpy or numba (default: the default backend)")
    parser.add_argument("--workload", nargs="+", default=["W1", "W2", "W3", "W4", "W5"])
    parser.add_argument("--batch", nargs="+", type=int, default=default_batches)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import convnet as cn
    backend = args.backend or cn.get_backend()
    emit(run(backend, args.workload, args.batch, args.min_time, args.windows), args.json)
