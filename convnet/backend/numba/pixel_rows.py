"""Direct convolution on x's own pixels, a row of output pixels at a time: the
algorithm for convolutions of at most eight float32 filters, at any stride.

With eight filters or fewer, one output pixel's sums fit one 8-lane vector
(simd.F32x8: a 256-bit register). A tile of TILE output pixels (i, j0..j0+7) of
one output row keeps its TILE vectors of sums in registers through all
K = kh*kw*C taps, reading x where the window lies, with nothing unfolded and
nothing split:

    y[(b, i, j), :] = bias + sum over taps t = (ty, tx, ch) of
                      xp[b, i*sh + ty, j*sw + tx, ch] * W2[t, :]
                      (one number, broadcast)          (one vector)

xp is x zero-padded by the convolution's padding (x itself when there is none,
as for W3's and W4's "valid" layers). In an image's flat numbers, tap t of
output pixel (i, j) lies at i*sh*Wp*C + j*sw*C + tap_offset[t], with
tap_offset[t] = (ty*Wp + tx)*C + ch (Wp: xp's width), so the pixels of a tile
step by sw*C numbers and each tap costs one load of W2's row and TILE
broadcasts for TILE vector multiply-adds. Fewer than eight filters take W2 and
bias with zero columns up to eight (the lanes past F are computed and not
stored).

The phase split (phases.py) exists so that the taps become contiguous runs a
loop vectorizer can use; with the vector over the filters instead, the runs
are not needed, and neither is the pass that builds them: W3's first layer
(128x128x3 -> 8 filters, 3x3, stride 2) at batch 128 took 3.1 ms forward
against 7.6 for split + phases kernel, and the split was 3.8 ms of that.

The weight gradient turns the tile around: TAP_GROUP taps' vectors of sums
(dW2[t, :] for nine taps) stay in registers while the row's dy vectors stream
past, each dy vector broadcast against nine numbers of xp:

    dW2[t, :] += xp[b, i*sh + ty, j*sw + tx, ch] * dy[(b, i, j), :]

Before its taps, each output row's dy is copied once into an (OW, 8) row of
vectors, zero past F, masked by the forward's ReLU output where asked (0 where
y <= 0, as phases._gather_block), and summed into db.
Every kernel here matches NumpyOps' im2col + GEMM (tests/test_backend_numba.py).
"""

import functools

import numpy as np
from numba import njit, prange

from . import phases, threads
from ._jit import JIT, PJIT, contig, serial_twin
from .simd import (
    LANES8,
    has_256bit_fma,
    has_512bit_vectors,
    vadd,
    vfma,
    vlane8,
    vload8,
    vmask,
    vrelu,
    vsplat8_at,
    vstore8,
    vzero8,
)

#: output pixels per forward tile (eight vectors of sums: the FMA's latency times
#: its two units, with registers left for W2's row and the broadcasts)
TILE = 8

#: taps per pass of the weight gradient (nine sums in flight; a 3x3 window's
#: K = 9*C is a whole number of passes, other windows are padded with copies of
#: tap 0 whose sums are dropped)
TAP_GROUP = 9


def applies(f, dtypes):
    """Do these kernels take a convolution of f filters on arrays of these dtypes?
    At most LANES8 filters, float32 throughout, on a CPU with 256-bit FMA (AVX2)
    or AVX-512."""
    return (f <= LANES8 and all(np.dtype(d) == np.float32 for d in dtypes)
            and (has_512bit_vectors() or has_256bit_fma()))


def padded_input(x, kh, kw, sh, sw, pt, pl, oh, ow):
    """xp (N, Hp, Wp, C): x itself when the windows of the oh x ow output pixels
    lie inside it (no padding on the top and left, none needed past the bottom
    and right), else x zero-padded to Hp = (oh-1)*sh + kh rows and
    Wp = (ow-1)*sw + kw columns (phases.zero_padded)."""
    hp, wp = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    if pt == 0 and pl == 0 and hp <= x.shape[1] and wp <= x.shape[2]:
        return contig(x)
    return phases.zero_padded(contig(x), pt, pl, hp, wp)


@functools.lru_cache(maxsize=256)
def tap_offsets(c, kh, kw, wp, groups=1):
    """tap_offset (K,) int64: where tap t = (ty, tx, ch) of W2's rows lies among an
    image's numbers, from its window's first: (ty*wp + tx)*c + ch. With groups > 1,
    padded to a multiple of `groups` taps with copies of tap 0. Cached and shared:
    nothing may write to it."""
    ty, tx, ch = (a.ravel() for a in np.meshgrid(np.arange(kh), np.arange(kw), np.arange(c), indexing="ij"))
    offset = (ty * wp + tx) * c + ch
    spare = -len(offset) % groups
    return np.concatenate([offset, np.full(spare, offset[0])]).astype(np.int64)


@njit(inline="always", **JIT)
def _store_pixel(yf, o, s, f_count, relu):
    # y's row at o (f_count numbers) = the lanes of s below f_count, through max(., 0)
    # when relu (a NaN stays NaN)
    if relu:
        s = vrelu(s)
    if f_count == LANES8:
        vstore8(yf, o, s)
    else:
        for f in range(f_count):
            yf[o + f] = vlane8(s, f)


@njit(**PJIT)
def _forward(xp, W8, bias8, tap_offset, sh, sw, oh, ow, f_count, relu, y):
    # y (N*OH*OW, f_count) from xp (N, Hp, Wp, C), W8 (K, 8) and bias8 (8,) (zero
    # columns past f_count); one output row (b, i) per task, TILE pixels a tile.
    # The last tile of a row is moved back to end at its last pixel (it recomputes
    # pixels of the tile before it, the same sums); on a row of fewer than TILE
    # pixels the tile's pixels past the row repeat its last one.
    n, hp, wp, c = xp.shape
    k_count = W8.shape[0]
    xf = xp.reshape(n * hp * wp * c)
    wf = W8.reshape(k_count * LANES8)
    yf = y.reshape(y.size)
    image = hp * wp * c
    row_step = sh * wp * c       # from output row i to i + 1
    step = sw * c                # from output pixel j to j + 1
    tiles = -(-ow // TILE)
    last = ow - 1
    for g in prange(n * oh):
        b = g // oh
        i = g - b * oh
        first = b * image + i * row_step
        for tile in range(tiles):
            j0 = max(0, min(tile * TILE, ow - TILE))
            j1 = min(j0 + 1, last); j2 = min(j0 + 2, last); j3 = min(j0 + 3, last)  # noqa: E702
            j4 = min(j0 + 4, last); j5 = min(j0 + 5, last); j6 = min(j0 + 6, last)  # noqa: E702
            j7 = min(j0 + 7, last)
            s0 = vload8(bias8, 0)
            s1 = s0; s2 = s0; s3 = s0; s4 = s0; s5 = s0; s6 = s0; s7 = s0  # noqa: E702
            for t in range(k_count):
                r = first + tap_offset[t]
                v = vload8(wf, t * LANES8)
                s0 = vfma(vsplat8_at(xf, r + j0 * step), v, s0)
                s1 = vfma(vsplat8_at(xf, r + j1 * step), v, s1)
                s2 = vfma(vsplat8_at(xf, r + j2 * step), v, s2)
                s3 = vfma(vsplat8_at(xf, r + j3 * step), v, s3)
                s4 = vfma(vsplat8_at(xf, r + j4 * step), v, s4)
                s5 = vfma(vsplat8_at(xf, r + j5 * step), v, s5)
                s6 = vfma(vsplat8_at(xf, r + j6 * step), v, s6)
                s7 = vfma(vsplat8_at(xf, r + j7 * step), v, s7)
            o = g * ow
            _store_pixel(yf, (o + j0) * f_count, s0, f_count, relu)
            _store_pixel(yf, (o + j1) * f_count, s1, f_count, relu)
            _store_pixel(yf, (o + j2) * f_count, s2, f_count, relu)
            _store_pixel(yf, (o + j3) * f_count, s3, f_count, relu)
            _store_pixel(yf, (o + j4) * f_count, s4, f_count, relu)
            _store_pixel(yf, (o + j5) * f_count, s5, f_count, relu)
            _store_pixel(yf, (o + j6) * f_count, s6, f_count, relu)
            _store_pixel(yf, (o + j7) * f_count, s7, f_count, relu)


@njit(**PJIT)
def _weight_grad(xp, dy, relu_output, masked, tap_offset, sh, sw, oh, ow, parts, bias_parts, dq):
    # parts[p] (Kpad*8,) = share p of dW2[t, :] (t < Kpad: tap_offset padded to a
    # multiple of TAP_GROUP), bias_parts[p] (8,) its share of db; the output rows
    # are split into len(parts) contiguous shares, one per task. dq[p] (OW*8,) holds
    # the current row's dy as vectors (zero past F, masked when asked).
    n, hp, wp, c = xp.shape
    nparts = parts.shape[0]
    k_count = tap_offset.shape[0]
    f_count = dy.shape[1]
    xf = xp.reshape(n * hp * wp * c)
    dyf = dy.reshape(dy.size)
    mf = relu_output.reshape(relu_output.size)
    image = hp * wp * c
    row_step = sh * wp * c
    step = sw * c
    rows = n * oh
    zero = np.float32(0)
    for part in prange(nparts):
        acc = parts[part]
        acc[:] = 0
        d = dq[part]
        bsum = vzero8()
        for g in range(part * rows // nparts, (part + 1) * rows // nparts):
            b = g // oh
            i = g - b * oh
            first = b * image + i * row_step
            src = g * ow * f_count
            # the row's dy as vectors, then their sum (db)
            if f_count == LANES8:
                for j in range(ow):
                    e = vload8(dyf, src + j * LANES8)
                    if masked:
                        e = vmask(e, vload8(mf, src + j * LANES8))
                    vstore8(d, j * LANES8, e)
            else:
                for j in range(ow):
                    for f in range(f_count):
                        e = dyf[src + j * f_count + f]
                        if masked and not mf[src + j * f_count + f] > zero:
                            e = zero
                        d[j * LANES8 + f] = e
                    for f in range(f_count, LANES8):
                        d[j * LANES8 + f] = zero
            for j in range(ow):
                bsum = vadd(bsum, vload8(d, j * LANES8))
            for t in range(0, k_count, TAP_GROUP):
                a = t * LANES8
                a0 = vload8(acc, a); a1 = vload8(acc, a + 8); a2 = vload8(acc, a + 16)  # noqa: E702
                a3 = vload8(acc, a + 24); a4 = vload8(acc, a + 32); a5 = vload8(acc, a + 40)  # noqa: E702
                a6 = vload8(acc, a + 48); a7 = vload8(acc, a + 56); a8 = vload8(acc, a + 64)  # noqa: E702
                r0 = first + tap_offset[t]; r1 = first + tap_offset[t + 1]  # noqa: E702
                r2 = first + tap_offset[t + 2]; r3 = first + tap_offset[t + 3]  # noqa: E702
                r4 = first + tap_offset[t + 4]; r5 = first + tap_offset[t + 5]  # noqa: E702
                r6 = first + tap_offset[t + 6]; r7 = first + tap_offset[t + 7]  # noqa: E702
                r8 = first + tap_offset[t + 8]
                for j in range(ow):
                    e = vload8(d, j * LANES8)
                    q = j * step
                    a0 = vfma(vsplat8_at(xf, r0 + q), e, a0)
                    a1 = vfma(vsplat8_at(xf, r1 + q), e, a1)
                    a2 = vfma(vsplat8_at(xf, r2 + q), e, a2)
                    a3 = vfma(vsplat8_at(xf, r3 + q), e, a3)
                    a4 = vfma(vsplat8_at(xf, r4 + q), e, a4)
                    a5 = vfma(vsplat8_at(xf, r5 + q), e, a5)
                    a6 = vfma(vsplat8_at(xf, r6 + q), e, a6)
                    a7 = vfma(vsplat8_at(xf, r7 + q), e, a7)
                    a8 = vfma(vsplat8_at(xf, r8 + q), e, a8)
                vstore8(acc, a, a0); vstore8(acc, a + 8, a1); vstore8(acc, a + 16, a2)  # noqa: E702
                vstore8(acc, a + 24, a3); vstore8(acc, a + 32, a4); vstore8(acc, a + 40, a5)  # noqa: E702
                vstore8(acc, a + 48, a6); vstore8(acc, a + 56, a7); vstore8(acc, a + 64, a8)  # noqa: E702
        vstore8(bias_parts[part], 0, bsum)


@njit(**PJIT)
def _input_grad(dy, Wt, tap_offset, sh, sw, oh, ow, color, colors, dxp):
    # dxp (N, Hp, Wp, 8) += the input gradient of the windows of output rows
    # i = color (mod colors), one output row (b, i) per task: tap t = (ty, tx) of
    # output pixel (i, j) adds sum_f dy[(b, i, j), f] * Wt[t*F + f, :] to the padded
    # pixel (i*sh + ty, j*sw + tx), whose 8 lanes lie at tap_offset[t] from the
    # window's first (tap_offset padded to whole groups of TAP_GROUP taps with zero
    # rows of Wt, which add 0). Rows colors apart have disjoint windows
    # (colors*sh >= kh), so the tasks of one call never add to the same pixel.
    n, hp, wp, _ = dxp.shape
    f_count = dy.shape[1]
    k_count = tap_offset.shape[0]
    dyf = dy.reshape(dy.size)
    wf = Wt.reshape(Wt.size)
    dxf = dxp.reshape(dxp.size)
    rows = (oh - color + colors - 1) // colors
    for g in prange(n * rows):
        b = g // rows
        i = color + (g - b * rows) * colors
        for j in range(ow):
            d = ((b * oh + i) * ow + j) * f_count
            first = ((b * hp + i * sh) * wp + j * sw) * LANES8
            for t in range(0, k_count, TAP_GROUP):
                a0 = vzero8(); a1 = vzero8(); a2 = vzero8()  # noqa: E702
                a3 = vzero8(); a4 = vzero8(); a5 = vzero8()  # noqa: E702
                a6 = vzero8(); a7 = vzero8(); a8 = vzero8()  # noqa: E702
                for f in range(f_count):
                    e = vsplat8_at(dyf, d + f)
                    w0 = (t * f_count + f) * LANES8
                    step = f_count * LANES8          # from tap t to t + 1 in Wt
                    a0 = vfma(e, vload8(wf, w0), a0)
                    a1 = vfma(e, vload8(wf, w0 + step), a1)
                    a2 = vfma(e, vload8(wf, w0 + 2 * step), a2)
                    a3 = vfma(e, vload8(wf, w0 + 3 * step), a3)
                    a4 = vfma(e, vload8(wf, w0 + 4 * step), a4)
                    a5 = vfma(e, vload8(wf, w0 + 5 * step), a5)
                    a6 = vfma(e, vload8(wf, w0 + 6 * step), a6)
                    a7 = vfma(e, vload8(wf, w0 + 7 * step), a7)
                    a8 = vfma(e, vload8(wf, w0 + 8 * step), a8)
                # one after another: a padded tap adds its 0 to tap t's pixel again
                o = first + tap_offset[t]
                vstore8(dxf, o, vadd(vload8(dxf, o), a0))
                o = first + tap_offset[t + 1]
                vstore8(dxf, o, vadd(vload8(dxf, o), a1))
                o = first + tap_offset[t + 2]
                vstore8(dxf, o, vadd(vload8(dxf, o), a2))
                o = first + tap_offset[t + 3]
                vstore8(dxf, o, vadd(vload8(dxf, o), a3))
                o = first + tap_offset[t + 4]
                vstore8(dxf, o, vadd(vload8(dxf, o), a4))
                o = first + tap_offset[t + 5]
                vstore8(dxf, o, vadd(vload8(dxf, o), a5))
                o = first + tap_offset[t + 6]
                vstore8(dxf, o, vadd(vload8(dxf, o), a6))
                o = first + tap_offset[t + 7]
                vstore8(dxf, o, vadd(vload8(dxf, o), a7))
                o = first + tap_offset[t + 8]
                vstore8(dxf, o, vadd(vload8(dxf, o), a8))


_forward_serial = serial_twin(_forward)
_weight_grad_serial = serial_twin(_weight_grad)
_input_grad_serial = serial_twin(_input_grad)


def _lanes(a, f):
    # a (..., f) with zero columns up to LANES8, contiguous float32
    out = np.zeros(a.shape[:-1] + (LANES8,), dtype=np.float32)
    out[..., :f] = a
    return out


def forward(xp, W2, b, kh, kw, sh, sw, oh, ow, relu=False):
    """y (N*OH*OW, F) = the convolution of xp (padded_input's) with the kernel
    matrix W2 (K, F), K = kh*kw*C, plus bias b (F,) or none, through max(., 0)
    when relu."""
    n, _, wp, c = xp.shape
    f = W2.shape[1]
    y = np.empty((n * oh * ow, f), dtype=np.float32)
    bias8 = _lanes(b, f) if b is not None else np.zeros(LANES8, dtype=np.float32)
    serial = y.size * W2.shape[0] < threads.serial_below()
    (_forward_serial if serial else _forward)(xp, _lanes(W2, f), bias8, tap_offsets(c, kh, kw, wp), sh, sw,
                                              oh, ow, f, relu, y)
    return y


def weight_grad(xp, dy, kh, kw, sh, sw, oh, ow, relu_output=None):
    """(dW2 (K, F), db (F,)) for dy = dL/dy (N*OH*OW, F) and xp (padded_input's):
    dW2 = the sum over output pixels of their windows' numbers times their dy, db =
    the column sums of dy, one share per thread, added at the end. With
    relu_output (the forward's y after its ReLU), dy is the gradient after that
    ReLU and is masked as it is read."""
    n, _, wp, c = xp.shape
    f = dy.shape[1]
    k = kh * kw * c
    tap_offset = tap_offsets(c, kh, kw, wp, TAP_GROUP)
    serial = dy.size * k < threads.serial_below()
    nparts = 1 if serial else max(1, min(n * oh, threads.num_threads()))
    parts = np.empty((nparts, len(tap_offset) * LANES8), dtype=np.float32)
    bias_parts = np.empty((nparts, LANES8), dtype=np.float32)
    dq = np.empty((nparts, ow * LANES8), dtype=np.float32)
    masked = relu_output is not None
    dy = contig(dy)
    (_weight_grad_serial if serial else _weight_grad)(xp, dy, contig(relu_output) if masked else dy, masked,
                                                      tap_offset, sh, sw, oh, ow, parts, bias_parts, dq)
    dW2 = parts.reshape(nparts, -1, LANES8)[:, :k, :f].sum(axis=0)
    return dW2, bias_parts[:, :f].sum(axis=0)


def input_grad_applies(c):
    """Does input_grad take dx for x of c channels? At most LANES8."""
    return c <= LANES8


def input_grad(dy, W2, x_shape, kh, kw, sh, sw, pt, pl, oh, ow):
    """dx (N, H, W, C) for dy = dL/dy (N*OH*OW, F) and the kernel matrix W2
    (K, F), K = kh*kw*C, C <= 8 (one pixel's channels are a vector): each output
    pixel's window adds W2[(ty, tx, :), :] @ dy[(i, j), :] to the pixels it covers,
    the output rows in ceil(kh/sh) interleaved sets whose windows do not overlap
    (one parallel call each), into x's pixels zero-padded to 8 lanes (x's own
    array when it has 8 channels and no padding), then cut to x's shape."""
    n, h, w, c = x_shape
    f = W2.shape[1]
    hp, wp = max((oh - 1) * sh + kh, pt + h), max((ow - 1) * sw + kw, pl + w)
    # Wt[t*F + f, :] = W2[t*C:(t + 1)*C, f] for tap t = ty*kw + tx, in lanes, and
    # zero rows for the taps that pad the last group to TAP_GROUP
    taps = kh * kw
    tap_offset = tap_offsets(1, kh, kw, wp, TAP_GROUP) * LANES8
    Wt = np.zeros((len(tap_offset) * f, LANES8), dtype=np.float32)
    Wt[:taps * f, :c] = W2.reshape(taps, c, f).transpose(0, 2, 1).reshape(taps * f, c)
    dxp = np.zeros((n, hp, wp, LANES8), dtype=np.float32)
    colors = -(-kh // sh)
    serial = dxp.size * f < threads.serial_below()
    kernel = _input_grad_serial if serial else _input_grad
    dy = contig(dy)
    for color in range(min(colors, oh)):
        kernel(dy, Wt, tap_offset, sh, sw, oh, ow, color, colors, dxp)
    if (hp, wp, c) == (h, w, LANES8) and pt == pl == 0:
        return dxp
    return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + w, :c])
