"""benchmarks/gpu.py on the CPU: without a GPU it says so and skips its GPU part;
through the strict CuPy stand-in its measuring code runs end to end and records
what it promises (the numbers themselves mean nothing here, and none is asserted:
no test reads a clock). The real run needs a GPU: python benchmarks/gpu.py --tests."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"


@pytest.fixture
def gpu_bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("benchmarks_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_a_gpu_the_gpu_part_is_skipped_with_a_message(gpu_bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cupy", None)
    ok, why = gpu_bench.gpu_status()
    assert not ok and "no CUDA GPU" in why
    assert gpu_bench.main(["--workloads", "W1"]) == 0
    assert "GPU part skipped: no CUDA GPU" in capsys.readouterr().out
    assert gpu_bench.main(["--require-gpu"]) == 1


def test_the_benchmark_runs_through_the_stand_in_and_writes_its_results(gpu_bench, strict_cupy, tmp_path, capsys):
    assert gpu_bench.main(["--workloads", "W1", "W3", "--batch", "4", "--repeats", "1", "--warmup", "0",
                           "--no-torch", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "GPU: " in out and "convnet-cupy" in out and "img/s" in out
    report = json.loads((tmp_path / "gpu.json").read_text())
    results = report["results"]
    assert [(r["workload"], r["mode"], r["batch"]) for r in results] == \
        [("W1", "train", 4), ("W1", "infer", 4), ("W3", "train", 4), ("W3", "infer", 4)]
    for r in results:
        assert r["images_per_s"] > 0 and r["peak_device_bytes"] >= 0
        assert r["gpu_busy_share"] is None                 # no cupyx.profiler in the stand-in
        # the batch goes in once (x, and y for training); nothing per layer
        assert r["transfers_per_step"]["to_device"] == (2 if r["mode"] == "train" else 1)
        assert r["transfers_per_step"]["to_host"] <= 1
