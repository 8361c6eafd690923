"""Bad input raises ValueError naming the layer (or model) and the expected and
actual shapes, never an IndexError from deep inside a kernel."""

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L


def model(**kw):
    m = cn.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                       L.Flatten(), L.Dense(3)], input_shape=(8, 8, 1), name="net", **kw)
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_conv_wrong_rank():
    layer = L.Conv2D(2, 3, name="c1")
    expected = r"Conv2D 'c1': expected input of rank 4 \(N, H, W, C\), got shape \(8, 8, 1\)"
    with pytest.raises(ValueError, match=expected):
        layer.forward(np.zeros((8, 8, 1)))


def test_conv_wrong_channel_count():
    layer = L.Conv2D(2, 3, name="c2")
    layer.build((8, 8, 3))
    with pytest.raises(ValueError, match=r"Conv2D 'c2': expected input shape \(N, N, N, 3\), got \(2, 8, 8, 1\)"):
        layer.forward(np.zeros((2, 8, 8, 1)))


def test_checks_still_run_after_an_accepted_input():
    # a layer skips its checks only for an input like the last one it accepted
    layer = L.Conv2D(2, 3, name="c4")
    x = np.zeros((2, 8, 8, 3), dtype=np.float32)
    assert layer.forward(x).shape == (2, 6, 6, 2)
    assert layer.forward(x.tolist()).shape == (2, 6, 6, 2)        # a list is converted
    with pytest.raises(ValueError, match=r"Conv2D 'c4': expected input shape \(N, N, N, 3\), got \(2, 8, 8, 1\)"):
        layer.forward(np.zeros((2, 8, 8, 1), dtype=np.float32))
    with pytest.raises(TypeError, match=r"Conv2D 'c4': expected a real numeric array, got dtype <U1"):
        layer.forward(np.full((2, 8, 8, 3), "a"))
    assert layer.forward(x).dtype == np.float32
    assert layer.forward(x.astype(np.float64)).dtype == np.float32  # converted, not accepted as is


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"Conv2D 'c3': kernel \(5, 5\) is larger than the padded input \(6, 4\)"):
        L.Conv2D(2, 5, padding=1, name="c3").forward(np.zeros((1, 4, 2, 1)))
    with pytest.raises(ValueError, match=r"MaxPooling2D 'p1': pool_size \(3, 3\) is larger"):
        L.MaxPooling2D(3, name="p1").forward(np.zeros((1, 2, 2, 1)))
    with pytest.raises(ValueError, match="kernel .* is larger than the padded input"):
        cn.Sequential([L.Conv2D(2, 7)], input_shape=(5, 5, 1))


def test_empty_batch():
    with pytest.raises(ValueError, match=r"Dense 'd1': empty batch, got input shape \(0, 4\)"):
        L.Dense(2, name="d1").forward(np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"Sequential 'net'.predict: empty input \(0 samples\)"):
        model().predict(np.zeros((0, 8, 8, 1)))


def test_dense_after_conv_without_flatten():
    expected = r"Dense 'd2': expected inputs of rank 2 .*Flatten.*got input shape \(N, 6, 6, 2\)"
    with pytest.raises(ValueError, match=expected):
        cn.Sequential([L.Conv2D(2, 3), L.Dense(3, name="d2")], input_shape=(8, 8, 1))


def test_dense_wrong_features():
    layer = L.Dense(2, name="d3")
    layer.build((4,))
    with pytest.raises(ValueError, match=r"Dense 'd3': expected input shape \(N, 4\), got \(3, 5\)"):
        layer.forward(np.zeros((3, 5)))


def test_backward_checks():
    layer = L.Dense(2, name="d4")
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.zeros((1, 2)))
    layer.forward(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"Dense 'd4': backward expected dy of shape \(3, 2\)"):
        layer.backward(np.zeros((3, 5)))


def test_fit_mismatched_lengths():
    with pytest.raises(ValueError, match=r"Sequential 'net'.fit: x has 10 samples but y has 9"):
        model().fit(np.zeros((10, 8, 8, 1)), np.zeros(9, dtype=int), verbose=0)


def test_fit_labels_out_of_range():
    expected = r"Sequential 'net'.fit: labels must lie in \[0, 3\) for 3 classes, got values from 0 to 7"
    with pytest.raises(ValueError, match=expected):
        model().fit(np.zeros((4, 8, 8, 1)), np.array([0, 1, 2, 7]), verbose=0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model().fit(np.zeros((4, 8, 8, 1)), np.array([0, -1, 2, 1]), verbose=0)


def test_fit_wrong_input_shape_and_rank():
    expected = r"Sequential 'net'.fit: expected input shape \(N, 8, 8, 1\), got \(4, 8, 8, 3\)"
    with pytest.raises(ValueError, match=expected):
        model().fit(np.zeros((4, 8, 8, 3)), np.zeros(4, dtype=int), verbose=0)
    expected = r"Sequential 'net'.predict: expected input shape \(N, 8, 8, 1\), got \(4, 8, 8\)"
    with pytest.raises(ValueError, match=expected):
        model().predict(np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="expected a batch of inputs"):
        model().predict(np.zeros(4))


def test_fit_empty_and_bad_arguments():
    with pytest.raises(ValueError, match="empty input"):
        model().fit(np.zeros((0, 8, 8, 1)), np.zeros(0, dtype=int), verbose=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model().fit(np.zeros((4, 8, 8, 1)), np.zeros(4, dtype=int), batch_size=0, verbose=0)
    with pytest.raises(ValueError, match=r"validation_split must be in \(0, 1\)"):
        model().fit(np.zeros((4, 8, 8, 1)), np.zeros(4, dtype=int), validation_split=1.5, verbose=0)
    with pytest.raises(ValueError, match="one-hot labels of shape"):
        m = model()
        m.compile(loss="categorical_crossentropy")
        m.fit(np.zeros((4, 8, 8, 1)), np.zeros(4, dtype=int), verbose=0)
    with pytest.raises(RuntimeError, match="call compile"):
        cn.Sequential([L.Dense(2)], input_shape=(3,)).fit(np.zeros((2, 3)), np.zeros(2, dtype=int))


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="padding must be 'valid', 'same', a non-negative int or"):
        L.Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        L.Conv2D(2, (3, 3, 3))
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        L.Dense(2, activation="swishy")
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        L.Dropout(1.0)
    with pytest.raises(ValueError, match="filters must be a positive int"):
        L.Conv2D(0, 3)
    with pytest.raises(TypeError, match="expected a Layer"):
        cn.Sequential(["conv"])
