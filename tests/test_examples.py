"""Every example runs, on small generated data, and produces what it promises."""

import csv
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convnet as cn

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def _numpy(numpy_backend):
    yield


def example(name):
    """The example's module namespace (run without executing its __main__ block)."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


def png_ok(path):
    data = Path(path).read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_conv_by_hand():
    out = example("conv_by_hand")["main"](verbose=False)
    # x = 0..15 in a 4x4 grid: left column minus right column of each 3x3 window is
    # -2 per row, -6 in all; the mean of a window is its centre value, plus the bias 0.5
    np.testing.assert_allclose(out["y"][0, :, :, 0], [[-6, -6], [-6, -6]])
    np.testing.assert_allclose(out["y"][0, :, :, 1], [[5.5, 6.5], [9.5, 10.5]])
    np.testing.assert_allclose(out["y"], out["y_naive"], atol=1e-12)
    np.testing.assert_allclose(out["y"], out["y_gemm"], atol=1e-12)
    # dy = 1 at one output of filter 0: dW is that window of x, dx is the filter
    np.testing.assert_array_equal(out["dW"][:, :, 0, 0], [[0, 1, 2], [4, 5, 6], [8, 9, 10]])
    np.testing.assert_array_equal(out["dW"][:, :, 0, 1], np.zeros((3, 3)))
    np.testing.assert_array_equal(out["db"], [1, 0])
    np.testing.assert_array_equal(out["dx"][0, :3, :3, 0], [[1, 0, -1]] * 3)
    assert out["dx"][0, 3, :, 0].tolist() == [0, 0, 0, 0] and out["dx"][0, :, 3, 0].sum() == 0
    np.testing.assert_array_equal(out["dW"], out["dW_by_hand"])
    np.testing.assert_array_equal(out["dx"], out["dx_by_hand"])
    assert out["gradcheck"].passed and out["gradcheck"].max_error < 1e-6
    assert out["naive_vs_im2col"] < 1e-4


def test_train_fashion_mnist_synthetic(tmp_path):
    out_dir = tmp_path / "run"
    out = example("train_fashion_mnist")["main"](
        ["--synthetic", "--limit", "240", "--epochs", "2", "--batch-size", "32",
         "--backend", "numpy", "--verbose", "0", "--out", str(out_dir)])
    history = out["history"]
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert 0 <= out["test"]["accuracy"] <= 1
    assert "Ankle boot" in out["report"] and "macro avg" in out["report"]
    rows = list(csv.reader(open(out_dir / "log.csv")))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"] and len(rows) == 3
    # the checkpoint holds the best epoch, which EarlyStopping restored into the model
    best = cn.load_model(out["best_model"])
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.uint8)
    np.testing.assert_array_equal(best.predict(x), out["model"].predict(x))
    assert png_ok(out["pictures"]["history"]) and png_ok(out["pictures"]["confusion"])


def test_classify_folder_with_demo_images(tmp_path):
    out = example("classify_folder")["main"](
        [str(tmp_path / "galaxies"), "--make-demo", "--demo-per-class", "8", "--image-size", "20",
         "--epochs", "3", "--batch-size", "8", "--backend", "numpy", "--verbose", "0",
         "--out", str(tmp_path / "run")])
    assert out["class_names"] == ["elongated", "ring", "round"]
    assert sorted(os.listdir(tmp_path / "galaxies" / "ring"))[0] == "ring_000.png"
    assert out["confusion"].shape == (3, 3) and out["confusion"].sum() == 4   # int(0.2 * 24)
    assert 0 <= out["auc"] <= 1 and "elongated" in out["report"]
    assert len(out["history"]["val_auc"]) <= 3
    assert png_ok(out["pictures"]["history"]) and png_ok(out["pictures"]["confusion"])
    assert cn.load_model(out["best_model"]).input_shape == (20, 20, 3)


def test_feature_maps_example(tmp_path):
    mod = example("feature_maps")
    out = mod["main"](["--limit", "60", "--epochs", "1", "--backend", "numpy", "--verbose", "0",
                       "--out", str(tmp_path / "a")])
    assert sorted(out["pictures"]) == ["bar", "circle", "cross", "filters"]
    assert all(png_ok(p) for p in out["pictures"].values())
    # the same with a saved model and an image file
    from PIL import Image
    out["model"].save(tmp_path / "m.npz")
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "diag.png")
    out = mod["main"](["--model", str(tmp_path / "m.npz"), "--image", str(tmp_path / "diag.png"),
                       "--out", str(tmp_path / "b")])
    assert sorted(out["pictures"]) == ["diag", "filters"]
    assert png_ok(tmp_path / "b" / "feature_maps_diag.png")


def test_an_example_runs_as_a_script(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(EXAMPLES / "conv_by_hand.py")], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "gradcheck Conv2D" in result.stdout and "PASS" in result.stdout


def test_how_it_works_snippets_print_what_the_guide_shows(capsys):
    """Run every ```python block of docs/how-it-works.md in order, in one namespace;
    a ```text block right after one is the output it must print."""
    import re
    text = (EXAMPLES.parent / "docs" / "how-it-works.md").read_text()
    blocks = re.findall(r"```(python|text)\n(.*?)```", text, flags=re.S)
    namespace = {}
    checked = 0
    for i, (kind, body) in enumerate(blocks):
        if kind != "python":
            continue
        capsys.readouterr()
        exec(compile(body, f"how-it-works.md block {i}", "exec"), namespace)
        printed = capsys.readouterr().out
        if i + 1 < len(blocks) and blocks[i + 1][0] == "text":
            assert printed.strip() == blocks[i + 1][1].strip(), f"block {i}"
            checked += 1
    assert checked == 10


# ----------------------------------------------------- the course's projects
def course(name):
    return runpy.run_path(str(EXAMPLES / "course" / f"{name}.py"), run_name=f"course_{name}")


def test_course_xray_lesson_on_tiny_standin_data(tmp_path, capsys):
    out = course("xray_lesson")["main"](["--n", "40", "--size", "32", "--epochs", "2", "--batch-size", "8",
                                         "--out", str(tmp_path), "--verbose", "2"])
    history = out["history"]
    assert set(history) == {"loss", "categorical_accuracy", "auc", "val_loss", "val_categorical_accuracy",
                            "val_auc"}
    assert len(history["loss"]) == 2
    assert out["class_indices"] == {"normal": 0, "pneumonia": 1}
    # the printed test numbers are the last validation epoch's (same images, no augmentation)
    assert out["test"]["auc"] == pytest.approx(history["val_auc"][-1])
    text = capsys.readouterr().out
    assert "Found 30 images belonging to 2 classes." in text and "Found 10 images" in text
    assert "test loss" in text and png_ok(out["curves"])


def test_course_galaxies_on_tiny_standin_data(tmp_path, capsys):
    out = course("galaxies")["main"](["--n", "40", "--size", "32", "--epochs", "2", "--show", "2",
                                      "--out", str(tmp_path), "--verbose", "0"])
    assert out["split"] == (32, 8)
    assert set(out["history"]) >= {"categorical_accuracy", "auc", "val_auc"}
    # 32x32 -> conv 3x3 stride 2 valid: 15 -> pool 7 -> conv: 3
    assert out["feature_maps"] == [(2, 15, 15, 8), (2, 3, 3, 8)]
    assert len(out["pictures"]) == 2 and all(png_ok(p) for p in out["pictures"])
    assert "validation loss" in capsys.readouterr().out


def test_course_galaxies_reads_the_course_npz(tmp_path):
    from convnet.synthetic import make_galaxies
    x, y = make_galaxies(20, size=32, seed=1)
    np.savez(tmp_path / "galaxydata.npz", data=(x * 255).astype(np.uint8), labels=y)
    out = course("galaxies")["main"](["--data", str(tmp_path / "galaxydata.npz"), "--epochs", "1",
                                      "--show", "1", "--out", str(tmp_path / "o"), "--verbose", "0"])
    assert out["split"] == (16, 4)
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(ValueError, match="must hold arrays 'data'"):
        course("galaxies")["main"](["--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o")])


def test_course_covid_pneumonia_report_lines_up_with_classes(tmp_path, capsys):
    out = course("covid_pneumonia")["main"](["--n", "48", "--size", "64", "--epochs", "3", "--patience", "1",
                                             "--batch-size", "8", "--out", str(tmp_path), "--verbose", "0"])
    cm = out["confusion_matrix"]
    assert cm.shape == (3, 3) and cm.sum() == 12
    # rows of the confusion matrix are the test folder's class counts: predictions lined up
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(out["true_classes"], minlength=3))
    np.testing.assert_array_equal(np.diag(cm).sum(), (out["predictions"].argmax(1) == out["true_classes"]).sum())
    assert 1 <= out["epochs_run"] <= 3
    text = capsys.readouterr().out
    assert "Viral Pneumonia" in out["report"] and "confusion matrix" in text and "best val_auc" in text
    assert png_ok(out["pictures"]["confusion_matrix"])
