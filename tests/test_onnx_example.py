"""examples/finetune_onnx.py: an exported convnet model, imported, its classifier
swapped, fine-tuned on another class-folder dataset, exported again."""

import runpy
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "finetune_onnx.py"


def test_finetune_onnx_demo(tmp_path, numpy_backend):
    main = runpy.run_path(str(EXAMPLE), run_name="example_finetune_onnx")["main"]
    out = main(["--demo", str(tmp_path), "--per-class", "30", "--verbose", "0", "--seed", "0"])
    assert out["classes"] == ["cross", "ring", "square"]
    # three classes: chance is 1/3; the fine-tuned features separate them
    assert out["after"] >= 0.6 and out["after"] > out["before"] + 0.2, out
    assert out["ort_diff"] < 1e-5
    assert Path(out["onnx"]).exists()
