"""Plots: PNG files of the expected pixel size, and feature maps equal to a hand forward pass."""

import os
import struct
import sys

import numpy as np
import pytest

import convnet as cn

pytest.importorskip("matplotlib")
from convnet import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _numpy(numpy_backend):
    yield


def png_size(path):
    """(width, height) from the PNG header; checks the signature and that it is not tiny."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert len(data) > 2000
    return struct.unpack(">II", data[16:24])


def not_blank(path):
    from PIL import Image
    with Image.open(path) as img:
        a = np.asarray(img.convert("L"), dtype=np.float64)
    return a.std() > 5 and a.min() < 128


@pytest.fixture(scope="module")
def trained():
    with cn.use_backend("numpy"):
        model = cn.Sequential([
            cn.layers.Conv2D(6, 3, padding="same", activation="relu"),
            cn.layers.MaxPooling2D(2),
            cn.layers.Conv2D(10, 3, activation="relu"),
            cn.layers.Flatten(),
            cn.layers.Dense(3),
        ], input_shape=(12, 12, 1), seed=3)
        model.compile("adam", metrics=["accuracy", "auc"])
        rng = np.random.default_rng(0)
        x = rng.random((24, 12, 12, 1)).astype(np.float32)
        y = rng.integers(0, 3, 24)
        history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_split=0.25)
    return model, history, x, y


def test_plot_history_png(tmp_path, trained):
    _, history, _, _ = trained
    path = tmp_path / "curves.png"
    fig = viz.plot_history(history, path)
    # three panels (loss, accuracy, auc), 4 x 3.2 inches each at 100 dpi
    assert len(fig.axes) == 3 and png_size(path) == (1200, 320) and not_blank(path)
    ax = fig.axes[0]
    assert ax.get_title() == "loss"
    train, val = ax.get_lines()
    np.testing.assert_allclose(train.get_ydata(), history.history["loss"])
    np.testing.assert_allclose(val.get_ydata(), history.history["val_loss"])
    fig = viz.plot_history(history.history, metrics=["loss"])
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="no \\['f1'\\] in the history"):
        viz.plot_history(history, metrics=["f1"])


def test_plot_confusion_matrix_png(tmp_path, trained):
    model, _, x, y = trained
    path = tmp_path / "cm.png"
    cm = cn.metrics.confusion_matrix(y, model.predict(x))
    fig = viz.plot_confusion_matrix(cm, class_names=["a", "b", "c"], path=path)
    assert png_size(path) == (500, 400) and not_blank(path)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == [str(v) for v in cm.ravel()]
    fig = viz.plot_confusion_matrix(y, model.predict(x), class_names=["a", "b", "c"], normalize=True)
    texts = [float(t.get_text()) for t in fig.axes[0].texts]
    np.testing.assert_allclose(texts, (cm / cm.sum(1, keepdims=True)).ravel(), atol=0.005)
    with pytest.raises(ValueError, match="square"):
        viz.plot_confusion_matrix(np.zeros((2, 3)))


def test_plot_filters_png(tmp_path, trained):
    model, _, _, _ = trained
    path = tmp_path / "filters.png"
    fig = viz.plot_filters(model, path, columns=4)
    # 6 filters in 2 rows of 4 tiles: (1.1*4 + 0.4) x (1.1*2 + 0.6) inches
    assert png_size(path) == (480, 280) and not_blank(path)
    images = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_images()]
    assert len(images) == 6
    np.testing.assert_allclose(images[2], model.layers[0].params["W"][:, :, 0, 2])
    with pytest.raises(ValueError, match="no Conv2D layer named 'dense'"):
        viz.plot_filters(model, layer="dense")


def test_feature_maps_match_a_forward_pass_by_hand(trained):
    model, _, x, _ = trained
    maps = viz.feature_maps(model, x[5])
    assert list(maps) == [model.layers[0].name, model.layers[2].name]
    conv1, pool, conv2 = model.layers[:3]
    a1 = np.maximum(cn.layers.conv2d_naive(x[5:6], conv1.params["W"], conv1.params["b"],
                                           padding="same"), 0)
    np.testing.assert_allclose(maps[conv1.name], a1[0], rtol=1e-5, atol=1e-6)
    p = a1[0].reshape(6, 2, 6, 2, 6).max(axis=(1, 3))           # 2x2 max pooling by hand
    a2 = np.maximum(cn.layers.conv2d_naive(p[None], conv2.params["W"], conv2.params["b"]), 0)
    np.testing.assert_allclose(maps[conv2.name], a2[0], rtol=1e-5, atol=1e-6)
    assert maps[conv2.name].shape == (4, 4, 10)
    everything = viz.feature_maps(model, x[5], layers="all")
    assert list(everything) == [layer.name for layer in model.layers[:3]]
    with pytest.raises(ValueError, match="model takes images of shape"):
        viz.feature_maps(model, np.zeros((10, 10, 1)))


def test_plot_feature_maps_png(tmp_path, trained):
    model, _, x, _ = trained
    path = tmp_path / "maps.png"
    fig = viz.plot_feature_maps(model, x[0], path, max_maps=8, columns=4)
    # input row, then conv 1 (6 maps) and conv 2 (8 of its 10 maps), 4 per row: 5 rows of 4
    assert png_size(path) == (560, 715) and not_blank(path)
    assert sum(1 for ax in fig.axes if ax.get_images()) == 1 + 6 + 8


def test_inspect_writes_filters_and_maps(tmp_path, trained):
    from PIL import Image
    model, _, x, _ = trained
    model.save(tmp_path / "model.npz")
    Image.fromarray((x[0, :, :, 0] * 255).astype(np.uint8)).resize((30, 20)).save(tmp_path / "img.png")
    written = viz.inspect(tmp_path / "model.npz", tmp_path / "img.png", tmp_path / "out")
    assert written == [str(tmp_path / "out" / "filters.png"), str(tmp_path / "out" / "feature_maps.png")]
    # filters: 6 tiles in one row of 8 columns -> (1.1*6 + 0.4) x (1.1 + 0.6) inches
    assert png_size(tmp_path / "out" / "filters.png") == (700, 170)
    assert png_size(tmp_path / "out" / "feature_maps.png")[1] > 300
    for key in ("filters", "feature_maps"):
        assert not_blank(tmp_path / "out" / f"{key}.png")
    with pytest.raises(ValueError, match="cannot decode image"):
        viz.inspect(tmp_path / "model.npz", tmp_path / "model.npz", tmp_path / "out")


def test_missing_matplotlib_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        viz.plot_history({"loss": [1.0, 0.5]})


def test_load_image_scales_unless_the_model_rescales(tmp_path):
    from PIL import Image
    Image.fromarray(np.full((5, 7, 3), 200, dtype=np.uint8)).save(tmp_path / "grey.png")
    plain = cn.Sequential([cn.layers.Conv2D(2, 3)], input_shape=(10, 14, 1))
    rescaling = cn.Sequential([cn.layers.Rescaling(1 / 255), cn.layers.Conv2D(2, 3)],
                              input_shape=(10, 14, 3))
    x = viz.load_image(tmp_path / "grey.png", plain.input_shape, model=plain)
    assert x.shape == (10, 14, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x, 200 / 255, rtol=1e-6)
    x = viz.load_image(tmp_path / "grey.png", rescaling.input_shape, model=rescaling)
    assert x.shape == (10, 14, 3)
    np.testing.assert_allclose(x, 200.0)


def test_plot_activations_one_png_per_image_with_classes(tmp_path, trained):
    model, _, x, y = trained
    with cn.use_backend("numpy"):
        written = viz.plot_activations(model, x[:3], labels=y[:3], class_names=["a", "b", "c"],
                                       path=tmp_path / "acts.png", max_maps=4, columns=4)
        figures = viz.plot_activations(model, x[:1], labels=np.eye(3)[y[:1]], class_names=["a", "b", "c"],
                                       max_maps=4)
        predicted = model.predict(x[:1]).argmax(axis=1)[0]
    assert written == [str(tmp_path / f"acts_{i}.png") for i in range(3)]
    for p in written:
        assert not_blank(p)
    (fig,) = figures
    # the picture, then 4 maps of conv 1 and 4 of conv 2
    assert sum(1 for ax in fig.axes if ax.get_images()) == 1 + 4 + 4
    title = fig.axes[0].get_title(loc="left")
    assert title.startswith(f"predicted {'abc'[predicted]} (") and title.endswith(f"true {'abc'[y[0]]}")
    with pytest.raises(ValueError, match=r"plot_activations: 2 images but 1 labels"):
        viz.plot_activations(model, x[:2], labels=y[:1])
    with pytest.raises(ValueError, match=r"the model takes images of shape \(12, 12, 1\)"):
        viz.plot_activations(model, np.zeros((1, 5, 5, 1)))


def test_inspect_takes_a_folder_or_several_images(tmp_path, trained):
    from PIL import Image
    model, _, x, _ = trained
    model.save(tmp_path / "model.npz")
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["b.png", "a.png", "sub/c.png"]):
        Image.fromarray((x[i, :, :, 0] * 255).astype(np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    written = viz.inspect(tmp_path / "model.npz", folder, tmp_path / "out")
    assert [os.path.basename(p) for p in written] == ["filters.png", "feature_maps_0_a.png",
                                                       "feature_maps_1_b.png", "feature_maps_2_c.png"]
    written = viz.inspect(tmp_path / "model.npz", [folder / "a.png", folder / "b.png"], tmp_path / "out2")
    assert len(written) == 3 and all(not_blank(p) for p in written)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image files"):
        viz.inspect(tmp_path / "model.npz", tmp_path / "empty", tmp_path / "o")
    with pytest.raises(ValueError, match="no such file or folder"):
        viz.inspect(tmp_path / "model.npz", tmp_path / "nowhere.png", tmp_path / "o")
