"""The fast kernels against the naive reference: im2col convolution equals the
loop convolution, im2col/col2im are adjoint, max-pool routes to one maximum,
and output shapes follow the Keras/TensorFlow rules."""

import math

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet.layers.padding import window_geometry

SHAPES = [(1, 7, 7, 1), (2, 8, 6, 3), (3, 5, 9, 2)]


@pytest.mark.parametrize("kernel", [1, 2, 3, 5, (2, 3)])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same", 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_im2col_conv_equals_naive_loops(backend, rng, kernel, stride, padding, shape):
    layer = L.Conv2D(4, kernel, strides=stride, padding=padding, dtype="float64", seed=0)
    kh, kw = layer.kernel_size
    if padding == "valid" and (kh > shape[1] or kw > shape[2]):
        pytest.skip("kernel does not fit")
    x = rng.standard_normal(shape)
    layer.build(shape[1:])
    layer.params["b"][...] = backend.asarray(rng.standard_normal(4))   # CuPy refuses host arrays here
    fast = backend.to_numpy(layer.forward(x))
    naive = L.conv2d_naive(x, backend.to_numpy(layer.params["W"]), backend.to_numpy(layer.params["b"]),
                           strides=stride, padding=padding)
    np.testing.assert_allclose(fast, naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel,stride,pads", [
    ((3, 3), (1, 1), ((1, 1), (1, 1))),
    ((2, 2), (2, 2), ((0, 1), (0, 1))),
    ((5, 3), (3, 2), ((2, 2), (0, 1))),
    ((1, 1), (2, 3), ((0, 0), (0, 0))),
])
@pytest.mark.parametrize("shape", SHAPES)
def test_im2col_col2im_adjoint(backend, rng, kernel, stride, pads, shape):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    (kh, kw), (sh, sw) = kernel, stride
    x = rng.standard_normal(shape)
    cols = backend.to_numpy(backend.im2col(backend.asarray(x), kh, kw, sh, sw, pads))
    c = rng.standard_normal(cols.shape)
    back = backend.to_numpy(backend.col2im(backend.asarray(c), shape, kh, kw, sh, sw, pads))
    assert back.shape == shape
    assert math.isclose(np.vdot(cols, c), np.vdot(x, back), rel_tol=1e-12)


@pytest.mark.parametrize("pool,stride,padding", [(2, None, "valid"), (3, 2, "same"), (2, 1, "valid"), (3, 1, 1)])
def test_maxpool_routes_gradient_to_one_maximum_per_window(backend, rng, pool, stride, padding):
    x = rng.standard_normal((2, 7, 6, 3))
    x[0, :3, :3, 0] = 5.0          # a tie: several maxima in one window
    layer = L.MaxPooling2D(pool, strides=stride, padding=padding, dtype="float64")
    y = backend.to_numpy(layer.forward(x))
    # one window at a time: a unit gradient on one output reaches exactly one input,
    # and that input holds the window's maximum
    n_out = y.size
    for flat in rng.choice(n_out, size=min(n_out, 40), replace=False):
        dy = np.zeros(y.shape)
        dy.flat[flat] = 1.0
        dx = backend.to_numpy(layer.backward(dy))
        assert np.count_nonzero(dx) == 1
        assert dx.sum() == 1.0
        assert x.flat[np.flatnonzero(dx)[0]] == y.flat[flat]


def test_maxpool_tie_goes_to_first_maximum(backend):
    x = np.zeros((1, 2, 2, 1))
    layer = L.MaxPooling2D(2, dtype="float64")
    layer.forward(x)
    dx = backend.to_numpy(layer.backward(np.ones((1, 1, 1, 1))))
    assert dx[0, :, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_avgpool_same_padding_counts_only_real_pixels(backend):
    x = np.ones((1, 3, 3, 1))
    y = backend.to_numpy(L.AveragePooling2D(2, strides=2, padding="same", dtype="float64").forward(x))
    np.testing.assert_allclose(y, np.ones((1, 2, 2, 1)))


def tf_same(n, s):
    return math.ceil(n / s)


def tf_valid(n, k, s):
    return math.ceil((n - k + 1) / s)


@pytest.mark.parametrize("n", [5, 6, 7, 28])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_output_shapes_follow_keras_rules(n, k, s):
    layer = L.Conv2D(2, k, strides=s, padding="same")
    assert layer.compute_output_shape((n, n + 1, 1))[:2] == (tf_same(n, s), tf_same(n + 1, s))
    layer = L.Conv2D(2, k, strides=s, padding="valid")
    assert layer.compute_output_shape((n, n + 1, 1))[:2] == (tf_valid(n, k, s), tf_valid(n + 1, k, s))
    pool = L.MaxPooling2D(k, strides=s, padding="same")
    assert pool.compute_output_shape((n, n, 3)) == (tf_same(n, s), tf_same(n, s), 3)


def test_same_padding_puts_the_odd_pixel_at_the_end():
    # even kernel, stride 1: one pixel of padding in all, and it goes bottom/right
    (oh, ow), pads = window_geometry(5, 5, (2, 2), (1, 1), "same")
    assert (oh, ow) == (5, 5) and pads == ((0, 1), (0, 1))
    # n=7, k=3, s=2: out 4, total padding (4-1)*2+3-7 = 2 -> one each side
    assert window_geometry(7, 7, (3, 3), (2, 2), "same") == ((4, 4), ((1, 1), (1, 1)))
    # n=6, k=3, s=2: out 3, total (3-1)*2+3-6 = 1 -> (0, 1)
    assert window_geometry(6, 6, (3, 3), (2, 2), "same") == ((3, 3), ((0, 1), (0, 1)))


def test_same_conv_with_even_kernel_matches_explicit_end_padding(numpy_backend, rng):
    x = rng.standard_normal((1, 5, 5, 1))
    W = rng.standard_normal((2, 2, 1, 1))
    same = L.conv2d_naive(x, W, padding="same")
    padded = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    np.testing.assert_allclose(same, L.conv2d_naive(padded, W, padding="valid"))


def test_int_padding_output_shape():
    assert L.Conv2D(1, 3, strides=2, padding=1).compute_output_shape((8, 7, 1)) == (4, 4, 1)


def test_naive_conv_is_cross_correlation():
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    W = np.zeros((3, 3, 1, 1))
    W[0, 0, 0, 0] = 1.0    # picks the top-left pixel of each window, unflipped
    assert L.conv2d_naive(x, W).item() == 0.0
    W[0, 0, 0, 0], W[2, 2, 0, 0] = 0.0, 1.0
    assert L.conv2d_naive(x, W).item() == 8.0


def test_backends_agree_on_a_forward_pass(rng):
    x = rng.standard_normal((2, 9, 9, 3)).astype(np.float32)
    outs = []
    for name in [b for b in cn.available_backends() if b != "cupy"]:
        with cn.use_backend(name) as ops:
            layer = L.Conv2D(4, 3, strides=2, padding="same", activation="relu", seed=7)
            outs.append(ops.to_numpy(layer.forward(x)))
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-5)
