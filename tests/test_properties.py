"""Property-based tests: random layer configurations (input sizes, channels, kernel
sizes, strides, paddings, pool settings, batch sizes). For every drawn configuration:

  * the output shape follows Keras' formula, written out here independently of
    convnet/layers/padding.py (and a window that does not fit is a ValueError);
  * the numpy layer equals a naive loop written here from the definition;
  * every available CPU backend (numpy, numba) gives the numpy backend's output,
    input gradient and parameter gradients;
  * a float64 central-difference gradient check (convnet.gradcheck) passes on
    every backend.

Example counts come from tests/hypothesis_profiles.py (CONVNET_HYPOTHESIS_PROFILE=slow
for a long search).
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis_profiles import profile

import convnet as cn
from convnet import layers as L

BACKENDS = [name for name in cn.available_backends() if name != "cupy"]
F32 = dict(rtol=2e-5, atol=2e-5)   # float32 sums taken in another order


# ---------------------------------------------------------------- Keras' formulas
def keras_output_length(n, k, s, padding):
    """keras.utils.conv_utils.conv_output_length (dilation 1); an int p pads both sides
    (ZeroPadding2D(p) followed by "valid")."""
    if padding == "same":
        length = n
    elif padding == "valid":
        length = n - k + 1
    else:
        length = n + 2 * padding - k + 1
    return (length + s - 1) // s


def tf_pads(n, k, s, padding):
    """(before, after) padding: TensorFlow's "same" puts the odd pixel at the end."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = max((-(-n // s) - 1) * s + k - n, 0)
        return total // 2, total - total // 2
    return padding, padding


def _padded(x, kernel, strides, padding, value):
    (kh, kw), (sh, sw) = kernel, strides
    (t, b), (lf, r) = tf_pads(x.shape[1], kh, sh, padding), tf_pads(x.shape[2], kw, sw, padding)
    return np.pad(x, ((0, 0), (t, b), (lf, r), (0, 0)), constant_values=value)


def _windows(x, kernel, strides, padding, value):
    """Yield (i, j, window (N, kh, kw, C)) over the output grid."""
    xp = _padded(x, kernel, strides, padding, value)
    oh = keras_output_length(x.shape[1], kernel[0], strides[0], padding)
    ow = keras_output_length(x.shape[2], kernel[1], strides[1], padding)
    for i in range(oh):
        for j in range(ow):
            r, c = i * strides[0], j * strides[1]
            yield i, j, xp[:, r:r + kernel[0], c:c + kernel[1], :]


def naive_conv(x, W, b, strides, padding):
    kh, kw, _, f = W.shape
    oh = keras_output_length(x.shape[1], kh, strides[0], padding)
    ow = keras_output_length(x.shape[2], kw, strides[1], padding)
    y = np.zeros((x.shape[0], oh, ow, f))
    for i, j, win in _windows(x, (kh, kw), strides, padding, 0.0):
        y[:, i, j, :] = np.einsum("nhwc,hwcf->nf", win, W) + (0 if b is None else b)
    return y


def naive_pool(x, pool, strides, padding, kind):
    oh = keras_output_length(x.shape[1], pool[0], strides[0], padding)
    ow = keras_output_length(x.shape[2], pool[1], strides[1], padding)
    y = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    if kind == "max":
        for i, j, win in _windows(x, pool, strides, padding, -np.inf):
            y[:, i, j, :] = win.max(axis=(1, 2))
    else:  # the mean over the real (unpadded) pixels of each window, as Keras
        ones = np.ones_like(x)
        sums = _windows(x, pool, strides, padding, 0.0)
        counts = _windows(ones, pool, strides, padding, 0.0)
        for (i, j, win), (_, _, cnt) in zip(sums, counts):
            y[:, i, j, :] = win.sum(axis=(1, 2)) / cnt.sum(axis=(1, 2))
    return y


# ------------------------------------------------------------------- strategies
paddings = st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 2))
pairs = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))


def as_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@st.composite
def image_batches(draw, max_hw=9, max_c=3):
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw)),
             draw(st.integers(1, max_c)))
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------------- helpers
def run_layer(make, x, backend, dy_seed=7):
    """Forward (training) and backward of a fresh float32 layer on `backend`:
    host copies of (y, dx, params, grads)."""
    with cn.use_backend(backend) as ops:
        layer = make()
        y = layer.forward(x.astype(np.float32), training=True)
        dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(np.float32)
        dx = layer.backward(dy)
        host = ops.to_numpy
        return (host(y), host(dx), {k: host(v) for k, v in layer.params.items()},
                {k: host(v) for k, v in layer.grads.items()})


def assert_backends_agree(make, x):
    """Every backend's y, dx and grads equal the numpy backend's (same seed: same weights)."""
    ref = run_layer(make, x, "numpy")
    for backend in BACKENDS[1:]:
        got = run_layer(make, x, backend)
        for name, a, b in (("y", ref[0], got[0]), ("dx", ref[1], got[1])):
            np.testing.assert_allclose(b, a, **F32, err_msg=f"{backend}: {name}")
        for key in ref[2]:
            np.testing.assert_array_equal(got[2][key], ref[2][key], err_msg=f"{backend}: param {key}")
            np.testing.assert_allclose(got[3][key], ref[3][key], **F32, err_msg=f"{backend}: grad {key}")
    return ref


def assert_gradcheck(make, x, max_checks=15):
    for backend in BACKENDS:
        with cn.use_backend(backend):
            report = cn.gradcheck(make(), x, max_checks=max_checks)
        assert report.passed, f"{backend}:\n{report}"


# ----------------------------------------------------------------------- Conv2D
@profile()
@given(x=image_batches(), filters=st.integers(1, 3), kernel=pairs, strides=pairs, padding=paddings,
       use_bias=st.booleans())
def test_conv2d_random_configurations(x, filters, kernel, strides, padding, use_bias):
    (kh, kw), (sh, sw) = as_pair(kernel), as_pair(strides)
    n, h, w, _ = x.shape
    oh, ow = keras_output_length(h, kh, sh, padding), keras_output_length(w, kw, sw, padding)

    def make(dtype=None):
        return L.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=use_bias,
                        dtype=dtype, seed=3)

    if oh < 1 or ow < 1:
        for backend in BACKENDS:
            with cn.use_backend(backend), pytest.raises(ValueError, match="larger than the padded input"):
                make().forward(x)
        return
    y, _, params, _ = assert_backends_agree(make, x)
    assert y.shape == (n, oh, ow, filters)
    with cn.use_backend("numpy"):
        layer = make("float64")
        y64 = layer.forward(x)
        np.testing.assert_allclose(y64, naive_conv(x, layer.params["W"], layer.params.get("b"),
                                                   (sh, sw), padding), rtol=1e-10, atol=1e-12)
    assert_gradcheck(lambda: make("float64"), x)


@profile(0.5)
@given(batch=st.integers(1, 4), hw=st.tuples(st.integers(3, 10), st.integers(3, 10)),
       channels=st.integers(4, 6), filters=st.integers(17, 20), kernel=st.integers(3, 4),
       strides=pairs, padding=paddings, seed=st.integers(0, 2**16))
def test_conv2d_wide_configurations(batch, hw, channels, filters, kernel, strides, padding, seed):
    """Convolutions with more than 16 filters and a window of more than 32 taps take
    NumbaOps' chunked im2col + GEMM path instead of the direct small-conv kernels."""
    x = np.random.default_rng(seed).standard_normal((batch, *hw, channels))
    (sh, sw) = as_pair(strides)
    oh = keras_output_length(hw[0], kernel, sh, padding)
    ow = keras_output_length(hw[1], kernel, sw, padding)
    assume(oh >= 1 and ow >= 1)

    def make(dtype=None):
        return L.Conv2D(filters, kernel, strides=strides, padding=padding, dtype=dtype, seed=4)

    y, _, _, _ = assert_backends_agree(make, x)
    assert y.shape == (batch, oh, ow, filters)
    assert_gradcheck(lambda: make("float64"), x, max_checks=12)


@profile(0.25)
@given(batch=st.integers(1, 4), hw=st.tuples(st.integers(56, 70), st.integers(56, 70)),
       channels=st.integers(3, 5), pool=st.integers(2, 3), padding=st.sampled_from(["valid", "same"]),
       seed=st.integers(0, 2**16))
def test_large_maps_take_the_parallel_kernels(batch, hw, channels, pool, padding, seed):
    """Around and above 64K elements NumbaOps runs relu and max pooling in parallel:
    the same numbers as numpy's (no gradient check at this size)."""
    x = np.random.default_rng(seed).standard_normal((batch, *hw, channels))
    assert_backends_agree(lambda: L.MaxPooling2D(pool, padding=padding), x)
    assert_backends_agree(lambda: L.ReLU(), x)


# ---------------------------------------------------------------------- pooling
@profile()
@given(x=image_batches(), pool=pairs, strides=st.one_of(st.none(), pairs), padding=paddings,
       kind=st.sampled_from(["max", "avg"]))
def test_pooling_random_configurations(x, pool, strides, padding, kind):
    ph, pw = as_pair(pool)
    sh, sw = (ph, pw) if strides is None else as_pair(strides)
    cls = L.MaxPooling2D if kind == "max" else L.AveragePooling2D

    def make(dtype=None):
        return cls(pool, strides=strides, padding=padding, dtype=dtype)

    if isinstance(padding, int) and padding >= min(ph, pw):
        with pytest.raises(ValueError, match="int padding must be smaller than pool_size"):
            make()
        return
    n, h, w, c = x.shape
    oh, ow = keras_output_length(h, ph, sh, padding), keras_output_length(w, pw, sw, padding)
    if oh < 1 or ow < 1:
        for backend in BACKENDS:
            with cn.use_backend(backend), pytest.raises(ValueError, match="larger than the padded input"):
                make().forward(x)
        return
    # distinct values a step of 1/7 apart: no window has two maxima the
    # finite-difference step could swap
    x = np.random.default_rng(int(abs(x.flat[0]) * 1e6)).permutation(x.size).reshape(x.shape) / 7.0
    y, _, _, _ = assert_backends_agree(make, x)
    assert y.shape == (n, oh, ow, c)
    with cn.use_backend("numpy"):
        np.testing.assert_allclose(make("float64").forward(x), naive_pool(x, (ph, pw), (sh, sw), padding, kind),
                                   rtol=1e-12)
    assert_gradcheck(lambda: make("float64"), x, max_checks=25)


@profile()
@given(x=image_batches())
def test_global_average_pooling_and_flatten(x):
    n, h, w, c = x.shape
    y, dx, _, _ = assert_backends_agree(L.GlobalAveragePooling2D, x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), **F32)
    assert_gradcheck(lambda: L.GlobalAveragePooling2D(dtype="float64"), x)
    y, dx, _, _ = assert_backends_agree(L.Flatten, x)
    assert y.shape == (n, h * w * c)
    np.testing.assert_array_equal(y, x.astype(np.float32).reshape(n, -1))   # (H, W, C) order


# ------------------------------------------------------------------------ Dense
@profile()
@given(batch=st.integers(1, 5), features=st.integers(1, 8), units=st.integers(1, 5),
       activation=st.sampled_from([None, "relu", "sigmoid", "tanh", "softmax"]),
       use_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_dense_random_configurations(batch, features, units, activation, use_bias, seed):
    x = np.random.default_rng(seed).standard_normal((batch, features))

    def make(dtype=None):
        return L.Dense(units, activation=activation, use_bias=use_bias, dtype=dtype, seed=5)

    y, _, params, _ = assert_backends_agree(make, x)
    assert y.shape == (batch, units)
    assert params["W"].shape == (features, units)
    assert_gradcheck(lambda: make("float64"), x)


# ------------------------------------------------------------ BatchNormalization
@profile()
@given(x=st.one_of(image_batches(max_hw=4), st.builds(
           lambda n, f, s: np.random.default_rng(s).standard_normal((n, f)) * 3 + 1,
           st.integers(2, 6), st.integers(1, 5), st.integers(0, 2**16))),
       training=st.booleans(), momentum=st.floats(0, 1), epsilon=st.floats(1e-5, 1e-1))
def test_batchnorm_random_configurations(x, training, momentum, epsilon):
    # With m values per channel, training normalizes them to mean 0 and variance ~1.
    # For m = 1 the output is beta whatever x is; for m = 2 it is beta -/+ gamma, so
    # d(out)/dx is of the order of epsilon and drowns in finite-difference noise
    # (seen: 3e-6 relative error on a 1e-5 gradient). From m = 3 on x matters.
    assume(not training or x.size // x.shape[-1] >= 3)

    def make(dtype=None):
        layer = L.BatchNormalization(momentum=momentum, epsilon=epsilon, dtype=dtype)
        layer.build(x.shape[1:])
        c = x.shape[-1]
        layer.params["gamma"][...] = np.linspace(0.5, 2, c)
        layer.params["beta"][...] = np.linspace(-1, 1, c)
        layer.state["moving_variance"][...] = np.linspace(0.5, 1.5, c)
        return layer

    def run(backend):
        with cn.use_backend(backend) as ops:
            layer = make()
            y = layer.forward(x.astype(np.float32), training=training)
            dx = layer.backward(np.ones_like(y) * np.linspace(-1, 1, y.size).reshape(y.shape))
            return (ops.to_numpy(y), ops.to_numpy(dx),
                    {k: ops.to_numpy(v) for k, v in layer.state.items()})

    ref = run("numpy")
    assert ref[0].shape == x.shape
    for backend in BACKENDS[1:]:
        got = run(backend)
        for a, b in zip(ref[:2], got[:2]):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
        for key in ref[2]:
            np.testing.assert_allclose(got[2][key], ref[2][key], rtol=1e-5, atol=1e-6)
    for backend in BACKENDS:
        with cn.use_backend(backend):
            # tolerance 1e-5, not 1e-6: with few values per channel the input gradient
            # is small (1e-4) and the central difference's round-off (~1e-16 |f| / h =
            # 1e-10) is already 1e-6 of it; a wrong backward pass gives 1e-2 or more
            report = cn.gradcheck(make("float64"), x, training=training, max_checks=15, tolerance=1e-5)
        assert report.passed, f"{backend}:\n{report}"


# ------------------------------------------------------------------ activations
@profile(2)
@given(activation=st.sampled_from(["relu", "sigmoid", "tanh", "softmax", "linear"]),
       batch=st.integers(1, 4), features=st.integers(1, 6), scale=st.floats(0.1, 30),
       seed=st.integers(0, 2**16))
def test_activation_layers(activation, batch, features, scale, seed):
    x = np.random.default_rng(seed).standard_normal((batch, features)) * scale
    y, _, _, _ = assert_backends_agree(lambda: L.Activation(activation), x)
    assert np.all(np.isfinite(y))            # large logits do not overflow
    if activation == "softmax":
        np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-5)
    # the gradient check at unit scale: a saturated sigmoid/softmax has a gradient
    # of 1e-6 or less, below what a central difference resolves (round-off ~1e-11)
    assert_gradcheck(lambda: L.Activation(activation, dtype="float64"), x / scale)
