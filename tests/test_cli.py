"""The convnet command end to end on a tiny generated folder of PNG images, and
`train`/`evaluate` on every backend (conftest.BACKENDS)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import convnet as cn
from convnet import cli
from convnet.synthetic import CLASS_NAMES, make_shapes


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    x, y = make_shapes(240, size=16, seed=0, noise=0.05)
    for i, (img, label) in enumerate(zip(x, y)):
        folder = root / CLASS_NAMES[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray((img[:, :, 0] * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained_run(shapes_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    # `--backend` sets the process's backend, as a command should; a module-scoped
    # fixture runs outside the per-test restore, so it puts the backend back itself
    with cn.use_backend(cn.get_backend()):
        code = cli.main(["train", str(shapes_folder), "--model", "fmnist-cnn", "--image-size", "16", "16",
                         "--color-mode", "grayscale", "--epochs", "6", "--batch-size", "16",
                         "--learning-rate", "3e-3", "--validation-split", "0.25", "--seed", "1",
                         "--output-dir", str(out), "--verbose", "0", "--backend", "numpy"])
    assert code == 0
    (run,) = out.iterdir()
    return run


def test_train_writes_a_run_directory(trained_run, capsys):
    files = set(os.listdir(trained_run))
    assert {"model.npz", "history.json", "history.csv", "metrics.json", "summary.txt"} <= files
    history = json.loads((trained_run / "history.json").read_text())
    assert len(history["loss"]) == 6 and history["loss"][-1] < history["loss"][0]
    rows = (trained_run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and "loss" in rows[0].split(",") and len(rows) == 7
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["validation_accuracy"] >= 0.8
    assert metrics["epochs_run"] == 6


def test_evaluate_prints_metrics_and_report(trained_run, shapes_folder, capsys):
    assert cli.main(["evaluate", str(trained_run / "model.npz"), str(shapes_folder)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("accuracy:")[1].split()[0])
    assert accuracy >= 0.8
    for name in CLASS_NAMES:
        assert name in out


def test_predict_prints_class_and_probability(trained_run, shapes_folder, capsys):
    images = sorted((shapes_folder / "circle").iterdir())[:3]
    assert cli.main(["predict", str(trained_run / "model.npz"), *map(str, images), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, path in zip(lines, images):
        assert line.startswith(f"{path}: ")
        probs = [float(part.split()[-1]) for part in line.split(": ", 1)[1].split(", ")]
        assert len(probs) == 2 and probs[0] >= probs[1] and 0 <= probs[1] <= probs[0] <= 1
    assert sum("circle" in line.split(": ", 1)[1].split(",")[0] for line in lines) >= 2


def test_train_with_label_smoothing(shapes_folder, tmp_path):
    with cn.use_backend(cn.get_backend()):
        assert cli.main(["train", str(shapes_folder), "--image-size", "16", "16", "--color-mode", "grayscale",
                         "--epochs", "6", "--batch-size", "16", "--learning-rate", "3e-3", "--seed", "1",
                         "--validation-split", "0.25", "--label-smoothing", "0.1", "--output-dir",
                         str(tmp_path), "--verbose", "0", "--backend", "numpy"]) == 0
    (run,) = tmp_path.iterdir()
    assert json.loads((run / "metrics.json").read_text())["validation_accuracy"] >= 0.8
    model = cn.load_model(run / "model.npz")
    loss = model.losses[0]
    assert loss.label_smoothing == 0.1 and loss.from_logits
    # smoothed targets: the loss cannot fall below their entropy, (0.9 + 0.1/K, 0.1/K, ...)
    k = len(CLASS_NAMES)
    t = np.array([0.9 + 0.1 / k] + [0.1 / k] * (k - 1))
    history = json.loads((run / "history.json").read_text())
    assert min(history["loss"]) > -(t * np.log(t)).sum()


def test_train_with_a_cosine_schedule_ends_at_the_last_step(tmp_path, capsys):
    # synthetic: 200 images, 10% validate, so 180 train in ceil(180 / 32) = 6 steps an epoch
    assert cli.main(["train", "synthetic", "--epochs", "2", "--limit", "200", "--batch-size", "32",
                     "--learning-rate", "4e-3", "--lr-schedule", "cosine", "--output-dir", str(tmp_path),
                     "--verbose", "0", "--backend", "numpy"]) == 0
    (run,) = tmp_path.iterdir()
    optimizer = cn.load_model(run / "model.npz").optimizer
    assert optimizer.get_config()["learning_rate"] == {
        "class_name": "CosineDecay", "config": {"initial_learning_rate": 4e-3, "decay_steps": 12, "alpha": 0.0,
                                                "name": "CosineDecay", "warmup_target": None, "warmup_steps": 0}}
    assert optimizer.iterations == 12 and optimizer.learning_rate == 0.0
    capsys.readouterr()
    assert cli.main(["train", "synthetic", "--epochs", "1", "--limit", "50", "--lr-schedule", "cosine",
                     "--lr-decay", "0.8", "--output-dir", str(tmp_path / "no"), "--verbose", "0"]) != 0
    assert "give --lr-decay or --lr-schedule, not both" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_train_on_synthetic_arrays(tmp_path, capsys):
    assert cli.main(["train", "synthetic", "--epochs", "1", "--limit", "200", "--output-dir",
                     str(tmp_path), "--verbose", "0", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy:" in out and "run saved in" in out


def test_gradcheck_command(capsys):
    assert cli.main(["gradcheck", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "Conv2D" in out and "all passed" in out and "FAIL" not in out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nowhere"), "--verbose", "0"]) == 2
    assert "convnet train: error:" in capsys.readouterr().err
    assert cli.main(["predict", str(tmp_path / "missing.npz"), "x.png"]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["predict"], ["gradcheck"], ["profile"], ["inspect"]])
def test_help(command):
    out = subprocess.run([sys.executable, "-m", "convnet", *command, "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "usage: convnet" in out.stdout


def test_profile_command(capsys):
    assert cli.main(["profile", "--model", "galaxy", "--batch-size", "2", "--repeats", "1",
                     "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "conv2d" in out and "optimizer" in out and "img/s" in out


def test_labels_line_up_with_predictions_on_a_reshuffling_dataset(trained_run, shapes_folder):
    """The validation subset reshuffles on every pass; labels and probabilities must
    come from the same pass, or the confusion matrix and report pair wrong rows."""
    import convnet as cn
    from convnet.data import image_dataset_from_directory
    model = cn.load_model(trained_run / "model.npz")
    _, val = image_dataset_from_directory(shapes_folder, image_size=(16, 16), color_mode="grayscale",
                                          validation_split=0.5, subset="both", seed=3, batch_size=8,
                                          class_names=model.class_names)
    first = np.concatenate([by for _, by in val])
    assert not np.array_equal(first, np.concatenate([by for _, by in val]))   # it does reshuffle
    y_true, y_prob = cli.labels_and_probabilities(model, val)
    accuracy = float((y_prob.argmax(axis=1) == y_true).mean())
    assert accuracy == pytest.approx(model.evaluate(val, return_dict=True)["accuracy"])
    assert accuracy >= 0.8


def test_lr_decay_multiplies_the_rate_every_epoch(tmp_path):
    assert cli.main(["train", "synthetic", "--epochs", "3", "--limit", "100", "--learning-rate", "2e-3",
                     "--lr-decay", "0.5", "--output-dir", str(tmp_path), "--verbose", "0",
                     "--backend", "numpy"]) == 0
    (run,) = tmp_path.iterdir()
    history = json.loads((run / "history.json").read_text())
    assert history["learning_rate"] == pytest.approx([2e-3, 1e-3, 5e-4])


def test_train_and_evaluate_on_every_backend(backend_name, tmp_path, capsys):
    """`convnet train` then `convnet evaluate` of the saved run, on this backend:
    the run learns, and evaluate reports the accuracy train recorded."""
    assert cli.main(["train", "synthetic", "--model", "fmnist-cnn", "--epochs", "3", "--limit", "300",
                     "--batch-size", "32", "--learning-rate", "3e-3", "--output-dir", str(tmp_path),
                     "--verbose", "0", "--backend", backend_name]) == 0
    assert cn.get_backend() == backend_name
    (run,) = tmp_path.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["backend"] == backend_name and metrics["epochs_run"] == 3
    history = json.loads((run / "history.json").read_text())
    assert history["loss"][-1] < history["loss"][0]
    out = capsys.readouterr().out
    trained = float(out.split("test accuracy:")[1].split()[0])
    assert trained >= 0.8, out
    assert cli.main(["evaluate", str(run / "model.npz"), "synthetic", "--limit", "60",   # train tested on limit // 5
                     "--backend", backend_name]) == 0
    out = capsys.readouterr().out
    assert float(out.split("accuracy:")[1].split()[0]) == pytest.approx(trained, abs=1e-3)
