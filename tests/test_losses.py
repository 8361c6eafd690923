import numpy as np
import pytest

import convnet as cn
from convnet import layers as L


@pytest.mark.parametrize("batch,classes", [(1, 2), (5, 3), (4, 10)])
def test_sparse_crossentropy_gradient(backend, rng, batch, classes):
    loss = cn.losses.SparseCategoricalCrossentropy(from_logits=True)
    report = cn.gradcheck(loss, rng.standard_normal((batch, classes)) * 3, rng.integers(0, classes, batch))
    assert report.passed, str(report)


@pytest.mark.parametrize("batch,classes", [(1, 2), (5, 3)])
def test_categorical_crossentropy_gradient(backend, rng, batch, classes):
    loss = cn.losses.CategoricalCrossentropy(from_logits=True)
    onehot = np.eye(classes)[rng.integers(0, classes, batch)]
    assert cn.gradcheck(loss, rng.standard_normal((batch, classes)), onehot).passed
    soft = rng.dirichlet(np.ones(classes), size=batch)
    assert cn.gradcheck(loss, rng.standard_normal((batch, classes)), soft).passed


def test_crossentropy_value_matches_definition(backend):
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 0])
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -(np.log(p[0, 2]) + np.log(p[1, 0])) / 2
    sparse = cn.losses.SparseCategoricalCrossentropy(from_logits=True)
    assert sparse.forward(z, y) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(sparse.backward()), (p - np.eye(3)[y]) / 2, rtol=1e-12)
    onehot = cn.losses.CategoricalCrossentropy(from_logits=True)
    assert onehot.forward(z, np.eye(3)[y]) == pytest.approx(expected, rel=1e-12)
    # Keras call order: loss(y_true, y_pred)
    assert sparse(y, z) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_are_finite(backend, dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    y = np.array([1, 0])
    loss = cn.losses.SparseCategoricalCrossentropy(from_logits=True)
    value = loss.forward(z, y)
    assert np.isfinite(value) and value == pytest.approx((2e4 + 2e4 + np.log(2)) / 2, rel=1e-6)
    grad = backend.to_numpy(loss.backward())
    assert np.all(np.isfinite(grad))
    cat = cn.losses.CategoricalCrossentropy(from_logits=True)
    assert np.isfinite(cat.forward(z, np.eye(3)[y]))
    assert np.all(np.isfinite(backend.to_numpy(cat.backward())))


def test_probability_inputs_are_clipped_not_nan(backend):
    loss = cn.losses.SparseCategoricalCrossentropy()
    value = loss.forward(np.array([[1.0, 0.0]]), np.array([1]))
    assert np.isfinite(value) and value == pytest.approx(-np.log(1e-7), rel=1e-5)


def test_softmax_output_model_trains_stably_with_huge_logits(numpy_backend):
    """A final Dense(softmax) is trained through the fused logits path: even with
    weights that make logits of order 1e4, the loss and gradients stay finite."""
    model = cn.Sequential([L.Dense(3, activation="softmax")], input_shape=(4,), seed=0)
    model.compile(optimizer=cn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.layers[0].params["W"][...] = np.array([[1e4, -1e4, 0.0]] * 4, dtype=np.float32)
    x = np.ones((8, 4), dtype=np.float32)
    y = np.array([1] * 8)
    loss = model.train_step(x, y)
    assert np.isfinite(loss) and loss > 1e4     # confidently wrong, yet finite
    assert np.all(np.isfinite(model.layers[0].params["W"]))
    probs = model.predict(x)
    assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(1), 1)


def test_label_errors(backend):
    loss = cn.losses.SparseCategoricalCrossentropy(from_logits=True)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loss.forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"expected integer labels of shape \(2,\)"):
        loss.forward(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="one-hot targets of shape"):
        cn.losses.CategoricalCrossentropy().forward(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown loss"):
        cn.losses.get("hinge_squared")


def test_label_smoothing_matches_keras_definition(backend, rng):
    # Keras: y = y * (1 - s) + s / K, then the cross-entropy of the smoothed targets
    z, y, s = rng.standard_normal((4, 5)) * 2, np.array([0, 2, 4, 1]), 0.1
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    t = np.eye(5)[y] * (1 - s) + s / 5
    expected = -(t * np.log(p)).sum(1).mean()
    sparse = cn.losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=s)
    dense = cn.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=s)
    assert sparse.forward(z, y) == pytest.approx(expected, rel=1e-12)
    assert dense.forward(z, np.eye(5)[y]) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(backend.to_numpy(sparse.backward()), (p - t) / 4, rtol=1e-12)
    # from probabilities: the same loss (up to the clip at 1e-7)
    probs = cn.losses.SparseCategoricalCrossentropy(label_smoothing=s)
    assert probs.forward(p, y) == pytest.approx(expected, rel=1e-9)
    report = cn.gradcheck(sparse, z, y)
    assert report.passed, str(report)
    assert cn.gradcheck(dense, z, np.eye(5)[y]).passed


def test_label_smoothing_is_checked_and_saved(numpy_backend, tmp_path):
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy: label_smoothing must be .*1"):
        cn.losses.SparseCategoricalCrossentropy(label_smoothing=1.5)
    model = cn.Sequential([L.Flatten(), L.Dense(3)], input_shape=(2, 2, 1), seed=0)
    model.compile(loss=cn.losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.2))
    model.save(tmp_path / "m.npz")
    loaded = cn.load_model(tmp_path / "m.npz")
    assert loaded.losses[0].label_smoothing == 0.2
