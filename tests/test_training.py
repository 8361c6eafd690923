"""End-to-end: a W1-style CNN learns the synthetic shapes dataset on every backend
(conftest.BACKENDS, the grid the layer gradient checks use: numpy, numba, the
strict CuPy stand-in, and a real GPU where one works); training saved and resumed
gives the run it would have given uninterrupted; fit/evaluate/predict/summary/
train_step behave as the Keras API promises.

No test here reads a clock: how fast training runs is measured in benchmarks/."""

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet.synthetic import make_shapes


def w1_style(size, seed=0, final_softmax=False):
    return cn.Sequential([
        L.Conv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dense(32, activation="relu"),
        L.Dropout(0.2),
        L.Dense(3, activation="softmax" if final_softmax else None),
    ], input_shape=(size, size, 1), seed=seed)


@pytest.mark.parametrize("final_softmax", [False, True])
def test_cnn_learns_synthetic_shapes(backend, final_softmax):
    x, y = make_shapes(1200, size=16, seed=0)
    x_test, y_test = make_shapes(300, size=16, seed=1)
    model = w1_style(16, final_softmax=final_softmax)
    model.compile(optimizer=cn.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=6, batch_size=32, verbose=0, validation_data=(x_test, y_test))
    result = model.evaluate(x_test, y_test, return_dict=True)
    assert result["accuracy"] >= 0.95, (result, history.history)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["val_accuracy"]) == 6
    # what the user gets back is host data, whatever the backend computed on
    assert all(type(v) is float for values in history.history.values() for v in values)
    assert all(type(v) is float for v in result.values())
    probs = model.predict(x_test[:5])
    assert type(probs) is np.ndarray and probs.shape == (5, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert all(type(w) is np.ndarray for w in model.get_weights())


def compiled(seed=7):
    model = cn.Sequential([
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.BatchNormalization(),
        L.Flatten(),
        L.Dropout(0.3),
        L.Dense(3),
    ], input_shape=(12, 12, 1), seed=seed, name="resumable")
    model.compile(optimizer=cn.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def test_save_load_resume_continues_the_same_run(backend, tmp_path):
    """Three epochs straight, or two, save, load, one more: the same losses and
    weights (Adam's moments, BatchNorm's statistics, the shuffling and dropout
    generators all travel in the file)."""
    x, y = make_shapes(96, size=12, seed=4)
    straight = compiled()
    full = straight.fit(x, y, epochs=3, batch_size=16, verbose=0).history["loss"]

    first = compiled()
    part = first.fit(x, y, epochs=2, batch_size=16, verbose=0).history["loss"]
    first.save(tmp_path / "m.npz")
    resumed = cn.load_model(tmp_path / "m.npz")
    rest = resumed.fit(x, y, epochs=1, batch_size=16, verbose=0).history["loss"]

    np.testing.assert_allclose(part + rest, full, rtol=1e-6)
    for a, b in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 18


def test_a_model_file_loads_onto_every_backend(backend, tmp_path):
    """Saved on this backend, loaded onto numpy (and back): the same predictions;
    the file holds host arrays only, whatever backend wrote it."""
    x, y = make_shapes(48, size=12, seed=5)
    model = compiled()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    expected = model.predict(x)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert all(type(data[k]) is np.ndarray for k in data.files)
    with cn.use_backend("numpy"):
        on_numpy = cn.load_model(tmp_path / "m.npz")
        np.testing.assert_allclose(on_numpy.predict(x), expected, rtol=1e-4, atol=1e-6)
        on_numpy.save(tmp_path / "from_numpy.npz")
    again = cn.load_model(tmp_path / "from_numpy.npz")      # onto this backend
    np.testing.assert_allclose(again.predict(x), expected, rtol=1e-4, atol=1e-6)


def test_same_seed_gives_same_run(numpy_backend):
    x, y = make_shapes(64, size=12, seed=3)
    losses = []
    for _ in range(2):
        model = w1_style(12, seed=42)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        losses.append((history.history["loss"], model.get_weights()[0]))
    assert losses[0][0] == losses[1][0]
    np.testing.assert_array_equal(losses[0][1], losses[1][1])
    other = w1_style(12, seed=43)
    assert not np.array_equal(other.get_weights()[0], losses[0][1])


def test_train_step_returns_float_and_updates(numpy_backend):
    x, y = make_shapes(16, size=12)
    model = w1_style(12)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    loss = model.train_step(x, y)
    assert isinstance(loss, float) and np.isfinite(loss)
    after = model.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))


def test_categorical_labels_and_validation_split(numpy_backend):
    x, y = make_shapes(80, size=12)
    model = w1_style(12)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, np.eye(3)[y], epochs=1, batch_size=20, verbose=0, validation_split=0.25)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_fit_accepts_batch_iterable_with_steps_per_epoch(numpy_backend):
    x, y = make_shapes(64, size=12)

    class Batches:
        def __len__(self):
            return 4

        def __iter__(self):
            for i in range(0, 64, 16):
                yield x[i:i + 16], y[i:i + 16]

    model = w1_style(12)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    seen = []

    class Count(cn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    model.fit(Batches(), epochs=2, steps_per_epoch=3, verbose=0, callbacks=[Count()],
              validation_data=Batches())
    assert seen == [0, 1, 2, 0, 1, 2]
    assert set(model.evaluate(Batches(), return_dict=True)) == {"loss", "accuracy"}
    assert model.predict(Batches()).shape == (64, 3)


def test_float64_end_to_end(numpy_backend):
    cn.set_floatx("float64")
    try:
        model = w1_style(12)
    finally:
        cn.set_floatx("float32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = make_shapes(16, size=12)
    model.train_step(x, y)
    assert all(w.dtype == np.float64 for w in model.get_weights())
    assert w1_style(12).get_weights()[0].dtype == np.float32
    assert cn.get_floatx() == "float32"


def test_summary_table(capsys):
    model = cn.Sequential([
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10),
    ], input_shape=(28, 28, 1))
    model.summary()
    text = capsys.readouterr().out
    assert "(None, 28, 28, 32)" in text and "(None, 3136)" in text
    assert "Total params: 421,642" in text      # 320 + 18,496 + 401,536 + 1,290
    assert "Forward FLOPs per image: 8.52 MFLOP" in text
    bn = cn.Sequential([L.Dense(4), L.BatchNormalization()], input_shape=(3,))
    lines = []
    bn.summary(print_fn=lines.append)
    assert "Non-trainable params: 8" in lines[0] and "Trainable params: 24" in lines[0]


def test_batchnorm_running_statistics(numpy_backend, rng):
    layer = L.BatchNormalization(momentum=0.5, dtype="float64")
    x = rng.standard_normal((50, 3)) * 2 + 5
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(0), x.var(0) / (x.var(0) + 1e-3), rtol=1e-10)
    np.testing.assert_allclose(layer.state["moving_mean"], 0.5 * x.mean(0))
    np.testing.assert_allclose(layer.state["moving_variance"], 0.5 + 0.5 * x.var(0))
    y_inf = layer.forward(x, training=False)
    expected = (x - layer.state["moving_mean"]) / np.sqrt(layer.state["moving_variance"] + 1e-3)
    np.testing.assert_allclose(y_inf, expected)


def test_dropout_is_inverted_and_off_in_inference(numpy_backend):
    layer = L.Dropout(0.25, seed=0, dtype="float64")
    x = np.ones((200, 50))
    y = layer.forward(x, training=True)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_params_assignment_is_used_and_grads_are_overwritten(numpy_backend, rng):
    layer = L.Dense(2, dtype="float64")
    x = rng.standard_normal((3, 4))
    layer.build((4,))
    layer.params["W"][...] = np.ones((4, 2))
    layer.params["b"][...] = 0
    np.testing.assert_allclose(layer.forward(x), np.repeat(x.sum(1, keepdims=True), 2, 1))
    layer.backward(np.ones((3, 2)))
    first = layer.grads["W"].copy()
    layer.forward(x)
    layer.backward(np.ones((3, 2)))
    np.testing.assert_allclose(layer.grads["W"], first)   # not accumulated


def test_add_to_a_built_model_builds_the_new_layer():
    model = cn.Sequential([L.Dense(4)], input_shape=(3,))
    model.add(L.Dense(2))
    assert model.output_shape == (2,)
    assert model.layers[-1].params["W"].shape == (4, 2)
    with pytest.raises(ValueError, match="already in the model"):
        model.add(model.layers[0])
