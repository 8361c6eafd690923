"""NumbaOps against the NumpyOps reference: every overridden kernel computes the
same function (float32 and float64) over the shape grid of the core tests, and
every layer passes the float64 gradient check on the numba backend.

Shapes are small on purpose: the kernels are compiled once per dtype (and cached
on disk), so the whole module stays fast.
"""

import itertools
import os

import numpy as np
import pytest

pytest.importorskip("numba")

import convnet as cn  # noqa: E402
from convnet import layers as L  # noqa: E402
from convnet.backend import get_ops  # noqa: E402
from convnet.layers.padding import window_geometry  # noqa: E402

REF = get_ops("numpy")
NB = get_ops("numba")
DTYPES = [np.float32, np.float64]

SHAPES = [(1, 7, 7, 1), (2, 6, 8, 3), (2, 9, 6, 2), (3, 8, 8, 4), (2, 6, 5, 8)]
# (kernel, stride, padding, shape): kernel 1/2/3/5, stride 1/2/3, valid/same/int,
# odd and even sizes, batch 1 and > 1, one and several channels
GRID = [
    (k, s, p, shape)
    for (k, s, p), shape in zip(itertools.product([1, 2, 3, 5], [1, 2, 3], ["valid", "same", 1, 2]),
                                itertools.cycle(SHAPES))
    if not (p == "valid" and k > min(shape[1:3]))
]
POOL_GRID = [(k, s, p, shape) for (k, s, p, shape) in GRID
             if not (isinstance(p, int) and p >= k)]   # pooling: int padding < pool size


def _pads(shape, k, s, p):
    (oh, ow), pads = window_geometry(shape[1], shape[2], (k, k), (s, s), p)
    return oh, ow, pads


def _data(rng, shape, dtype, ties=False):
    x = rng.standard_normal(shape)
    if ties:
        x = np.round(x)            # many equal values: the first maximum must win
    return x.astype(dtype)


def _conv_case(rng, dtype, kernel, strides, padding, shape, f):
    """(msg, pads, x, W2, b) of one convolution case: random x (shape), kernel
    matrix W2 (kh*kw*C, f) and bias b (f,), drawn in that order."""
    (kh, kw), (sh, sw) = kernel, strides
    msg = f"conv {kh}x{kw} stride {sh}x{sw} {padding} {shape} f={f}"
    _, pads = window_geometry(shape[1], shape[2], kernel, strides, padding)
    x = _data(rng, shape, dtype)
    W2 = _data(rng, (kh * kw * shape[3], f), dtype)
    b = _data(rng, (f,), dtype)
    return msg, pads, x, W2, b


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_col2im_match_reference(dtype):
    rng = np.random.default_rng(0)
    for k, s, p, shape in GRID:
        x = _data(rng, shape, dtype)
        _, _, pads = _pads(shape, k, s, p)
        cols = NB.im2col(x, k, k, s, s, pads)
        ref_cols = REF.im2col(x, k, k, s, s, pads)
        assert cols.dtype == dtype
        np.testing.assert_array_equal(cols, ref_cols, err_msg=f"im2col k={k} s={s} p={p} {shape}")
        c = _data(rng, cols.shape, dtype)
        dx = NB.col2im(c, shape, k, k, s, s, pads)
        assert dx.dtype == dtype and dx.shape == shape
        np.testing.assert_array_equal(dx, REF.col2im(c, shape, k, k, s, s, pads),
                                      err_msg=f"col2im k={k} s={s} p={p} {shape}")
        # the adjoint identity <im2col(x), c> == <x, col2im(c)>
        lhs = float(np.sum(cols.astype(np.float64) * c))
        rhs = float(np.sum(x.astype(np.float64) * dx))
        assert lhs == pytest.approx(rhs, rel=1e-4 if dtype == np.float32 else 1e-12, abs=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_noncontiguous_and_rectangular(dtype):
    rng = np.random.default_rng(1)
    x = _data(rng, (2, 9, 7, 6), dtype)[:, ::-1, :, ::2]      # a strided view
    (oh, ow), pads = window_geometry(9, 7, (2, 3), (2, 1), "same")
    np.testing.assert_array_equal(NB.im2col(x, 2, 3, 2, 1, pads), REF.im2col(x, 2, 3, 2, 1, pads))
    c = _data(rng, (2 * oh * ow, 2 * 3 * 3), dtype)
    np.testing.assert_array_equal(NB.col2im(c, x.shape, 2, 3, 2, 1, pads),
                                  REF.col2im(c, x.shape, 2, 3, 2, 1, pads))


@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_convolution_matches_reference(dtype, kernel_size_mode):
    # conv2d_forward/backward: the chunked GEMM path (many filters, long windows)
    # and the direct small-convolution path (few filters or a short window)
    rng = np.random.default_rng(11)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for (k, s, p, shape), f in zip(GRID, itertools.cycle([3, 20, 1, 17])):
        x = _data(rng, shape, dtype)
        _, _, pads = _pads(shape, k, s, p)
        W2 = _data(rng, (k * k * shape[3], f), dtype)
        b = _data(rng, (f,), dtype)
        y, saved = NB.conv2d_forward(x, W2, b, k, k, s, s, pads)
        ref_y, ref_saved = REF.conv2d_forward(x, W2, b, k, k, s, s, pads)
        msg = f"conv k={k} s={s} p={p} {shape} f={f}"
        assert y.dtype == dtype
        np.testing.assert_allclose(y, ref_y, err_msg=msg, **tol)
        y_inf, _ = NB.conv2d_forward(x, W2, b, k, k, s, s, pads, training=False)
        np.testing.assert_allclose(y_inf, ref_y, err_msg=msg, **tol)
        dy = _data(rng, y.shape, dtype)
        for need_dx, keep in ((True, True), (False, True), (True, False)):
            got = NB.conv2d_backward(dy, x, saved if keep else None, W2, k, k, s, s, pads,
                                     need_dx=need_dx)
            ref = REF.conv2d_backward(dy, x, ref_saved, W2, k, k, s, s, pads, need_dx=need_dx)
            for name, a, r in zip(("dx", "dW2", "db"), got, ref):
                if r is None:
                    assert a is None, msg
                    continue
                assert a.dtype == dtype, (name, msg)
                np.testing.assert_allclose(a, r, err_msg=f"{name} {msg}", **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_convolution_rectangular_windows_and_filter_counts(dtype):
    # the phase-split kernels with kh != kw, sh != sw, a stride larger than the
    # kernel (unused phases), K not a multiple of 3 and F not a multiple of 2 or 4
    # (the remainder loops; with an even F, groups of nine taps and then 1, 3 or 5
    # taps left over), on images too narrow for one block of rows
    rng = np.random.default_rng(13)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    cases = [((3, 2), (2, 1), "same", (2, 9, 7, 3), 5), ((2, 3), (3, 2), "valid", (1, 8, 11, 2), 1),
             ((1, 3), (1, 3), 1, (2, 5, 13, 1), 7), ((5, 1), (1, 1), "same", (3, 6, 4, 2), 16),
             ((2, 2), (3, 3), "same", (1, 10, 10, 3), 2), ((3, 3), (2, 2), "valid", (2, 17, 15, 4), 8),
             ((1, 7), (1, 1), "same", (2, 5, 9, 2), 4)]
    for (kh, kw), (sh, sw), padding, shape, f in cases:
        msg, pads, x, W2, b = _conv_case(rng, dtype, (kh, kw), (sh, sw), padding, shape, f)
        y, saved = NB.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
        ref_y, ref_saved = REF.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
        np.testing.assert_allclose(y, ref_y, err_msg=msg, **tol)
        dy = _data(rng, y.shape, dtype)
        for keep in (True, False):
            got = NB.conv2d_backward(dy, x, saved if keep else None, W2, kh, kw, sh, sw, pads)
            ref = REF.conv2d_backward(dy, x, ref_saved, W2, kh, kw, sh, sw, pads)
            for name, a, r in zip(("dx", "dW2", "db"), got, ref):
                np.testing.assert_allclose(a, r, err_msg=f"{name} {msg}", **tol)


@pytest.mark.parametrize("filters", [16, 32, 64])
def test_register_tiles_match_reference(filters, kernel_size_mode):
    # float32 phases convolutions in phases_tiles.py's register tiles (16 filters:
    # tiles of 12 positions; a multiple of 32: 6 positions x 32 filters), on images
    # whose flat position count is below one tile, and is and is not a multiple of
    # the tile (the partial last tile), strides 1 and 2, 16 input channels (W5's
    # first stage, whose dx is the same kernel on dy; 32 channels, whose dx is the
    # 32-filter tile), bias and fused ReLU. At stride 1 the tiles read the padded
    # pixels (phases.pixel_layout), kept for dW2 with 16 or 32 filters; a kept split that
    # was not (None) is split again.
    from convnet.backend.numba import phases, simd
    rng = np.random.default_rng(22)
    cases = [((3, 3), (1, 1), "same", (3, 8, 8, 16)), ((3, 3), (2, 2), "valid", (2, 11, 9, 3)),
             ((1, 1), (1, 1), "valid", (1, 3, 4, 5)), ((5, 3), (1, 2), "same", (2, 7, 13, 2)),
             ((1, 1), (1, 1), "valid", (2, 1, 5, 3)), ((3, 3), (1, 1), "valid", (2, 3, 4, 2)),
             ((3, 3), (1, 1), "same", (1, 32, 32, 16)), ((2, 3), (1, 1), "same", (2, 5, 6, 32))]
    # the filter counts whose every kernel is a tile (the narrow tiles: multiples of 16)
    tile_filters = (16, 32) if simd.has_512bit_vectors() else (16, 32, 64) if simd.has_256bit_fma() else ()
    for (kh, kw), (sh, sw), padding, shape in cases:
        msg, pads, x, W2, b = _conv_case(rng, np.float32, (kh, kw), (sh, sw), padding, shape, filters)
        if NB.conv2d_algorithm(x.shape, W2.shape) != "phases":
            continue                    # a wide convolution (gemm-chunks)
        pixels = phases.pixel_layout(np.float32, filters, sh, sw, kept=True)
        assert pixels == (sh == sw == 1 and filters in tile_filters), msg
        for relu in (False, True):
            y, saved = NB.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads, relu=relu)
            assert saved.ndim == (4 if pixels else 3), msg
            ref_y, ref_saved = REF.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
            if relu:
                ref_y = REF.relu(ref_y)
            np.testing.assert_allclose(y, ref_y, rtol=1e-4, atol=1e-4, err_msg=msg)
        dy = _data(rng, y.shape, np.float32)
        ref = REF.conv2d_backward(dy, x, ref_saved, W2, kh, kw, sh, sw, pads)
        for kept in (saved, None):
            got = NB.conv2d_backward(dy, x, kept, W2, kh, kw, sh, sw, pads)
            for name, a, r in zip(("dx", "dW2", "db"), got, ref):
                np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4, err_msg=f"{name} {msg}")


def test_narrow_tiles_match_reference(monkeypatch):
    # the narrow tiles (6 positions or taps x 16 filters, for CPUs whose vectors are
    # 256 bits: phases_tiles.narrow), forced on whatever this CPU is: 16 filters on
    # both layouts (stride 1 on padded pixels, stride 2 on phase planes), flat
    # position counts and tap counts K that are and are not multiples of 6 (the
    # partial last tiles), multiples of 16 in groups of 16 (48 filters; 32 filters
    # run the "tiles" algorithm, whose dx is the forward tile with 32 filters and
    # whose dW2 is the weight-gradient tile on the split its forward kept), with the ReLU
    from convnet.backend.numba import conv, phases_tiles
    monkeypatch.setattr(phases_tiles, "narrow", lambda: True)
    conv.choose.cache_clear()
    ran = []
    for name in ("_forward_narrow", "_forward_narrow_serial", "_weight_grad_narrow", "_weight_grad_narrow_serial"):
        kernel = getattr(phases_tiles, name)
        monkeypatch.setattr(phases_tiles, name, lambda *a, kernel=kernel, name=name: (ran.append(name), kernel(*a)))
    rng = np.random.default_rng(25)
    cases = [((3, 3), (1, 1), "same", (3, 7, 9, 16), 16), ((3, 3), (1, 1), "valid", (2, 5, 4, 1), 16),
             ((2, 3), (1, 1), "same", (2, 5, 6, 3), 16), ((3, 3), (2, 2), "valid", (2, 11, 9, 3), 16),
             ((3, 3), (1, 1), "same", (2, 6, 5, 3), 48), ((3, 3), (1, 1), "same", (2, 6, 7, 16), 32)]
    try:
        for kernel, strides, padding, shape, f in cases:
            msg, pads, x, W2, b = _conv_case(rng, np.float32, kernel, strides, padding, shape, f)
            (kh, kw), (sh, sw) = kernel, strides
            ran.clear()
            y, saved = NB.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads, relu=True)
            ref_y, ref_saved = REF.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
            np.testing.assert_allclose(y, REF.relu(ref_y), rtol=1e-4, atol=1e-4, err_msg=msg)
            dy = _data(rng, y.shape, np.float32)
            got = NB.conv2d_backward(dy, x, saved, W2, kh, kw, sh, sw, pads, relu_output=y)
            ref = REF.conv2d_backward(REF.relu_backward(dy, y), x, ref_saved, W2, kh, kw, sh, sw, pads)
            for name, a, r in zip(("dx", "dW2", "db"), got, ref):
                np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4, err_msg=f"{name} {msg}")
            assert any(name.startswith("_forward_narrow") for name in ran), msg
            assert any(name.startswith("_weight_grad_narrow") for name in ran), msg
    finally:
        conv.choose.cache_clear()


def test_pixel_rows_match_reference(kernel_size_mode):
    # "pixel-rows" (at most 8 float32 filters, any stride): 1 to 8 filters (fewer
    # than 8 store lane by lane, and their dy is gathered lane by lane), rows of
    # more and fewer than TILE output pixels (the moved-back last tile, and a
    # tile whose pixels past the row repeat its last one), tap counts that are and
    # are not multiples of TAP_GROUP (27, 25, 6, 45, 4), strides 1, 2 and 3, unequal
    # strides and windows, padding (a zero-padded copy is kept for dW2) and none
    # (x itself: nothing kept), with and without the ReLU, dW2 from the kept copy
    # and from x again; dx from pixel_rows.input_grad where the phases' dx does not
    # apply (strides above 1, or fewer than 4 channels), into x's own array (8
    # channels, no padding) or a padded one cut to x's shape
    from convnet.backend.numba import pixel_rows
    if not pixel_rows.applies(8, (np.float32,)):
        pytest.skip("this CPU has neither AVX2 with FMA nor AVX-512")
    assert pixel_rows.TILE == 8 and pixel_rows.TAP_GROUP == 9
    rng = np.random.default_rng(29)
    cases = [((3, 3), (2, 2), "valid", (3, 21, 19, 3), 8, False),
             ((5, 5), (3, 3), "valid", (2, 29, 30, 1), 5, False),
             ((3, 3), (1, 1), "valid", (2, 8, 12, 5), 3, False),
             ((2, 3), (3, 2), "same", (1, 8, 11, 1), 1, True),
             ((3, 3), (1, 1), "same", (2, 5, 4, 2), 8, True),
             ((2, 2), (1, 1), 1, (2, 6, 6, 1), 7, True),
             ((3, 3), (2, 2), "same", (1, 19, 20, 8), 6, True),
             ((3, 3), (2, 2), "valid", (2, 15, 17, 8), 4, False)]
    for kernel, strides, padding, shape, f, padded in cases:
        msg, pads, x, W2, b = _conv_case(rng, np.float32, kernel, strides, padding, shape, f)
        (kh, kw), (sh, sw) = kernel, strides
        assert NB.conv2d_algorithm(shape, W2.shape, (np.float32,), strides) == "pixel-rows", msg
        ref_z, ref_saved = REF.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
        for relu in (False, True):
            y, saved = NB.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads, relu=relu)
            np.testing.assert_allclose(y, REF.relu(ref_z) if relu else ref_z, rtol=1e-4, atol=1e-4, err_msg=msg)
            assert (saved is not None) == padded, msg
            y_inf, nothing = NB.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads, training=False, relu=relu)
            assert nothing is None and np.array_equal(y_inf, y), msg
            dy = _data(rng, y.shape, np.float32)
            ref = REF.conv2d_backward(REF.relu_backward(dy, y) if relu else dy, x, ref_saved, W2, kh, kw, sh, sw,
                                      pads)
            # without dx (a first layer) the kernel masks dy by the ReLU as it reads it
            for keep, need_dx in ((True, True), (False, True), (True, False)):
                got = NB.conv2d_backward(dy, x, saved if keep else None, W2, kh, kw, sh, sw, pads,
                                         need_dx=need_dx, relu_output=y if relu else None)
                for name, a, r in zip(("dx", "dW2", "db"), got, ref):
                    if not need_dx and name == "dx":
                        assert a is None, msg
                        continue
                    assert a.dtype == np.float32, (name, msg)
                    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4,
                                               err_msg=f"{name} {msg} relu={relu} keep={keep}")


def test_padded_pixels_hold_the_phase_planes_numbers():
    # stride 1: the two layouts of the split hold the same numbers, pixels-major
    # (N, hq, wq, C) against planes-major (N, C, hq*wq), borders and spare row included
    from convnet.backend.numba import phases
    rng = np.random.default_rng(23)
    for (kh, kw), (pt, pb), (pl, pr), shape in [((3, 3), (1, 1), (1, 1), (2, 5, 7, 3)),
                                                ((2, 3), (0, 1), (1, 1), (1, 4, 3, 2)),
                                                ((3, 1), (0, 0), (0, 0), (3, 6, 2, 5))]:
        x = _data(rng, shape, np.float32)
        oh, ow = shape[1] + pt + pb - kh + 1, shape[2] + pl + pr - kw + 1
        xp = phases.pad_pixels(x, kh, kw, pt, pl, oh, ow)
        xq = phases.phase_split(x, kh, kw, 1, 1, pt, pl, oh, ow)
        assert xp.shape == phases.split_shape(shape[0], shape[3], kh, kw, 1, 1, oh, ow, True)
        np.testing.assert_array_equal(xp.transpose(0, 3, 1, 2).reshape(xq.shape), xq)
        inside = xp[:, pt:pt + shape[1], pl:pl + shape[2]]
        np.testing.assert_array_equal(inside, x)
        assert np.count_nonzero(xp) == np.count_nonzero(x)


def test_small_convolution_blocks_share_a_small_batch_among_the_threads(kernel_size_mode):
    # one image of 32 output rows: the parallel forward cuts it into blocks of fewer
    # rows than BLOCK_POSITIONS allows, so that every thread gets two; the sums
    # must not depend on where the blocks end
    from convnet.backend.numba import phases, threads
    rng = np.random.default_rng(21)
    x = _data(rng, (1, 32, 32, 6), np.float64)
    W2 = _data(rng, (9 * 6, 16), np.float64)
    b = _data(rng, (16,), np.float64)
    pads = ((1, 1), (1, 1))
    wq = 34
    if kernel_size_mode == "parallel":
        assert phases.rows_per_block(wq, 1, 32) == min(512 // wq, -(-32 // (2 * threads.num_threads())))
    y, _ = NB.conv2d_forward(x, W2, b, 3, 3, 1, 1, pads, training=False)
    ref_y, _ = REF.conv2d_forward(x, W2, b, 3, 3, 1, 1, pads)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_convolution_input_gradient_as_a_convolution(dtype):
    # stride 1 and >= 4 input channels: dx is the correlation of dy with the
    # flipped, channel-swapped kernel (conv.phases_input_grad), with square and
    # rectangular windows, uneven "same" padding (a 2x2 window pads one side),
    # padding as wide as the window allows, and, past that, the col2im path; dx is
    # the same whether the forward and dW2 ran on phases or on pixel rows
    from convnet.backend.numba import conv, pixel_rows
    rng = np.random.default_rng(17)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    cases = [((3, 3), "same", (2, 9, 7, 5), 3, True), ((2, 2), "same", (1, 6, 7, 4), 5, True),
             ((3, 2), "valid", (2, 8, 6, 6), 2, True), ((5, 5), 4, (1, 6, 6, 4), 1, True),
             ((1, 1), "valid", (2, 5, 5, 8), 16, True), ((3, 3), 3, (1, 5, 5, 4), 2, False),
             ((3, 3), "same", (2, 6, 6, 3), 4, False)]
    for (kh, kw), padding, shape, f, applies in cases:
        msg = f"conv {kh}x{kw} {padding} {shape} f={f}"
        (oh, ow), pads = window_geometry(shape[1], shape[2], (kh, kw), (1, 1), padding)
        expected = "pixel-rows" if pixel_rows.applies(f, (dtype,)) else "phases"
        assert NB.conv2d_algorithm(shape, (kh * kw * shape[3], f), (dtype,)) == expected, msg
        assert conv.phases_input_grad_applies(shape, kh, kw, 1, 1, pads[0][0], pads[1][0]) == applies, msg
        x = _data(rng, shape, dtype)
        W2 = _data(rng, (kh * kw * shape[3], f), dtype)
        y, saved = NB.conv2d_forward(x, W2, None, kh, kw, 1, 1, pads)
        _, ref_saved = REF.conv2d_forward(x, W2, None, kh, kw, 1, 1, pads)
        dy = _data(rng, y.shape, dtype)
        dx, dW2, _ = NB.conv2d_backward(dy, x, saved, W2, kh, kw, 1, 1, pads)
        ref_dx, ref_dW2, _ = REF.conv2d_backward(dy, x, ref_saved, W2, kh, kw, 1, 1, pads)
        assert dx.dtype == dtype, msg
        np.testing.assert_allclose(dx, ref_dx, err_msg=msg, **tol)
        np.testing.assert_allclose(dW2, ref_dW2, err_msg=msg, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_and_pixel_major_convolution_match_reference(dtype):
    # conv2d_forward(relu=True) applies the ReLU as y is written, and
    # conv2d_backward(relu_output=y) its mask as dy is read, on every path:
    # pixel-major phases (>= 32 filters; K = 9, 25 and 27, so whole groups of nine
    # taps and leftovers, and K = 4, leftovers only), filter-major phases or, for at
    # most eight float32 filters, pixel rows ("small": 8 filters, and 5 and 3,
    # whose dy is masked lane by lane), and gemm-chunks; with dx and without (a
    # model's first layer)
    from convnet.backend.numba import phases, pixel_rows
    rng = np.random.default_rng(19)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    cases = [((3, 3), (1, 1), "same", (2, 7, 6, 1), 32, "phases"),
             ((5, 5), (2, 2), "same", (2, 9, 8, 1), 33, "phases"),
             ((2, 2), (1, 1), "valid", (1, 6, 7, 1), 40, "phases"),
             ((3, 3), (1, 1), "same", (2, 6, 6, 3), 32, "phases"),
             ((3, 3), (2, 2), "valid", (2, 9, 9, 3), 8, "small"),
             ((5, 5), (3, 3), "valid", (2, 14, 14, 1), 5, "small"),
             ((3, 3), (1, 1), "valid", (3, 8, 9, 5), 3, "small"),
             ((3, 3), (1, 1), "same", (2, 6, 5, 8), 20, "gemm-chunks"),
             ((3, 3), (1, 1), "same", (1, 6, 5, 8), 20, "gemm-chunks"),       # one job, not one per core
             ((3, 3), (2, 1), "same", (5, 6, 5, 8), 20, "gemm-chunks")]
    assert phases.PIXEL_MAJOR_FILTERS == 32
    for (kh, kw), (sh, sw), padding, shape, f, algorithm in cases:
        msg, pads, x, W2, b = _conv_case(rng, dtype, (kh, kw), (sh, sw), padding, shape, f)
        if algorithm == "small":
            algorithm = "pixel-rows" if pixel_rows.applies(f, (dtype,)) else "phases"
        assert NB.conv2d_algorithm(shape, (kh * kw * shape[3], f), (dtype,)) == algorithm, msg
        z_ref, ref_saved = REF.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
        z, _ = NB.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
        np.testing.assert_allclose(z, z_ref, err_msg=msg, **tol)
        y, saved = NB.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads, relu=True)
        assert y.dtype == dtype and (y >= 0).all() and (y == 0).any() and (y > 0).any(), msg
        np.testing.assert_allclose(y, REF.relu(z_ref), err_msg=msg, **tol)
        dy = _data(rng, y.shape, dtype)
        for need_dx in (True, False):
            got = NB.conv2d_backward(dy, x, saved, W2, kh, kw, sh, sw, pads, need_dx=need_dx, relu_output=y)
            # the mask from y itself: a value rounded to either side of 0 cannot flip it
            ref = REF.conv2d_backward(REF.relu_backward(dy, y), x, ref_saved, W2, kh, kw, sh, sw, pads,
                                      need_dx=need_dx)
            also = REF.conv2d_backward(dy, x, ref_saved, W2, kh, kw, sh, sw, pads, need_dx=need_dx,
                                       relu_output=y)
            for name, a, r, r2 in zip(("dx", "dW2", "db"), got, ref, also):
                if r is None:
                    assert a is None and r2 is None, msg
                    continue
                np.testing.assert_array_equal(r2, r)
                np.testing.assert_allclose(a, r, err_msg=f"{name} {msg} need_dx={need_dx}", **tol)


def test_fused_relu_keeps_nan_visible():
    # the fused ReLU keeps a NaN in y, as NumpyOps.relu (np.maximum) does, and a NaN
    # in dy where y > 0 reaches db and dW2 (a diverged step stays visible); where
    # y <= 0 the masked gradient is 0, as in PyTorch (the reference's dy * (y > 0)
    # would give NaN there)
    pads = ((1, 1), (1, 1))
    for f in (32, 16, 8):               # pixel-major, register tiles, filter-major
        x = np.ones((1, 5, 5, 1), np.float32)
        x[0, 2, 2, 0] = np.nan
        W2 = np.full((9, f), -1.0, np.float32)
        y, saved = NB.conv2d_forward(x, W2, None, 3, 3, 1, 1, pads, relu=True)
        ref_y = REF.relu(REF.conv2d_forward(x, W2, None, 3, 3, 1, 1, pads)[0])
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref_y))
        assert np.isnan(y).sum() == 9 * f and (y[~np.isnan(y)] == 0).all()
        x = np.ones((1, 5, 5, 1), np.float32)
        x[0, 0, :, 0] = -4.0            # y > 0 on the first rows, y = 0 on the others
        y, saved = NB.conv2d_forward(x, W2, None, 3, 3, 1, 1, pads, relu=True)
        assert (y[:5] > 0).all() and (y[10:] == 0).all()
        for row, visible in ((2, True), (20, False)):
            dy = np.ones_like(y)
            dy[row, 1] = np.nan
            _, dW2, db = NB.conv2d_backward(dy, x, saved, W2, 3, 3, 1, 1, pads, need_dx=False, relu_output=y)
            assert np.isnan(db[1]) == visible and not np.isnan(np.delete(db, 1)).any(), (f, row)
            assert np.isnan(dW2[:, 1]).any() == visible and not np.isnan(np.delete(dW2, 1, axis=1)).any()


@pytest.mark.parametrize("jobs_per_core", [True, False])
def test_wide_convolution_one_job_per_core_matches_reference(jobs_per_core, monkeypatch):
    # wide convolutions (F > 16, K > 32) as one job per worker thread (serial
    # kernels, one-core BLAS) or as one job: the same results, for wide and narrow
    # channel counts, an odd batch (uneven shares) and a tiny chunk size (these
    # small convolutions go to the jobs only with the split threshold at 0)
    from convnet.backend.numba import workers
    from convnet.backend.numba.workers import CoreJobs
    monkeypatch.setattr(workers, "SPLIT_FLOPS", 0)
    ops = type(NB)()
    ops.conv_jobs_per_core = jobs_per_core
    ops.conv_chunk_bytes = 2000
    if jobs_per_core and CoreJobs.get() is None:
        pytest.skip("BLAS cannot be confined per thread here, or one thread only")
    rng = np.random.default_rng(14)
    for (kh, kw), (sh, sw), c, padding in [((3, 3), (1, 1), 9, "same"), ((5, 3), (2, 1), 3, "valid")]:
        x = _data(rng, (5, 9, 8, c), np.float64)
        (oh, ow), pads = window_geometry(9, 8, (kh, kw), (sh, sw), padding)
        W2 = _data(rng, (kh * kw * c, 24), np.float64)
        b = _data(rng, (24,), np.float64)
        y, saved = ops.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
        ref_y, ref_saved = REF.conv2d_forward(x, W2, b, kh, kw, sh, sw, pads)
        np.testing.assert_allclose(y, ref_y, rtol=1e-12)
        dy = _data(rng, y.shape, np.float64)
        for need_dx in (True, False):
            got = ops.conv2d_backward(dy, x, saved, W2, kh, kw, sh, sw, pads, need_dx=need_dx)
            ref = REF.conv2d_backward(dy, x, ref_saved, W2, kh, kw, sh, sw, pads, need_dx=need_dx)
            for a, r in zip(got, ref):
                if r is None:
                    assert a is None
                else:
                    np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12)


def test_only_convolutions_worth_the_hand_off_run_as_jobs(monkeypatch):
    # one job per core costs a hand-off to the pool's threads: a convolution with
    # fewer than workers.SPLIT_FLOPS of work runs as one job on the calling thread
    from convnet.backend.numba import workers
    from convnet.backend.numba.workers import CoreJobs
    pool = CoreJobs.get()
    if pool is None:
        pytest.skip("BLAS cannot be confined per thread here, or one thread only")
    maps = []
    real_map = CoreJobs.map
    monkeypatch.setattr(CoreJobs, "map", lambda self, work, ranges: maps.append(len(ranges)) or
                        real_map(self, work, ranges))
    rng = np.random.default_rng(16)
    pads = ((1, 1), (1, 1))
    for n, expect_jobs in ((2, False), (16, True)):
        x = _data(rng, (n, 16, 16, 32), np.float32)
        W2 = _data(rng, (288, 48), np.float32)
        flops = 2 * n * 256 * 288 * 48
        assert (flops >= workers.SPLIT_FLOPS) == expect_jobs
        maps.clear()
        y, saved = NB.conv2d_forward(x, W2, None, 3, 3, 1, 1, pads)
        NB.conv2d_backward(_data(rng, y.shape, np.float32), x, saved, W2, 3, 3, 1, 1, pads)
        assert maps == ([pool.size, pool.size] if expect_jobs else []), (n, maps)


def test_one_job_per_core_restores_the_blas_thread_count():
    # OpenBLAS's thread count is process-wide: the jobs set it to 1 while they
    # run; afterwards (also after a failed job) the rest of the program gets it back
    from convnet.backend import blas
    from convnet.backend.numba.workers import CoreJobs
    workers = CoreJobs.get()
    if workers is None:
        pytest.skip("BLAS cannot be confined per thread here, or one thread only")
    get_threads, _ = blas.thread_count_functions()
    before = get_threads()
    seen = workers.map(lambda s0, e0, serial: get_threads(), [(0, 1)] * workers.size)
    assert seen == [1] * workers.size and get_threads() == before

    def fail(s0, e0, serial):
        raise RuntimeError("job failed")
    with pytest.raises(RuntimeError, match="job failed"):
        workers.map(fail, [(0, 1)] * workers.size)
    assert get_threads() == before


def _wide_conv_in_child(queue):
    rng = np.random.default_rng(15)
    x = rng.random((4, 6, 6, 8))
    W2 = rng.random((72, 20))
    y, _ = NB.conv2d_forward(x, W2, None, 3, 3, 1, 1, ((1, 1), (1, 1)))
    ref, _ = REF.conv2d_forward(x, W2, None, 3, 3, 1, 1, ((1, 1), (1, 1)))
    queue.put(bool(np.allclose(y, ref)))


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs os.register_at_fork")
def test_wide_convolution_works_in_a_forked_child():
    # the parent's job threads do not exist in a forked child; the child must
    # start its own instead of waiting forever for the parent's
    import multiprocessing
    _wide_conv_in_child(multiprocessing.Queue())      # the parent's workers exist now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_wide_conv_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0 and queue.get(timeout=5) is True


def test_conv_chunking_covers_the_batch():
    # a tiny chunk size forces many chunks (and a short last one)
    ops = type(NB)()
    ops.conv_chunk_bytes = 1
    rng = np.random.default_rng(12)
    x = _data(rng, (5, 6, 7, 8), np.float64)
    W2 = _data(rng, (3 * 3 * 8, 20), np.float64)
    pads = ((1, 1), (1, 1))
    y, saved = ops.conv2d_forward(x, W2, None, 3, 3, 1, 1, pads)
    ref_y, ref_saved = REF.conv2d_forward(x, W2, None, 3, 3, 1, 1, pads)
    np.testing.assert_allclose(y, ref_y, rtol=1e-12)
    dy = _data(rng, y.shape, np.float64)
    for a, r in zip(ops.conv2d_backward(dy, x, saved, W2, 3, 3, 1, 1, pads),
                    REF.conv2d_backward(dy, x, ref_saved, W2, 3, 3, 1, 1, pads)):
        np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12)
    # the bias and the fused ReLU go on chunk by chunk, and so do the ReLU's mask
    # and the bias gradient's sums in backward
    b = _data(rng, (20,), np.float64)
    y, saved = ops.conv2d_forward(x, W2, b, 3, 3, 1, 1, pads, relu=True)
    ref_y = REF.relu(REF.conv2d_forward(x, W2, b, 3, 3, 1, 1, pads)[0])
    np.testing.assert_allclose(y, ref_y, rtol=1e-12)
    for need_dx in (True, False):
        got = ops.conv2d_backward(dy, x, saved, W2, 3, 3, 1, 1, pads, need_dx=need_dx, relu_output=y)
        want = REF.conv2d_backward(dy, x, ref_saved, W2, 3, 3, 1, 1, pads, need_dx=need_dx, relu_output=ref_y)
        for a, r in zip(got, want):
            if r is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-12)


@pytest.fixture(params=["serial", "parallel"])
def kernel_size_mode(request, monkeypatch):
    """Run a test once with the serial twins of the memory-bound kernels (what
    small arrays get) and once with the parallel kernels (large arrays)."""
    from convnet.backend.numba import threads
    monkeypatch.setattr(threads, "_serial_below", 1 << 62 if request.param == "serial" else 0)
    return request.param


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_matches_reference(dtype, kernel_size_mode):
    rng = np.random.default_rng(2)
    grid = POOL_GRID + [(2, 2, "valid", (2, 7, 9, 3)), (2, 2, "same", (1, 7, 5, 2)),
                        (2, 2, "valid", (1, 8, 8, 1))]
    for (k, s, p, shape), ties in itertools.product(grid, [False, True]):
        x = _data(rng, shape, dtype, ties=ties)
        _, _, pads = _pads(shape, k, s, p)
        y, arg = NB.maxpool(x, k, k, s, s, pads)
        ref_y, ref_arg = REF.maxpool(x, k, k, s, s, pads)
        msg = f"maxpool k={k} s={s} p={p} {shape} ties={ties}"
        assert y.dtype == dtype and arg.dtype == ref_arg.dtype
        np.testing.assert_array_equal(y, ref_y, err_msg=msg)
        np.testing.assert_array_equal(arg, ref_arg, err_msg=msg)
        dy = _data(rng, y.shape, dtype)
        np.testing.assert_array_equal(NB.maxpool_backward(dy, arg, shape, k, k, s, s, pads),
                                      REF.maxpool_backward(dy, arg, shape, k, k, s, s, pads),
                                      err_msg=msg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_special_values(dtype, kernel_size_mode):
    # -inf and NaN inputs follow the reference's strict ">" rule exactly
    x = np.array([[-np.inf, -np.inf, 1, np.nan], [-np.inf, -np.inf, np.nan, 2]], dtype=dtype)
    x = x.reshape(1, 2, 4, 1)
    pads = ((0, 0), (0, 0))
    for k, s in [(2, 2), (2, 1)]:
        y, arg = NB.maxpool(x, k, k, s, s, pads)
        ref_y, ref_arg = REF.maxpool(x, k, k, s, s, pads)
        np.testing.assert_array_equal(y, ref_y)
        np.testing.assert_array_equal(arg, ref_arg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_avgpool_matches_reference(dtype):
    rng = np.random.default_rng(3)
    for k, s, p, shape in POOL_GRID:
        x = _data(rng, shape, dtype)
        _, _, pads = _pads(shape, k, s, p)
        y, count = NB.avgpool(x, k, k, s, s, pads)
        ref_y, ref_count = REF.avgpool(x, k, k, s, s, pads)
        msg = f"avgpool k={k} s={s} p={p} {shape}"
        np.testing.assert_array_equal(count, ref_count, err_msg=msg)
        np.testing.assert_allclose(y, ref_y, rtol=1e-6, atol=1e-6, err_msg=msg)
        assert y.dtype == dtype
        dy = _data(rng, y.shape, dtype)
        np.testing.assert_allclose(NB.avgpool_backward(dy, count, shape, k, k, s, s, pads),
                                   REF.avgpool_backward(dy, ref_count, shape, k, k, s, s, pads),
                                   rtol=1e-6, atol=1e-6, err_msg=msg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_matches_reference(dtype, kernel_size_mode):
    # Add's sum and the gradient at a fork of a graph; special values add as in numpy
    rng = np.random.default_rng(5)
    a, b = _data(rng, (3, 5, 4, 2), dtype), _data(rng, (3, 5, 4, 2), dtype)
    a.flat[:4] = [np.nan, np.inf, -np.inf, 1.0]
    b.flat[:4] = [1.0, -np.inf, -np.inf, np.nan]
    got = NB.add(a, b)
    assert got.dtype == dtype and got is not a and got is not b
    with np.errstate(invalid="ignore"):     # inf + -inf, in numpy's paths
        np.testing.assert_array_equal(got, REF.add(a, b))
        # non-contiguous inputs and mixed dtypes go to the reference (numpy's promotion)
        np.testing.assert_array_equal(NB.add(a[:, ::2], b[:, ::2]), REF.add(a[:, ::2], b[:, ::2]))
        other = b.astype(np.float32 if dtype == np.float64 else np.float64)
        mixed = NB.add(a, other)
        assert mixed.dtype == np.float64
        np.testing.assert_array_equal(mixed, a + other)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_pair_matches_reference(dtype, kernel_size_mode):
    rng = np.random.default_rng(4)
    x = _data(rng, (3, 5, 4, 2), dtype)
    x.flat[:4] = [np.nan, -0.0, 0.0, np.inf]
    np.testing.assert_array_equal(NB.relu(x), REF.relu(x))
    out = x.copy()
    assert NB.relu(out, out=out) is out
    np.testing.assert_array_equal(out, REF.relu(x))
    dy = _data(rng, x.shape, dtype)
    y = REF.relu(x)
    got = NB.relu_backward(dy, y)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, REF.relu_backward(dy, y))
    # non-contiguous input falls back to (or matches) the reference
    np.testing.assert_array_equal(NB.relu(x[:, ::2]), REF.relu(x[:, ::2]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_softmax_cross_entropy_matches_reference(dtype):
    rng = np.random.default_rng(5)
    for n, k in [(1, 2), (7, 10), (4, 3)]:
        z = (rng.standard_normal((n, k)) * 5).astype(dtype)
        z[0, 0] = 1e4                       # large logits stay finite
        labels = rng.integers(0, k, n)
        losses, grad = NB.sparse_softmax_cross_entropy(z, labels)
        ref_losses, ref_grad = REF.sparse_softmax_cross_entropy(z, labels)
        assert losses.dtype == dtype and grad.dtype == dtype
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(losses, ref_losses, rtol=tol, atol=tol)
        np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_matches_reference(dtype):
    rng = np.random.default_rng(13)
    z = (rng.standard_normal((6, 10)) * 4).astype(dtype)
    z[0, :3] = [1e4, -1e4, 0]
    tol = 1e-6 if dtype == np.float32 else 1e-13
    got = NB.softmax(z)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, REF.softmax(z), rtol=tol, atol=tol)
    np.testing.assert_allclose(NB.softmax(z[:, ::2]), REF.softmax(z[:, ::2]), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_updates_match_reference(dtype, kernel_size_mode):
    rng = np.random.default_rng(6)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    shape = (5, 3, 4)
    p0 = _data(rng, shape, dtype)
    # Adam: three steps with changing gradients
    ps, ms, vs = [p0.copy() for _ in range(2)], [np.zeros(shape, dtype) for _ in range(2)], \
        [np.zeros(shape, dtype) for _ in range(2)]
    for t in range(1, 4):
        g = _data(rng, shape, dtype)
        for ops, p, m, v in zip((NB, REF), ps, ms, vs):
            ops.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7, t)
    for a, b in ((ps[0], ps[1]), (ms[0], ms[1]), (vs[0], vs[1])):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **tol)
    # SGD: plain, momentum, Nesterov, weight decay
    for momentum, nesterov, wd in [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-2),
                                   (0.0, False, 1e-2)]:
        ps = [p0.copy() for _ in range(2)]
        vel = [np.zeros(shape, dtype) if momentum else None for _ in range(2)]
        for _ in range(3):
            g = _data(rng, shape, dtype)
            for ops, p, v in zip((NB, REF), ps, vel):
                ops.sgd_update(p, g, v, 0.1, momentum, nesterov, wd)
        np.testing.assert_allclose(ps[0], ps[1], **tol)


# ------------------------------------------------------------ gradient checks
def _check(layer, x, **kwargs):
    with cn.use_backend("numba"):
        report = cn.gradcheck(layer, x, **kwargs)
    assert report.passed, str(report)
    assert set(report.errors) == {"input", *layer.params}


@pytest.mark.parametrize("kernel,stride,padding,shape", [g for g in GRID if g[0] in (1, 3, 5)][::2])
def test_conv2d_gradcheck_numba(kernel, stride, padding, shape):
    rng = np.random.default_rng(7)
    layer = L.Conv2D(2, kernel, strides=stride, padding=padding, activation="relu",
                     dtype="float64", seed=1)
    layer.build(shape[1:])
    # a non-zero bias keeps padded border outputs (= b) away from relu's kink at 0
    layer.params["b"][...] = rng.uniform(0.5, 1.0, 2) * rng.choice([-1, 1], 2)
    _check(layer, rng.standard_normal(shape), max_checks=40)


@pytest.mark.parametrize("pool,stride,padding", [(2, 2, "valid"), (2, 2, "same"), (3, 2, 1),
                                                 (3, 1, "same"), (2, 3, "valid")])
def test_pooling_gradcheck_numba(pool, stride, padding):
    rng = np.random.default_rng(8)
    shape = (2, 7, 6, 3)
    x = rng.permutation(np.prod(shape)).reshape(shape) / 7.0     # no ties
    _check(L.MaxPooling2D(pool, strides=stride, padding=padding, dtype="float64"), x, max_checks=60)
    _check(L.AveragePooling2D(pool, strides=stride, padding=padding, dtype="float64"), x,
           max_checks=60)


def test_other_layers_gradcheck_numba():
    rng = np.random.default_rng(9)
    x4 = rng.standard_normal((2, 5, 4, 3))
    x2 = rng.standard_normal((3, 6))
    _check(L.Dense(4, activation="relu", dtype="float64", seed=0), x2)
    _check(L.Dense(4, activation="tanh", dtype="float64", seed=0), x2)
    _check(L.Flatten(dtype="float64"), x4)
    _check(L.GlobalAveragePooling2D(dtype="float64"), x4)
    _check(L.ReLU(dtype="float64"), x4)
    _check(L.Dropout(0.3, dtype="float64", seed=0), x2)
    if hasattr(L, "BatchNormalization"):
        _check(L.BatchNormalization(dtype="float64"), x4)


@pytest.mark.parametrize("filters", [3, 32])
def test_model_gradcheck_and_training_match_numpy(filters):
    """A small CNN: the model gradient check passes on numba, and one training run
    gives the same losses on numba and numpy (float32, to float tolerance). Its
    first layer's ReLU runs inside the convolution (masked in the dW2 kernel),
    filter-major with 3 filters, pixel-major with 32."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((4, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 4)

    def build():
        model = cn.Sequential([L.Conv2D(filters, 3, padding="same", activation="relu"),
                               L.MaxPooling2D(2), L.Flatten(), L.Dense(3)],
                              input_shape=(8, 8, 1), seed=0)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    with cn.use_backend("numba"):
        model = build()
        report = cn.gradcheck(model, x, y)
        assert report.passed, str(report)
        numba_losses = [model.train_step(x, y) for _ in range(5)]
    with cn.use_backend("numpy"):
        model = build()
        numpy_losses = [model.train_step(x, y) for _ in range(5)]
    np.testing.assert_allclose(numba_losses, numpy_losses, rtol=1e-4)


def test_conv_algorithm_is_named_and_chosen_in_one_place():
    # the choice profiles report: direct on stride phases for small convolutions,
    # chunked im2col + GEMM for wide ones, the reference for other dtypes
    assert NB.conv2d_algorithm((128, 28, 28, 1), (9, 32), (np.float32,)) == "phases"
    assert NB.conv2d_algorithm((128, 14, 14, 32), (288, 64), (np.float32,)) == "gemm-chunks"
    assert NB.conv2d_algorithm((1, 8, 8, 4), (36, 20), (np.float16,)) == "im2col-gemm"
    assert NB.conv2d_algorithm((1, 8, 8, 4), (9, 8), (np.float32, np.float64)) == "gemm-chunks"
    # a 1x1 window (W5's shortcuts): short, but its im2col is only a copy of x,
    # so only few filters make it small
    assert NB.conv2d_algorithm((32, 32, 32, 16), (16, 32), (np.float32,)) == "gemm-chunks"
    assert NB.conv2d_algorithm((32, 32, 32, 16), (16, 16), (np.float32,)) == "phases"
    assert NB.conv2d_algorithm((32, 32, 32, 1), (9, 32), (np.float32,)) == "phases"
    assert REF.conv2d_algorithm((128, 28, 28, 1), (9, 32)) == "im2col-gemm"
    # 32 float32 filters at stride 1: direct register tiles where the CPU has them
    from convnet.backend.numba import simd
    tiles = "tiles" if simd.has_512bit_vectors() or simd.has_256bit_fma() else "gemm-chunks"
    assert NB.conv2d_algorithm((32, 16, 16, 32), (288, 32), (np.float32,)) == tiles
    assert NB.conv2d_algorithm((32, 16, 16, 32), (288, 32), (np.float32,), (2, 2)) == "gemm-chunks"
    assert NB.conv2d_algorithm((32, 16, 16, 32), (288, 32), (np.float64,)) == "gemm-chunks"
    assert NB.conv2d_algorithm((32, 16, 16, 32), (288, 64), (np.float32,)) == "gemm-chunks"
    # 64 filters: the tiles too in an inference's forward pass of a small batch
    assert NB.conv2d_algorithm((16, 16, 16, 32), (288, 64), (np.float32,), training=False) == tiles
    assert NB.conv2d_algorithm((16, 16, 16, 32), (288, 64), (np.float32,)) == "gemm-chunks"
    assert NB.conv2d_algorithm((32, 16, 16, 32), (288, 64), (np.float32,), training=False) == "gemm-chunks"
    assert NB.conv2d_algorithm((1, 16, 16, 32), (288, 128), (np.float32,), training=False) == "gemm-chunks"
    rng = np.random.default_rng(31)
    msg, pads, x, W2, b = _conv_case(rng, np.float32, (3, 3), (1, 1), "same", (2, 6, 7, 8), 64)
    y, saved = NB.conv2d_forward(x, W2, b, 3, 3, 1, 1, pads, training=False, relu=True)
    np.testing.assert_allclose(y, REF.relu(REF.conv2d_forward(x, W2, b, 3, 3, 1, 1, pads)[0]),
                               rtol=1e-4, atol=1e-4, err_msg=msg)
    assert saved is None
    # at most 8 float32 filters (W3's first layer): direct on pixel rows where the CPU
    # has 256-bit FMA; float64 stays with the phases
    rows = "pixel-rows" if simd.has_512bit_vectors() or simd.has_256bit_fma() else "phases"
    assert NB.conv2d_algorithm((128, 128, 128, 3), (27, 8), (np.float32,), (2, 2)) == rows
    assert NB.conv2d_algorithm((128, 128, 128, 3), (27, 8), (np.float64,), (2, 2)) == "phases"
    assert NB.conv2d_algorithm((128, 128, 128, 3), (27, 9), (np.float32,), (2, 2)) == "phases"
    layer = L.Conv2D(32, 3, padding="same")
    layer.build((10, 10, 16))
    strided = L.Conv2D(32, 3, strides=2, padding="same")
    strided.build((10, 10, 16))
    wide = L.Conv2D(64, 3, padding="same")
    wide.build((10, 10, 16))
    with cn.use_backend("numba"):
        assert layer.algorithm() == tiles
        layer.forward(np.zeros((2, 10, 10, 16), np.float32))
        assert layer.algorithm() == tiles
        # the mode of the last forward pass, unless asked for another
        wide.forward(np.zeros((2, 10, 10, 16), np.float32), training=False)
        assert wide.algorithm() == tiles
        assert wide.algorithm(training=True) == "gemm-chunks"
        wide.forward(np.zeros((2, 10, 10, 16), np.float32), training=True)
        assert wide.algorithm() == "gemm-chunks"
        assert layer.algorithm((2, 10, 10, 16)) == tiles
        assert strided.algorithm() == "gemm-chunks"
    with cn.use_backend("numpy"):
        assert layer.algorithm() == "im2col-gemm"


def test_tiles_convolution_matches_reference():
    # "tiles" (32 float32 filters, stride 1): y and dx in register tiles on the
    # padded pixels, dW2 and db from gemm-chunks; with and without the fused ReLU,
    # without dx, and with padding wider than the window (dx then by col2im)
    from convnet.backend.numba import simd
    if not (simd.has_512bit_vectors() or simd.has_256bit_fma()):
        pytest.skip("the tiles need 512-bit vectors, or 256-bit ones with FMA")
    rng = np.random.default_rng(24)
    for (kh, kw), padding, shape in [((3, 3), "same", (3, 7, 9, 16)), ((2, 3), "valid", (2, 6, 5, 32)),
                                     ((3, 3), 3, (1, 4, 5, 8))]:
        msg, pads, x, W2, b = _conv_case(rng, np.float32, (kh, kw), (1, 1), padding, shape, 32)
        assert NB.conv2d_algorithm(x.shape, W2.shape, (np.float32,)) == "tiles", msg
        ref_y, ref_saved = REF.conv2d_forward(x, W2, b, kh, kw, 1, 1, pads)
        for relu in (False, True):
            y, saved = NB.conv2d_forward(x, W2, b, kh, kw, 1, 1, pads, relu=relu)
            np.testing.assert_allclose(y, REF.relu(ref_y) if relu else ref_y, rtol=1e-4, atol=1e-4, err_msg=msg)
            dy = _data(rng, y.shape, np.float32)
            masked = REF.relu_backward(dy, y) if relu else dy
            for need_dx in (True, False):
                got = NB.conv2d_backward(dy, x, saved, W2, kh, kw, 1, 1, pads, need_dx=need_dx,
                                         relu_output=y if relu else None)
                ref = REF.conv2d_backward(masked, x, ref_saved, W2, kh, kw, 1, 1, pads, need_dx=need_dx)
                for name, a, r in zip(("dx", "dW2", "db"), got, ref):
                    if r is None:
                        assert a is None, msg
                    else:
                        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4, err_msg=f"{name} {msg} relu={relu}")


# ------------------------------------------------ thread settings, per process
_CHILD = r'''
import json, resource, sys, time, types
if sys.argv[1] == "numpy-first":
    import numpy
import convnet as cn
import numpy as np
from convnet.backend import blas
from convnet.backend.numba import conv, gemm, threads, workers

get_threads, _ = blas.thread_count_functions()
seen = set()

def spy_matmul(a, b, out=None):
    # the BLAS thread count while convnet's products run (those OpenBLAS would split)
    if a.shape[0] * a.shape[1] * b.shape[1] > workers.BLAS_SINGLE_THREAD_MNK:
        seen.add(get_threads())
    return np.matmul(a, b, out=out)

spy = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
spy.matmul = spy_matmul
workers.np = conv.np = gemm.np = spy   # gemm.py falls back to numpy where its kernels do not apply
L = cn.layers
model = cn.Sequential([L.Conv2D(16, 3, padding="same", activation="relu"),
                       L.Conv2D(24, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                       L.Flatten(), L.Dense(64, activation="relu"), L.Dense(3)], input_shape=(14, 14, 2), seed=0)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
x = rng.random((64, 14, 14, 2), dtype=np.float32)
y = rng.integers(0, 3, 64)
with cn.use_backend("numba"):
    for _ in range(3):
        model.train_step(x, y)
    model.predict(x, batch_size=64)
before = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(0.3)
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({"blas_in_products": sorted(seen), "blas_after": get_threads(),
                  "layer": threads.layer(), "numba_threads": threads.num_threads(), "idle_cpu_s": cpu}))
'''


def _run_child(order, env_extra=None):
    import json
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENBLAS_", "NUMBA_THREADING", "CONVNET_THREADING", "CONVNET_BACKEND"))}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", _CHILD, order], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_thread_settings_inside_kernels_do_not_depend_on_the_import_order():
    # A script that imports numpy first gets OpenBLAS's default busy-wait (convnet
    # cannot set OPENBLAS_THREAD_TIMEOUT in time). convnet's products then must
    # still run with a one-thread BLAS (OpenBLAS's workers get no work, so they do
    # not spin while the next Numba kernel needs the cores), the user's BLAS count
    # comes back afterwards, and the threading layer is the same.
    from convnet.backend import blas
    if blas.thread_count_functions() is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS whose thread count can be set")
    first = _run_child("convnet-first")
    late = _run_child("numpy-first")
    for report in (first, late):
        if report["numba_threads"] > 1:
            assert report["blas_in_products"] == [1], report
        # idle threads sleep: OpenBLAS's spin burns ~0.05-0.1 s of CPU per worker here
        assert report["idle_cpu_s"] < 0.02, report
    for key in ("blas_in_products", "blas_after", "layer", "numba_threads"):
        assert first[key] == late[key], (key, first, late)


_WARN_CHILD = r'''
import sys, warnings
sys.modules["numba.np.ufunc.tbbpool"] = None      # as if TBB could not load
import numpy as np
import convnet as cn
from convnet.backend.numba import threads
ops = cn.get_ops("numba")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(3):
        ops.relu(np.ones(1 << 21, np.float32))
        ops.relu(np.ones(8, np.float32))
messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
print(len(messages), threads.layer(), threads.serial_below() == threads.SERIAL_BELOW_SLOW_LAUNCH)
print(messages[0] if messages else "")
'''


def test_warns_once_naming_the_fix_when_tbb_cannot_load():
    import subprocess
    import sys

    from convnet.backend.numba import threads
    if not threads.tbb_wheel_exists():
        pytest.skip("no tbb wheel for this platform: nothing the user can fix")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_THREADING", "CONVNET_THREADING"))}
    proc = subprocess.run([sys.executable, "-c", _WARN_CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    count, layer, slow_threshold = proc.stdout.splitlines()[0].split()
    assert layer in ("workqueue", "omp")
    assert count == "1" and slow_threshold == "True", proc.stdout
    assert "pip install tbb" in proc.stdout
