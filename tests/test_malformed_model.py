"""Malformed calls to a model's public methods (fit, evaluate, predict, train_step,
compile, cn.Model, save/load) raise only ValueError or TypeError, with a message
that names the argument or the model. The layer-, loss- and data-level calls are
in test_malformed.py (whose clean_error this file shares)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis_profiles import profile
from test_malformed import clean_error

import convnet as cn
from convnet import layers as L


def small_model():
    model = cn.Sequential([L.Conv2D(2, 3), L.Flatten(), L.Dense(3)], input_shape=(5, 5, 1), seed=0,
                          name="small")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


X = np.zeros((6, 5, 5, 1), np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])


@pytest.mark.parametrize("x, y, names", [
    (np.zeros((6, 5, 5)), Y, ["expected input shape", "small"]),            # rank 3
    (np.zeros((6, 4, 5, 1)), Y, ["expected input shape"]),                  # wrong height
    (np.zeros(6), Y, ["batch of inputs"]),                                  # rank 1
    (np.zeros((0, 5, 5, 1)), Y[:0], ["empty"]),
    (X, Y[:4], ["6 samples but y has 4"]),
    (X, np.array([0, 1, 3, 0, 1, 2]), ["label", "[0, 3)"]),                # out of range
    (X, np.array([0, 1, -1, 0, 1, 2]), ["label"]),
    (X, np.array([0, 1, 0.5, 0, 1, 2]), ["label"]),
    (X, np.array(["a"] * 6), ["label"]),
    (np.full((6, 5, 5, 1), "a"), Y, ["numeric"]),
    (X, None, ["labels y are required"]),
])
def test_fit_bad_data(x, y, names):
    model = small_model()
    clean_error(lambda: model.fit(x, y, epochs=1, verbose=0), *names)


@pytest.mark.parametrize("kwargs, name", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": -3}, "batch_size"), ({"batch_size": "8"}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"), ({"batch_size": True}, "batch_size"),
    ({"epochs": -1}, "epochs"), ({"epochs": "3"}, "epochs"), ({"epochs": 1.5}, "epochs"),
    ({"initial_epoch": -1}, "initial_epoch"), ({"initial_epoch": "1"}, "initial_epoch"),
    ({"validation_split": 1.5}, "validation_split"), ({"validation_split": -0.1}, "validation_split"),
    ({"validation_data": (X, Y, Y, Y)}, "validation_data"), ({"validation_data": (X, Y[:3])}, "samples"),
    ({"steps_per_epoch": 0}, "steps_per_epoch"), ({"steps_per_epoch": "a"}, "steps_per_epoch"),
    ({"steps_per_epoch": math.nan}, "steps_per_epoch"), ({"validation_steps": -1}, "validation_steps"),
])
def test_fit_bad_arguments(kwargs, name):
    model = small_model()
    clean_error(lambda: model.fit(X, Y, verbose=0, **kwargs), name)


@given(batch_size=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.text(max_size=3),
                            st.none(), st.booleans()))
@profile(0.5)
def test_predict_and_evaluate_bad_batch_size(batch_size):
    model = small_model()
    if batch_size is None:        # Keras' default: 32
        assert model.predict(X, batch_size=batch_size).shape == (6, 3)
        return
    clean_error(lambda: model.predict(X, batch_size=batch_size), "batch_size")
    clean_error(lambda: model.evaluate(X, Y, batch_size=batch_size), "batch_size")


@pytest.mark.parametrize("x, name", [
    (np.zeros((2, 5, 5, 2)), "expected input shape"), (np.zeros((2, 5, 5)), "expected input shape"),
    ([[1, 2], [3]], "rectangular"), (np.zeros((0, 5, 5, 1)), "empty"), ("images", "batch of inputs"),
    (cn.Input(shape=(5, 5, 1)), "symbolic"),
])
def test_predict_and_call_bad_inputs(x, name):
    model = small_model()
    clean_error(lambda: model.predict(x), name)
    clean_error(lambda: model(x), name)


def test_evaluate_and_train_step_bad_labels():
    model = small_model()
    clean_error(lambda: model.evaluate(X, Y[:2]), "6 samples but y has 2")
    clean_error(lambda: model.train_step(X, np.full(6, 7)), "label")
    clean_error(lambda: model.evaluate(X, steps=0), "steps")


@pytest.mark.parametrize("kwargs, name", [
    ({"optimizer": "adamm"}, "optimizer"), ({"optimizer": 3}, "optimizer"), ({"loss": "mse2"}, "loss"),
    ({"loss": 7}, "loss"), ({"metrics": ["acuracy"]}, "metric"),
    ({"loss": ["sparse_categorical_crossentropy"] * 2}, "2 losses for 1 outputs"),
    ({"loss": {"nope": "sparse_categorical_crossentropy"}}, "unknown outputs"),
    ({"loss_weights": [1.0, 2.0]}, "loss_weights"),
])
def test_compile_bad_arguments(kwargs, name):
    model = cn.Sequential([L.Dense(3)], input_shape=(4,))
    clean_error(lambda: model.compile(**kwargs), name)


@pytest.mark.parametrize("inputs, outputs, name", [
    (None, "out", "give both"), ("x", None, "give both"), ([], "out", "empty"),
    ("x", [1, 2], "symbolic tensors"), ("x", "a string", "symbolic tensors"),
])
def test_model_constructor_bad_arguments(inputs, outputs, name):
    x = cn.Input(shape=(3,))
    out = L.Dense(2)(x)
    pick = {"x": x, "out": out}
    resolve = (lambda v: pick.get(v, v) if isinstance(v, str) and v in pick else v)
    clean_error(lambda: cn.Model(inputs=resolve(inputs), outputs=resolve(outputs)), name)


def test_save_and_load_bad_paths(tmp_path):
    model = cn.Sequential([L.Flatten()])
    clean_error(lambda: model.save(tmp_path / "m.npz"), "not built")
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(FileNotFoundError, match="no such file"):
        cn.load_model(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("hello")
    clean_error(lambda: cn.load_model(tmp_path / "text.npz"), "text.npz")
