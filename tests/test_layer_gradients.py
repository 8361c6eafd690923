"""Every layer passes a float64 central-difference gradient check, on every backend
(conftest.BACKENDS: numpy, numba, the strict CuPy stand-in, and a real GPU where
one works, marked `gpu`), over a grid of shapes (kernel 1/2/3/5, stride 1/2/3, all padding modes, odd and
even sizes, batch 1 and >1, one and several channels)."""

import itertools

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L

TOL = 1e-6

CONV_GRID = [
    # (kernel, stride, padding, (N, H, W, C), filters)
    (k, s, p, shape, f)
    for (k, s, p), (shape, f) in zip(
        itertools.product([1, 2, 3, 5], [1, 2, 3], ["valid", "same", 1]),
        itertools.cycle([((1, 7, 7, 1), 2), ((2, 6, 8, 3), 3), ((2, 9, 6, 2), 1), ((1, 8, 8, 2), 4)]),
    )
    if not (p == "valid" and k > min(shape[1:3]))
]


def check(layer, x, **kwargs):
    report = cn.gradcheck(layer, x, **kwargs)
    assert report.passed, str(report)
    assert set(report.errors) == {"input", *layer.params}
    return report


@pytest.mark.parametrize("kernel,stride,padding,shape,filters", CONV_GRID)
def test_conv2d_gradients(backend, rng, kernel, stride, padding, shape, filters):
    layer = L.Conv2D(filters, kernel, strides=stride, padding=padding, dtype="float64", seed=1)
    check(layer, rng.standard_normal(shape), max_checks=60)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax", "linear"])
def test_conv2d_with_activation(backend, rng, activation):
    layer = L.Conv2D(3, 3, padding="same", activation=activation, dtype="float64", seed=2)
    check(layer, rng.standard_normal((2, 5, 6, 2)), max_checks=60)


def test_conv2d_rectangular_kernel_and_no_bias(backend, rng):
    layer = L.Conv2D(2, (2, 3), strides=(2, 1), padding="same", use_bias=False, dtype="float64")
    check(layer, rng.standard_normal((2, 7, 6, 3)))


POOL_GRID = list(itertools.product([2, 3], [1, 2, 3], ["valid", "same", 1], [(1, 7, 7, 1), (2, 6, 8, 3)]))


@pytest.mark.parametrize("pool,stride,padding,shape", POOL_GRID)
def test_maxpool_gradients(backend, rng, pool, stride, padding, shape):
    # distinct values so no window has a tie within the finite-difference step
    x = rng.permutation(np.prod(shape)).reshape(shape) / 7.0
    check(L.MaxPooling2D(pool, strides=stride, padding=padding, dtype="float64"), x, max_checks=80)


@pytest.mark.parametrize("pool,stride,padding,shape", POOL_GRID)
def test_avgpool_gradients(backend, rng, pool, stride, padding, shape):
    layer = L.AveragePooling2D(pool, strides=stride, padding=padding, dtype="float64")
    check(layer, rng.standard_normal(shape), max_checks=80)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax", None])
@pytest.mark.parametrize("batch", [1, 4])
def test_dense_gradients(backend, rng, activation, batch):
    layer = L.Dense(5, activation=activation, dtype="float64", seed=3)
    check(layer, rng.standard_normal((batch, 7)))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3), (3, 5, 4, 2)])
def test_batchnorm_gradients(backend, rng, training, shape):
    layer = L.BatchNormalization(dtype="float64")
    layer.build(shape[1:])
    # host values go to the device explicitly: on CuPy `device[...] = host` raises
    layer.params["gamma"][...] = backend.asarray(rng.uniform(0.5, 2, shape[-1]))
    layer.params["beta"][...] = backend.asarray(rng.standard_normal(shape[-1]))
    layer.state["moving_variance"][...] = backend.asarray(rng.uniform(0.5, 2, shape[-1]))
    check(layer, rng.standard_normal(shape) * 2 + 1, training=training)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "linear"])
def test_activation_layer_gradients(backend, rng, name):
    check(L.Activation(name, dtype="float64"), rng.standard_normal((3, 6)))


@pytest.mark.parametrize("make", [
    lambda: L.Flatten(dtype="float64"),
    lambda: L.GlobalAveragePooling2D(dtype="float64"),
    lambda: L.Dropout(0.4, seed=5, dtype="float64"),
    lambda: L.ReLU(dtype="float64"),
    lambda: L.Rescaling(1 / 255, offset=-0.5, dtype="float64"),
])
@pytest.mark.parametrize("batch", [1, 3])
def test_parameter_free_layer_gradients(backend, rng, make, batch):
    check(make(), rng.standard_normal((batch, 5, 4, 3)))


def test_gradcheck_catches_a_wrong_backward(numpy_backend, rng):
    class BrokenDense(L.Dense):
        def _backward(self, dy):
            dx = super()._backward(dy)
            self.grads["W"] = self.grads["W"] * 1.01   # a 1% error in dW
            return dx

    report = cn.gradcheck(BrokenDense(3, dtype="float64"), rng.standard_normal((2, 4)))
    assert not report.passed
    assert report.errors["W"] > 1e-3
    assert report.errors["input"] < TOL
    assert "FAIL" in str(report)


def test_gradcheck_of_float32_layer_uses_float64_twin(numpy_backend, rng):
    layer = L.Conv2D(2, 3, dtype="float32", seed=0)
    report = cn.gradcheck(layer, rng.standard_normal((1, 5, 5, 1)).astype(np.float32))
    assert report.passed, str(report)
    assert layer.params["W"].dtype == np.float32


def test_model_gradcheck(backend, rng):
    model = cn.Sequential([
        L.Conv2D(2, 3, padding="same", activation="tanh"),
        L.MaxPooling2D(2),
        L.BatchNormalization(),
        L.Flatten(),
        L.Dropout(0.2),
        L.Dense(3, activation="softmax"),
    ], input_shape=(6, 6, 1), seed=0)
    model.compile(loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((4, 6, 6, 1))
    y = np.array([0, 1, 2, 1])
    report = cn.gradcheck(model, x, y)
    assert report.passed, str(report)
    assert len(report.errors) == 6   # W, b of conv and dense; gamma, beta


def test_model_gradcheck_when_backprop_stops_early(backend, rng):
    """The first layers (Rescaling, Flatten) have no parameters, so backprop stops at
    the first Conv2D/Dense and skips its input gradient; the weights' gradients
    must still be exact."""
    conv_first = [L.Rescaling(0.5), L.Conv2D(2, 3, padding="same", activation="relu"), L.Flatten(), L.Dense(3)]
    dense_first = [L.Rescaling(0.5), L.Flatten(), L.Dense(3)]
    for layers in (conv_first, dense_first):
        model = cn.Sequential(layers, input_shape=(5, 5, 1), seed=1)
        model.compile(loss="sparse_categorical_crossentropy")
        report = cn.gradcheck(model, rng.standard_normal((3, 5, 5, 1)), np.array([0, 2, 1]))
        assert report.passed, str(report)
        # the graph runs no backward before the first layer with parameters, and that
        # layer computes no input gradient
        first = next(node for node in model.graph.nodes if node.layer.params)
        assert not model.graph.input_grad_needed(first)
        assert not model.graph.runs_backward(model.graph.nodes[1])     # the Rescaling


def test_gradcheck_perturbs_weights_of_any_memory_layout(numpy_backend, rng):
    """A weight stored transposed (Fortran order) is perturbed in place, not in a
    reshaped copy: the numeric gradient sees every perturbation."""
    from convnet.gradcheck import _numeric_grad
    t = rng.standard_normal((3, 4)).T                        # a transposed view
    numeric = _numeric_grad(lambda: float(np.sum(t ** 2)), t, np.arange(t.size), 1e-6)
    np.testing.assert_allclose(numeric, 2 * t.reshape(-1), atol=1e-6)
    model = cn.Sequential([L.Flatten(), L.Dense(3)], input_shape=(2, 2, 1), seed=0)
    model.compile(loss="sparse_categorical_crossentropy")
    dense = model.layers[-1]
    dense.params["W"] = np.asfortranarray(dense.params["W"])
    report = cn.gradcheck(model, rng.standard_normal((3, 2, 2, 1)), np.array([0, 2, 1]))
    assert report.passed, str(report)
