"""The batch-normalization kernel pair of every backend against the NumPy reference."""

import numpy as np
import pytest

import convnet as cn
from convnet.backend.numpy_ops import NumpyOps

REF = NumpyOps()
SHAPES = [(3, 4, 5, 2), (2, 3), (64, 10, 10, 16), (130, 7, 7, 64)]   # below and above the serial cut


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_kernels_match_the_reference(backend, dtype, rtol, shape, training):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 2 + 3).astype(dtype)
    gamma = rng.standard_normal(shape[-1]).astype(dtype)
    beta = rng.standard_normal(shape[-1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    host = backend.to_numpy
    mean, var = backend.batchnorm_statistics(backend.asarray(x))
    ref_mean, ref_var = REF.batchnorm_statistics(x.astype(np.float64))
    np.testing.assert_allclose(host(mean), ref_mean, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(host(var), ref_var, rtol=rtol)
    y, saved, inv_std = backend.batchnorm_normalize(backend.asarray(x), mean, var, backend.asarray(gamma),
                                                    backend.asarray(beta), 1e-3)
    ref_y, ref_xhat, ref_inv_std = REF.batchnorm_normalize(x, host(mean), host(var), gamma, beta, 1e-3)
    for got, want in ((y, ref_y), (inv_std, ref_inv_std)):
        assert got.dtype == dtype
        np.testing.assert_allclose(host(got), want, rtol=rtol, atol=rtol * 10)
    for need_dx in (True, False):
        # each backend's backward from what its own normalize saved (NumbaOps: x and
        # the mean, not xhat)
        got = backend.batchnorm_backward(backend.asarray(dy), saved, inv_std, backend.asarray(gamma),
                                         training, need_dx=need_dx)
        want = REF.batchnorm_backward(dy, ref_xhat, ref_inv_std, gamma, training, need_dx=need_dx)
        if need_dx:
            np.testing.assert_allclose(host(got[0]), want[0], rtol=rtol * 10, atol=rtol * 10)
        else:
            assert got[0] is None
        # the sums run over every row: compare them relative to their scale
        for g, w in zip(got[1:], want[1:]):
            np.testing.assert_allclose(host(g), w, rtol=rtol * 10, atol=rtol * 10 * np.abs(dy).sum(axis=0).max())


def test_batchnorm_statistics_keep_their_digits_far_from_zero(backend):
    # a mean a million times the spread: E[x^2] - E[x]^2 would cancel every digit
    # of float64; the statistics must still match the two-pass reference
    rng = np.random.default_rng(3)
    x = 1e6 + 1e-3 * rng.standard_normal((40, 5, 5, 3))
    mean, var = backend.batchnorm_statistics(backend.asarray(x))
    ref_mean, ref_var = REF.batchnorm_statistics(x)
    np.testing.assert_allclose(backend.to_numpy(mean), ref_mean, rtol=1e-14)
    np.testing.assert_allclose(backend.to_numpy(var), ref_var, rtol=1e-8)


def test_numba_float32_statistics_keep_their_digits_far_from_zero():
    # float32, 16 channels (the numba backend's vector sums, float32 within a block
    # of rows, on 63-row chunks that end in an odd row): a mean ten thousand times
    # the spread still gives the variance of the float32 numbers to float32
    # accuracy (the reference's own float32 sums lose more: 3e-5 here)
    pytest.importorskip("numba")
    from convnet.backend import get_ops
    rng = np.random.default_rng(4)
    x = (1000 + 0.1 * rng.standard_normal((40, 5, 5, 16))).astype(np.float32)
    backend = get_ops("numba")
    mean, var = backend.batchnorm_statistics(backend.asarray(x))
    ref_mean, ref_var = REF.batchnorm_statistics(x.astype(np.float64))
    np.testing.assert_allclose(backend.to_numpy(mean), ref_mean, rtol=1e-6)
    np.testing.assert_allclose(backend.to_numpy(var), ref_var, rtol=1e-5)


def test_batchnorm_layer_gradcheck_and_inference(backend, rng):
    layer = cn.layers.BatchNormalization(dtype="float64")
    x = rng.standard_normal((6, 3, 3, 4))
    assert cn.gradcheck(layer, x).passed
    assert cn.gradcheck(layer, x, training=False).passed
