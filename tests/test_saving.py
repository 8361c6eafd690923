"""Model files: round trip, exact resume of training, and damaged files."""

import json
import os

import numpy as np
import pytest

import convnet as cn
from convnet import saving


@pytest.fixture(autouse=True)
def _numpy(numpy_backend):
    yield


def small_cnn(seed=7, metrics=("accuracy",)):
    model = cn.Sequential([
        cn.layers.Conv2D(4, 3, activation="relu"),
        cn.layers.MaxPooling2D(2),
        cn.layers.BatchNormalization(),
        cn.layers.Flatten(),
        cn.layers.Dropout(0.3),
        cn.layers.Dense(3),
    ], input_shape=(8, 8, 1), seed=seed)
    model.compile(optimizer=cn.optimizers.Adam(learning_rate=1e-2),
                  loss="sparse_categorical_crossentropy", metrics=list(metrics))
    return model


def data(n=30):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, n)


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def saved_file(tmp_path):
    x, y = data()
    model = small_cnn()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


def rewrite(path, out, edit_meta=None, drop=None):
    """Copy a model file, editing its JSON metadata or dropping one array."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__meta__"]))
    if edit_meta:
        edit_meta(meta)
    arrays["__meta__"] = np.array(json.dumps(meta))
    if drop:
        del arrays[drop]
    np.savez(out, **arrays)
    return out


def test_round_trip_predicts_identically(tmp_path):
    model, path = saved_file(tmp_path)
    x, _ = data()
    loaded = cn.load_model(path)
    assert [type(a) for a in loaded.layers] == [type(a) for a in model.layers]
    assert same(loaded.get_weights(), model.get_weights())
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 4
    assert loaded.metrics_names == ["loss", "accuracy"]
    # only plain arrays inside: every entry loads with allow_pickle=False, none is an object
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
        assert int(json.loads(str(f["__meta__"]))["version"]) == saving.FORMAT_VERSION


def test_checkpoint_mid_training_resumes_to_identical_weights(tmp_path):
    """4 epochs straight == 2 epochs, save (ModelCheckpoint), load, 2 more epochs:
    weights, BatchNorm statistics, Adam's moments, shuffling and dropout masks all
    continue exactly."""
    x, y = data()
    kwargs = dict(batch_size=8, verbose=0, validation_split=0.2)
    straight = small_cnn()
    h_straight = straight.fit(x, y, epochs=4, **kwargs)

    first = small_cnn()
    ckpt = cn.callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch}.npz"))
    first.fit(x, y, epochs=2, **kwargs, callbacks=[ckpt])
    del first
    resumed = cn.load_model(tmp_path / "ckpt-2.npz")
    h_resumed = resumed.fit(x, y, epochs=4, initial_epoch=2, **kwargs)

    assert same(resumed.get_weights(), straight.get_weights())
    assert h_resumed.history["loss"] == h_straight.history["loss"][2:]
    assert h_resumed.history["val_loss"] == h_straight.history["val_loss"][2:]
    s1, s2 = straight.optimizer.get_state(), resumed.optimizer.get_state()
    assert s1[0] == s2[0] == 12
    assert all(np.array_equal(s1[1][k], s2[1][k]) for k in s1[1])

    # and without the optimizer state it would not match: the test can fail
    fresh = cn.load_model(tmp_path / "ckpt-2.npz", compile=False)
    fresh.compile(optimizer=cn.optimizers.Adam(learning_rate=1e-2), metrics=["accuracy"])
    fresh.fit(x, y, epochs=4, initial_epoch=2, **kwargs)
    assert not same(fresh.get_weights(), straight.get_weights())


def test_wrong_version_is_a_clear_error(tmp_path):
    _, path = saved_file(tmp_path)
    bad = rewrite(path, tmp_path / "v99.npz", edit_meta=lambda m: m.update(version=99))
    with pytest.raises(ValueError, match=r"format version 99; this convnet reads versions \[1, 2\]"):
        cn.load_model(bad)
    other = rewrite(path, tmp_path / "other.npz", edit_meta=lambda m: m.update(format="keras"))
    with pytest.raises(ValueError, match="not a convnet model file"):
        cn.load_model(other)


def test_missing_keys_are_clear_errors(tmp_path):
    _, path = saved_file(tmp_path)
    no_model = rewrite(path, tmp_path / "a.npz", edit_meta=lambda m: m.pop("model"))
    with pytest.raises(ValueError, match="missing or malformed metadata.*'model'"):
        cn.load_model(no_model)
    no_layers = rewrite(path, tmp_path / "b.npz", edit_meta=lambda m: m["model"].pop("layers"))
    with pytest.raises(ValueError, match="missing or malformed metadata"):
        cn.load_model(no_layers)
    no_array = rewrite(path, tmp_path / "c.npz", drop="param/5/W")
    with pytest.raises(ValueError, match="missing array 'param/5/W'"):
        cn.load_model(no_array)
    no_meta = tmp_path / "d.npz"
    np.savez(no_meta, w=np.zeros(3))
    with pytest.raises(ValueError, match="no '__meta__' entry"):
        cn.load_model(no_meta)
    with pytest.raises(FileNotFoundError, match="no such file"):
        cn.load_model(tmp_path / "absent.npz")


def test_truncated_and_damaged_bytes_are_clear_errors(tmp_path):
    _, path = saved_file(tmp_path)
    raw = path.read_bytes()
    for cut in (0, 3, 30, len(raw) // 3, len(raw) // 2, len(raw) - 30, len(raw) - 1):
        broken = tmp_path / f"cut{cut}.npz"
        broken.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="not a readable convnet model file"):
            cn.load_model(broken)
    # a flipped byte inside the weights: the zip CRC catches it
    with np.load(path, allow_pickle=False) as f:
        w = f["param/5/W"]
    at = raw.find(w.tobytes()[:16])
    assert at > 0
    damaged = bytearray(raw)
    damaged[at + 5] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="not a readable convnet model file.*CRC"):
        cn.load_model(tmp_path / "flip.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable convnet model file"):
        cn.load_model(tmp_path / "text.npz")


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    model, path = saved_file(tmp_path)
    before = path.read_bytes()

    def failing_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    x, y = data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    monkeypatch.setattr(saving.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]     # no temporary file left behind
    monkeypatch.undo()
    model.save(path)
    assert same(cn.load_model(path).get_weights(), model.get_weights())


def test_custom_metric_is_dropped_with_a_warning(tmp_path):
    def my_metric(y_true, y_pred):
        return 0.5
    x, y = data()
    model = small_cnn(metrics=("accuracy", "auc", "top2_accuracy", my_metric))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "m.npz")
    with pytest.warns(UserWarning, match="'my_metric' is not a built-in metric"):
        loaded = cn.load_model(tmp_path / "m.npz")
    assert loaded.metrics_names == ["loss", "accuracy", "auc", "top2_accuracy"]
    logs = loaded.evaluate(x, y, return_dict=True)
    ref = model.evaluate(x, y, return_dict=True)
    assert {k: ref[k] for k in logs} == logs


def test_saved_model_file_gets_ordinary_permissions(tmp_path):
    model = cn.Sequential([cn.layers.Dense(2)], input_shape=(3,))
    path = tmp_path / "m.npz"
    umask = os.umask(0o022)
    try:
        model.save(path)
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]   # no temporary left behind
