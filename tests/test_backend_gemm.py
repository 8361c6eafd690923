"""The numba backend's register-blocked float32 products (convnet/backend/numba/gemm.py)
against numpy's product in float64: every tail of the register tiles (the last
M % 12 rows in a padded tile, the last 16-column panel, K % 6 rows of a transposed
product), the dispatch that falls back to numpy, special values, and a float32
convolution whose three products all run on the kernels."""

import numpy as np
import pytest

pytest.importorskip("numba")

from convnet.backend import get_ops  # noqa: E402
from convnet.layers.padding import window_geometry  # noqa: E402

gemm = pytest.importorskip("convnet.backend.numba.gemm")
simd = pytest.importorskip("convnet.backend.numba.simd")

REF = get_ops("numpy")

# (M, K, N): M and K below, at and past the tiles' 6 and 12 rows; N one 16-column panel,
# one 32-column panel, 32 + 16, and several panels; K = 1 (a single step)
SHAPES = [(1, 1, 16), (5, 7, 32), (6, 9, 48), (7, 13, 64), (13, 6, 80), (300, 144, 32), (257, 300, 48),
          (25, 30, 16), (12, 12, 16)]


def _tolerance(k):
    # float32 sums of k products of N(0, 1) numbers: rounding grows like sqrt(k)
    return 2e-6 * np.sqrt(k) * 8


@pytest.mark.parametrize("m, k, n", SHAPES)
def test_kernels_match_the_float64_product(m, k, n):
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    out = np.full((m, n), np.nan, dtype=np.float32)
    gemm.kernel_matmul(a, b, out)       # the kernels themselves, on any CPU
    np.testing.assert_allclose(out, ref, rtol=0, atol=_tolerance(k))

    # c += a^T dy, with a c that already holds numbers (the accumulation is kept),
    # over more than one block of the inner dimension when m > TN_BLOCK
    dy = rng.standard_normal((m, n), dtype=np.float32)
    c = rng.standard_normal((k, n), dtype=np.float32)
    expected = c.astype(np.float64) + a.T.astype(np.float64) @ dy.astype(np.float64)
    gemm.kernel_matmul_tn_add(a, dy, c)
    np.testing.assert_allclose(c, expected, rtol=0, atol=_tolerance(m))


def test_dispatch_takes_a_transposed_a_and_falls_back_to_numpy():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((40, 27), dtype=np.float32)
    w = rng.standard_normal((32, 27), dtype=np.float32)
    dy = rng.standard_normal((40, 32), dtype=np.float32)
    out = np.empty((40, 32), np.float32)
    assert gemm.matmul(a, np.ascontiguousarray(w.T), out) is out
    np.testing.assert_allclose(out, a.astype(np.float64) @ w.T, atol=_tolerance(27))
    # a^T @ dy with a^T a transposed view (a Dense layer's dW)
    out = np.empty((27, 32), np.float32)
    gemm.matmul(a.T, dy, out)
    np.testing.assert_allclose(out, a.T.astype(np.float64) @ dy, atol=_tolerance(40))
    # where no kernel applies (float64, fewer than 12 rows, a strided a or b) the
    # answer is numpy's own, bit for bit
    a64, w64 = a.astype(np.float64), w.astype(np.float64)
    np.testing.assert_array_equal(gemm.matmul(a64, w64.T, np.empty((40, 32))), np.matmul(a64, w64.T))
    few = a[:11]
    np.testing.assert_array_equal(gemm.matmul(few, w.T.copy(), np.empty((11, 32), np.float32)),
                                  np.matmul(few, w.T.copy()))
    strided = a[::2]
    out = np.empty((20, 32), np.float32)
    np.testing.assert_array_equal(gemm.matmul(strided, w.T, out), np.matmul(strided, w.T))
    out = np.empty((40, 32), np.float32)
    np.testing.assert_array_equal(gemm.matmul(a, w.T, out), np.matmul(a, w.T))
    # a column count that is not a multiple of 16 runs on padded copies
    odd = np.empty((40, 24), np.float32)
    np.testing.assert_allclose(gemm.matmul(a, w.T[:, :24].copy(), odd), a.astype(np.float64) @ w.T[:, :24],
                               atol=_tolerance(27))
    odd_t = np.empty((27, 10), np.float32)
    np.testing.assert_allclose(gemm.matmul(a.T, dy[:, :10].copy(), odd_t), a.T.astype(np.float64) @ dy[:, :10],
                               atol=_tolerance(40))
    # the accumulating form falls back to numpy there
    c = np.ones((27, 24), np.float32)
    gemm.matmul_tn_add(a, dy[:, :24].copy(), c)
    np.testing.assert_array_equal(c, np.ones((27, 24), np.float32) + np.matmul(a.T, dy[:, :24]))


def test_equal_columns_of_b_give_bit_equal_columns():
    # every column is summed in the same order, tails and padding included: a
    # 1x1 convolution whose 1000 filters are equal (ONNX's light SqueezeNet) gives
    # 1000 equal logits, even at 1e9, where a softmax turns any rounding
    # difference into a one-hot answer
    if not simd.has_512bit_vectors():
        pytest.skip("this CPU has no 512-bit vectors: numpy's BLAS decides the rounding")
    rng = np.random.default_rng(6)
    a = (rng.random((169, 512), dtype=np.float32) * 1e8).astype(np.float32)
    b = np.full((512, 1000), 0.02, np.float32)
    out = np.empty((169, 1000), np.float32)
    gemm.matmul(a, b, out)
    assert (out == out[:, :1]).all()
    np.testing.assert_allclose(out[:, 0], a.astype(np.float64).sum(1) * 0.02, rtol=1e-5)


def test_special_values_spread_as_in_a_product():
    # a NaN or an infinity in a row of a reaches every column of that row of the
    # result and no other row (IEEE multiply-adds; nothing is skipped for zeros)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((13, 20), dtype=np.float32)
    b = np.abs(rng.standard_normal((20, 48), dtype=np.float32)) + 0.1
    a[2, 5] = np.nan
    a[7, :] = 0.0
    a[7, 3] = np.inf
    a[11, :] = 0.0                       # 0 * finite = 0: the row is exactly zero
    out = np.empty((13, 48), np.float32)
    gemm.kernel_matmul(a, b, out)
    assert np.isnan(out[2]).all()
    assert np.isposinf(out[7]).all()
    assert (out[11] == 0).all()
    others = np.delete(out, [2, 7, 11], axis=0)
    assert np.isfinite(others).all()


@pytest.mark.parametrize("jobs_per_core", [True, False])
@pytest.mark.parametrize("channels, filters", [(16, 96), (16, 48), (5, 64)])
def test_float32_wide_convolution_runs_on_the_kernels(channels, filters, jobs_per_core, monkeypatch):
    # A float32 3x3 convolution wide enough for "gemm-chunks": y = cols @ W2 (N = F),
    # dcols = dy @ W2^T (N = 9C: 144 is 4.5 panels of 32, 45 falls back), dW2 = cols^T dy
    # (small enough that only a split threshold of 0 sends it to the jobs)
    from convnet.backend.numba import workers
    monkeypatch.setattr(workers, "SPLIT_FLOPS", 0)
    ops = type(get_ops("numba"))()
    ops.conv_jobs_per_core = jobs_per_core
    ops.conv_chunk_bytes = 20_000            # several chunks per job
    rng = np.random.default_rng(channels + filters)
    x = rng.standard_normal((5, 9, 8, channels), dtype=np.float32)
    W2 = rng.standard_normal((9 * channels, filters), dtype=np.float32) * 0.2
    b = rng.standard_normal(filters, dtype=np.float32)
    _, pads = window_geometry(9, 8, (3, 3), (1, 1), "same")
    assert ops.conv2d_algorithm(x.shape, W2.shape, (np.float32,)) == "gemm-chunks"
    y, saved = ops.conv2d_forward(x, W2, b, 3, 3, 1, 1, pads)
    ref_y, ref_saved = REF.conv2d_forward(x.astype(np.float64), W2.astype(np.float64), b.astype(np.float64),
                                          3, 3, 1, 1, pads)
    tol = _tolerance(9 * channels)
    np.testing.assert_allclose(y, ref_y, rtol=0, atol=tol)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dx, dW2, db = ops.conv2d_backward(dy, x, saved, W2, 3, 3, 1, 1, pads, need_dx=True)
    ref = REF.conv2d_backward(dy.astype(np.float64), x.astype(np.float64), ref_saved, W2.astype(np.float64),
                              3, 3, 1, 1, pads, need_dx=True)
    np.testing.assert_allclose(dx, ref[0], rtol=0, atol=tol * 3)
    np.testing.assert_allclose(dW2, ref[1], rtol=0, atol=_tolerance(y.shape[0]))
    np.testing.assert_allclose(db, ref[2], rtol=0, atol=_tolerance(y.shape[0]))


def test_the_kernels_are_the_ones_that_run_where_the_cpu_has_512bit_vectors(monkeypatch):
    # on an AVX-512 CPU a float32 product with 32 columns does not reach numpy
    if not simd.has_512bit_vectors():
        pytest.skip("this CPU has no 512-bit vectors: gemm.py falls back to numpy's product")

    def no_numpy(*args, **kwargs):
        raise AssertionError("numpy's product ran")

    monkeypatch.setattr(gemm.np, "matmul", no_numpy)
    a = np.ones((12, 9), np.float32)
    out = np.empty((12, 32), np.float32)
    np.testing.assert_array_equal(gemm.matmul(a, np.ones((9, 32), np.float32), out), np.full((12, 32), 9.0))


@pytest.mark.parametrize("m, k, n, shares", [(1, 4096, 256, 2), (3, 257, 32, 2), (11, 100, 16, 3), (2, 5, 48, 4)])
def test_few_rows_product_matches_the_float64_product(m, k, n, shares):
    # the inner dimension split into contiguous shares (K not a multiple of the
    # share count; more shares than the cores; a share of one or two rows)
    if not simd.fits_narrow(np.zeros(1, np.float32)):
        pytest.skip("this CPU has neither AVX2 with FMA nor AVX-512")
    rng = np.random.default_rng(m + k + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.full((m, n), np.nan, dtype=np.float32)
    assert gemm.matmul_few_rows(a, b, out, shares) is out
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=0, atol=_tolerance(k))


def test_a_batch_one_dense_layer_reads_its_weights_on_every_core(monkeypatch):
    # ops.matmul of one row by a 4 MiB matrix runs matmul_few_rows; a small
    # matrix, or one whose column count is not a multiple of 16, does not
    if not simd.fits_narrow(np.zeros(1, np.float32)):
        pytest.skip("this CPU has neither AVX2 with FMA nor AVX-512")
    from convnet.backend.numba import workers
    if workers.CoreJobs.get() is None:
        pytest.skip("no pool of core jobs here (OpenBLAS's thread count cannot be set): plain np.matmul")
    ran = []
    kernel = gemm.matmul_few_rows
    monkeypatch.setattr(gemm, "matmul_few_rows", lambda *args: (ran.append(args[1].shape), kernel(*args))[1])
    NB = get_ops("numba")
    rng = np.random.default_rng(3)
    for shape in ((4096, 256), (1024, 256), (4096, 250)):
        x = rng.standard_normal((1, shape[0]), dtype=np.float32)
        W = rng.standard_normal(shape, dtype=np.float32)
        np.testing.assert_allclose(NB.matmul(x, W), x.astype(np.float64) @ W, rtol=0, atol=_tolerance(shape[0]))
    assert ran == [(4096, 256)]
