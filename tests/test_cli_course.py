"""The `convnet` command on the course's data layout (train/ and test/ class
folders of grayscale X-rays): --test-dir, --metrics, --early-stopping with
--monitor, --class-weight balanced, --augment SPEC, and evaluate's confusion matrix."""

import json

import numpy as np
import pytest

from convnet import cli
from convnet.synthetic import make_xrays, write_class_folders


@pytest.fixture(scope="module")
def xray_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("xray")
    names = ("normal", "pneumonia")
    x, y = make_xrays(96, size=24, classes=names, seed=0, weights=(1, 2))
    write_class_folders(root / "train", x[:72], y[:72], names)
    write_class_folders(root / "test", x[72:], y[72:], names)
    return root


def test_parse_augment_spec():
    kw = cli.parse_augment("rotation=25,zoom=0.1,shift=0.05,flip=none", seed=3)
    assert kw == {"seed": 3, "rotation_range": 25.0, "zoom_range": 0.1, "width_shift_range": 0.05,
                  "height_shift_range": 0.05, "horizontal_flip": False, "vertical_flip": False}
    bare = cli.parse_augment("default")
    assert bare["horizontal_flip"] is True and bare["rotation_range"] == 15.0
    assert cli.parse_augment("brightness=0.8:1.2,fill=constant")["brightness_range"] == (0.8, 1.2)
    # shifts keep Keras' types: an integer is whole pixels (3: -2..2), a float a range
    whole = cli.parse_augment("shift=3")
    assert whole["width_shift_range"] == 3 and type(whole["width_shift_range"]) is int
    assert type(cli.parse_augment("width_shift=2.5")["width_shift_range"]) is float
    assert "height_shift_range" not in cli.parse_augment("width_shift=2")
    with pytest.raises(ValueError, match="--augment: unknown key 'spin'"):
        cli.parse_augment("spin=3")
    with pytest.raises(ValueError, match="flip must be one of"):
        cli.parse_augment("flip=sideways")
    with pytest.raises(ValueError, match="rotation='a lot' is not a number"):
        cli.parse_augment("rotation=a lot")


def test_balanced_class_weight_is_n_over_k_times_count():
    w = cli.balanced_class_weight(np.array([0, 1, 1, 1]), 2)
    assert w == {0: pytest.approx(2.0), 1: pytest.approx(4 / 6)}


def test_train_on_course_layout_reports_on_the_test_dir(xray_dirs, tmp_path, capsys):
    code = cli.main(["train", str(xray_dirs / "train"), "--test-dir", str(xray_dirs / "test"),
                     "--model", "fmnist-cnn", "--image-size", "24", "24", "--color-mode", "grayscale",
                     "--epochs", "4", "--batch-size", "16", "--learning-rate", "3e-3",
                     "--metrics", "accuracy,auc", "--early-stopping", "1", "--monitor", "val_auc",
                     "--class-weight", "balanced", "--augment", "rotation=5,zoom=0.05,flip=none",
                     "--validation-split", "0.25", "--seed", "0", "--output-dir", str(tmp_path),
                     "--verbose", "2", "--backend", "numpy"])
    assert code == 0
    out = capsys.readouterr().out
    (run,) = tmp_path.iterdir()
    history = json.loads((run / "history.json").read_text())
    assert {"loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"} <= set(history)
    assert 1 <= len(history["loss"]) <= 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test_loss", "test_accuracy", "test_auc", "validation_auc"} <= set(metrics)
    assert 0 <= metrics["test_auc"] <= 1
    # class weights: 2 pneumonia per normal in the training files, so normal weighs more
    weights = dict(part.rsplit(" ", 1) for part in out.split("class weights: ")[1].splitlines()[0].split(", "))
    assert float(weights["normal"]) > 1 > float(weights["pneumonia"])
    assert "test auc:" in out and "confusion matrix" in out and "on the test data:" in out


def test_evaluate_prints_the_confusion_matrix(xray_dirs, tmp_path, capsys):
    assert cli.main(["train", str(xray_dirs / "train"), "--model", "fmnist-cnn", "--image-size", "24", "24",
                     "--color-mode", "grayscale", "--epochs", "1", "--output-dir", str(tmp_path),
                     "--verbose", "0", "--backend", "numpy"]) == 0
    (run,) = tmp_path.iterdir()
    capsys.readouterr()
    assert cli.main(["evaluate", str(run / "model.npz"), str(xray_dirs / "test")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = lines.index("confusion matrix (rows: true class, columns: predicted)")
    rows = [line.split() for line in lines[at + 2:at + 4]]
    assert [r[0] for r in rows] == ["normal", "pneumonia"]
    counts = np.array([[int(v) for v in r[1:]] for r in rows])
    assert counts.sum() == 24    # every test file once
    assert "precision" in out and "recall" in out


def test_train_bad_augment_spec_is_an_error(xray_dirs, tmp_path, capsys):
    assert cli.main(["train", str(xray_dirs / "train"), "--augment", "rotate=3", "--output-dir",
                     str(tmp_path), "--verbose", "0"]) == 2
    assert "unknown key 'rotate'" in capsys.readouterr().err


def test_inspect_a_folder_and_several_images(xray_dirs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["train", str(xray_dirs / "train"), "--model", "fmnist-cnn", "--image-size", "24", "24",
                     "--color-mode", "grayscale", "--epochs", "1", "--output-dir", str(tmp_path / "runs"),
                     "--verbose", "0", "--backend", "numpy"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    folder = xray_dirs / "test" / "normal"
    assert cli.main(["inspect", str(run / "model.npz"), str(folder), "--output-dir", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 1 + len(list(folder.iterdir()))
    two = sorted(folder.iterdir())[:2]
    assert cli.main(["inspect", str(run / "model.npz"), *map(str, two), "--output-dir", str(tmp_path / "b")]) == 0
    assert len(capsys.readouterr().out.split()) == 3


def test_fmnist_preset_options_for_the_demo():
    from convnet import presets
    names = lambda m: [type(layer).__name__ for layer in m.layers]  # noqa: E731
    plain = presets.build("fmnist-cnn", rescale=True, dropout=0.3, seed=0)
    assert names(plain) == ["Rescaling", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten",
                            "Dense", "Dropout", "Dense"]
    demo = presets.build("fmnist-cnn", rescale=True, dropout=0.3, conv_dropout=0.2, seed=0)
    assert names(demo) == ["Rescaling", "Conv2D", "MaxPooling2D", "Dropout", "Conv2D", "MaxPooling2D",
                           "Dropout", "Flatten", "Dense", "Dropout", "Dense"]
    assert [layer.rate for layer in demo.layers if type(layer).__name__ == "Dropout"] == [0.2, 0.2, 0.3]
    bn = presets.build("fmnist-cnn", batchnorm=True, seed=0)
    assert names(bn)[:4] == ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D"]
    assert not bn.layers[0].use_bias
    with pytest.raises(ValueError, match="only offered for 'fmnist-cnn'"):
        presets.build("galaxy", conv_dropout=0.2)


def test_tta_flip_reports_the_mean_of_image_and_mirror(tmp_path):
    import convnet as cn
    assert cli.main(["train", "synthetic", "--epochs", "1", "--limit", "150", "--tta-flip", "--output-dir",
                     str(tmp_path), "--verbose", "0", "--backend", "numpy"]) == 0
    (run,) = tmp_path.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    model = cn.load_model(run / "model.npz")
    x, y, _ = cli.load_arrays("synthetic", "test", 30, 0)
    p = (model.predict(x) + model.predict(x[:, :, ::-1])) / 2
    assert metrics["test_accuracy_flip_tta"] == pytest.approx(float((p.argmax(1) == y).mean()))
    assert metrics["validation_accuracy"] >= 0 and "test_accuracy" in metrics
