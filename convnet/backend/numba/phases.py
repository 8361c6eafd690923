"""Direct convolution on stride phases: the algorithm for small convolutions.

When a convolution has few filters or a short window (F <= 16, or kh*kw*C <= 32
in a window larger than 1x1, e.g. a first layer on 1 or 3 channels), a GEMM over
the im2col matrix is memory-bound: each long, thin row is used for only a few
multiply-adds, and unfolding K = kh*kw*C values per output pixel costs more than
the products.
These kernels unfold nothing. They first split the zero-padded input into stride
phases ("space to depth"): plane (ch, ry, rx) of an image holds the pixels whose
padded row is = ry and column is = rx modulo the strides,

    xq[b, (ch*nry + ry)*nrx + rx, m*wq + q] = x[b, m*sh + ry - pt, q*sw + rx - pl, ch]

(zero outside the image). Tap (ty, tx) = (qy*sh + ry, qx*sw + rx) of output pixel
(i, j) then reads plane (ch, ry, rx) at m = i + qy, q = j + qx, so over the flat
position o = i*wq + j every tap is one contiguous run at a fixed offset:

    y[(b, i, j), f] = bias[f] + sum_taps W2[tap, f] * xq[b, plane(tap), o + qy*wq + qx]
    dW2[tap, f]     = sum_(b, o) xq[b, plane(tap), o + qy*wq + qx] * dy[(b, i, j), f]

The forward pass has two loop orders over the same sums:
- filter-major (`_forward`): the long o axis is innermost, where the vector units
  work on it; positions with j >= ow (wq - ow per output row) are computed and
  dropped, and the block's sums are transposed into y at the end.
- pixel-major (`_forward_pixels`), for 32 filters or more: the filter axis is
  innermost, so each pixel's F sums go straight into its row of y, nine taps per
  pass, and nothing is transposed (on fewer filters the vector is too short).
The weight gradient is filter-major only. The split costs one pass over the
input, and training keeps xq for the weight gradient.

At stride 1 the register tiles (phases_tiles.py) read a second layout of the same
numbers: x's own pixels, zero-padded to the planes' grid (pad_pixels),

    xp[b, m, q, ch] = x[b, m - pt, q - pl, ch] = xq[b, ch, m*wq + q]

A tile broadcasts one number of x at a time, so it needs no contiguous runs, and
padding copies whole rows of pixels where the planes' transpose reads x with a
stride of C numbers (W5's 16 -> 16 layer at batch 32: 0.18 ms instead of 0.40).
pixel_layout decides where every kernel that reads the split is a tile.

W2 is the kernel matrix (kh*kw*C, F) of NumpyOps.conv2d_forward, rows in
(ty, tx, ch) order; dy is dL/dy as the (N*OH*OW, F) matrix.
"""

import functools

import numpy as np
from numba import njit, prange

from . import phases_tiles, threads
from ._jit import JIT, PJIT, contig, serial_twin

# The inner loops below are small functions of their own: compiled alone, LLVM
# vectorizes them (measured: the forward kernel took 8.4 ms for W3's first layer
# at batch 128 with these loops written inline in the parallel loop body, where
# they stayed scalar, 3.2 ms as calls of two filters each, and 2.0 ms with four
# filters per call).
#: fastmath without its no-NaN and no-inf assumptions: the sums may be reordered
#: and fused (what vectorizes them), but a NaN keeps its meaning, so the fused ReLU
#: keeps a NaN from a diverged step visible, as NumpyOps.relu does (with full
#: fastmath, LLVM may fold its NaN test away once the helper is inlined).
FAST_MATH = {"reassoc", "contract", "nsz", "arcp", "afn"}
FAST = dict(JIT, fastmath=FAST_MATH)

#: flat positions per block of output rows (the accumulators stay in L1/L2)
BLOCK_POSITIONS = 512


def is_small(k, f, taps):
    """True when a convolution with window length k = kh*kw*C (taps = kh*kw) and
    f filters runs faster here than as im2col + GEMM (see the module docstring).
    A 1x1 window is small only by its filters: its im2col is a plain (strided)
    copy of x, not a K-fold unfolding, so a GEMM is not held back by it (measured
    on W5's 1x1 stride-2 shortcuts, 16 -> 32 and 32 -> 64 channels: the GEMM path
    took 0.4-0.6 of this one's time, forward and backward)."""
    return f <= 16 or (k <= 32 and taps > 1)


@functools.lru_cache(maxsize=256)
def plane_geometry(c, kh, kw, sh, sw, oh, ow):
    """(n_planes, hq, wq, tap_plane (K,), tap_offset (K,)) of the phase split, taps in
    W2's row order (ty, tx, ch); hq has one spare row for the reads of dropped positions.
    Cached (building the tables costs ~17 us, a third of a batch-1 convolution);
    the arrays are shared, so nothing may write to them."""
    nry, nrx = min(sh, kh), min(sw, kw)
    wq = ow + (kw - 1) // sw
    hq = oh + (kh - 1) // sh + 1
    ty, tx, ch = (a.ravel() for a in np.meshgrid(np.arange(kh), np.arange(kw), np.arange(c), indexing="ij"))
    tap_plane = (ch * nry + ty % sh) * nrx + tx % sw
    tap_offset = (ty // sh) * wq + tx // sw
    return c * nry * nrx, hq, wq, tap_plane.astype(np.int64), tap_offset.astype(np.int64)


@functools.lru_cache(maxsize=256)
def tap_starts(c, kh, kw, sh, sw, oh, ow, pixels):
    """(tap_start (K,), step) for the register tiles (phases_tiles.py): tap t of flat
    position o lies at tap_start[t] + o*step among an image's numbers in the split.
    Phase planes: plane(t)*hq*wq + offset(t), step 1. Padded pixels (stride 1, see
    pixel_layout): the plane is the channel and each flat position a pixel of C
    numbers: offset(t)*C + ch(t), step C. Cached and shared, as plane_geometry."""
    _, hq, wq, tap_plane, tap_offset = plane_geometry(c, kh, kw, sh, sw, oh, ow)
    if pixels:
        return tap_offset * c + tap_plane, c
    return tap_plane * (hq * wq) + tap_offset, 1


def pixel_layout(dtype, f, sh, sw, kept):
    """Is the split of this convolution (f filters, strides sh, sw) x's own pixels,
    zero-padded (pad_pixels), rather than its phase planes (phase_split)? At stride
    1, where every kernel that reads the split is a register tile
    (phases_tiles.reads_pixels: with 512-bit vectors the forward for 16 or a
    multiple of 32 float32 filters and, when the split is kept for the weight
    gradient, the weight gradient for 16 or 32; on the narrow tiles, any multiple
    of 16 filters).
    A tile broadcasts one number
    at a time, so it needs no contiguous runs; padding copies whole rows of pixels,
    where the phase planes' transpose reads x with a stride of C numbers."""
    return sh == sw == 1 and np.dtype(dtype) == np.float32 and phases_tiles.reads_pixels(f, kept)


def rows_per_block(wq, n=None, oh=None):
    """Output rows per block of the kernels: BLOCK_POSITIONS flat positions, or
    fewer when n images of oh output rows would not give every thread two blocks
    (a batch-1 32x32 layer on 2 threads: 4 blocks of 8 rows, where 3 blocks of 15
    left one thread doing two while the other waited)."""
    rows = max(1, BLOCK_POSITIONS // wq)
    if n is not None and oh is not None:
        rows = max(1, min(rows, -(-n * oh // (2 * threads.num_threads()))))
    return rows


@njit(**PJIT)
def _space_to_depth(x, sh, sw, pt, pl, nry, nrx, hq, wq, xq):
    # xq (N, C*nry*nrx, hq*wq) from x (N, H, W, C), as defined above; one (b, m) row per task.
    n, h, w, c = x.shape
    for t in prange(n * hq):
        b = t // hq
        m = t - b * hq
        for ry in range(nry):
            yy = m * sh + ry - pt
            inside = 0 <= yy < h
            for rx in range(nrx):
                # columns q with 0 <= q*sw + rx - pl < w lie inside the image
                lo = min(wq, max(0, (pl - rx + sw - 1) // sw))
                hi = max(lo, min(wq, (w - 1 + pl - rx) // sw + 1))
                for ch in range(c):
                    row = xq[b, (ch * nry + ry) * nrx + rx, m * wq:(m + 1) * wq]
                    if not inside:
                        row[:] = 0
                        continue
                    for q in range(lo):
                        row[q] = 0
                    for q in range(lo, hi):
                        row[q] = x[b, yy, q * sw + rx - pl, ch]
                    for q in range(hi, wq):
                        row[q] = 0


@njit(**PJIT)
def _pad_pixels(x, pt, pl, xp):
    # xp (N, hq, wq, C): x (N, H, W, C) with pt rows of zeros above it and pl columns
    # on its left, and zeros for the rest of each row and the rows below; one (b, m)
    # row per task, each a run of wq*C numbers of which x fills one stretch
    n, h, w, c = x.shape
    _, hq, wq, _ = xp.shape
    lo = min(wq, pl) * c
    hi = min(wq, pl + w) * c
    rows = xp.reshape(n * hq, wq * c)
    for t in prange(n * hq):
        b = t // hq
        yy = t - b * hq - pt
        row = rows[t]
        if 0 <= yy < h:
            src = x[b, yy].reshape(w * c)
            for q in range(lo):
                row[q] = 0
            for q in range(lo, hi):
                row[q] = src[q - lo]
            for q in range(hi, wq * c):
                row[q] = 0
        else:
            for q in range(wq * c):
                row[q] = 0


@njit(**JIT)
def _tap_run(xq, b, tap_plane, tap_offset, o0, length, t):
    # the run of tap t over flat positions [o0, o0 + length) of image b
    start = o0 + tap_offset[t]
    return xq[b, tap_plane[t], start:start + length]


@njit(**JIT)
def _store_block(acc, y, dst0, rows, ow, wq, relu):
    # y[dst0 + r*ow + j, f] = acc[f, r*wq + j] for the block's rows r and j < ow (the
    # filters contiguous in y), through max(., 0) when relu; a NaN stays NaN, as in
    # NumpyOps.relu (nothing here assumes NaN-free values: see FAST_MATH).
    f_count = acc.shape[0]
    zero = acc.dtype.type(0)
    for r in range(rows):
        src = r * wq
        dst = dst0 + r * ow
        if relu:
            for j in range(ow):
                for f in range(f_count):
                    v = acc[f, src + j]
                    y[dst + j, f] = v if (v > zero or v != v) else zero
        else:
            for j in range(ow):
                for f in range(f_count):
                    y[dst + j, f] = acc[f, src + j]


@njit(**JIT)
def _relu_rows(out):
    # out = max(out, 0) in place, NaN kept (as NumpyOps.relu)
    zero = out.dtype.type(0)
    for j in range(out.shape[0]):
        o = out[j]
        for f in range(out.shape[1]):
            v = o[f]
            o[f] = v if (v > zero or v != v) else zero


@njit(**JIT)
def _gather_block(dy, relu_output, dyq, src0, rows, ow, wq, masked):
    # dyq[f, r*wq + j] = dy[src0 + r*ow + j, f] for the block's rows r, zero at the
    # dropped positions j >= ow; when masked, the gradient before a ReLU whose output
    # was relu_output: dy where relu_output > 0, else 0. (NumpyOps.relu_backward's
    # dy * (y > 0) makes a NaN in dy NaN even where y <= 0; here, as in PyTorch's
    # threshold_backward, the gradient there is 0.)
    f_count = dyq.shape[0]
    zero = dyq.dtype.type(0)
    for r in range(rows):
        dst = r * wq
        src = src0 + r * ow
        for j in range(ow):
            for f in range(f_count):
                # dy loaded either way, then replaced (measured on W4's first layer,
                # batch 32: 1.4 ms; written as `dy if y > 0 else 0`, likely a branch
                # that mispredicts on every other ReLU output, 2.3 ms)
                d = dy[src + j, f]
                if masked and not relu_output[src + j, f] > zero:
                    d = zero
                dyq[f, dst + j] = d
        for j in range(ow, wq):
            for f in range(f_count):
                dyq[f, dst + j] = zero


@njit(**FAST)
def _madd_9taps_2filters(acc, f, W2, t, s0, s1, s2, s3, s4, s5, s6, s7, s8, length):
    # acc[f + q] += sum_(u < 9) W2[t + u, f + q] * s_u, q = 0, 1: eighteen
    # multiply-adds for each load and store of the two sums, and the nine runs
    # and eighteen weights stay in registers (measured on W5's 16 -> 16 layer at
    # batch 128: 5.0-5.3 ms where three taps and four filters per pass took 6.0-6.5)
    a0 = acc[f]
    a1 = acc[f + 1]
    u0, u1, u2 = W2[t, f], W2[t + 1, f], W2[t + 2, f]
    u3, u4, u5 = W2[t + 3, f], W2[t + 4, f], W2[t + 5, f]
    u6, u7, u8 = W2[t + 6, f], W2[t + 7, f], W2[t + 8, f]
    g = f + 1
    v0, v1, v2 = W2[t, g], W2[t + 1, g], W2[t + 2, g]
    v3, v4, v5 = W2[t + 3, g], W2[t + 4, g], W2[t + 5, g]
    v6, v7, v8 = W2[t + 6, g], W2[t + 7, g], W2[t + 8, g]
    for p in range(length):
        x0, x1, x2 = s0[p], s1[p], s2[p]
        x3, x4, x5 = s3[p], s4[p], s5[p]
        x6, x7, x8 = s6[p], s7[p], s8[p]
        a0[p] += ((u0 * x0 + u1 * x1 + u2 * x2) + (u3 * x3 + u4 * x4 + u5 * x5)
                  + (u6 * x6 + u7 * x7 + u8 * x8))
        a1[p] += ((v0 * x0 + v1 * x1 + v2 * x2) + (v3 * x3 + v4 * x4 + v5 * x5)
                  + (v6 * x6 + v7 * x7 + v8 * x8))


@njit(**FAST)
def _madd_9taps(a0, W2, t, f, s0, s1, s2, s3, s4, s5, s6, s7, s8, length):
    # a0 += sum_(u < 9) W2[t + u, f] * s_u: the last filter of an odd count
    u0, u1, u2 = W2[t, f], W2[t + 1, f], W2[t + 2, f]
    u3, u4, u5 = W2[t + 3, f], W2[t + 4, f], W2[t + 5, f]
    u6, u7, u8 = W2[t + 6, f], W2[t + 7, f], W2[t + 8, f]
    for p in range(length):
        a0[p] += ((u0 * s0[p] + u1 * s1[p] + u2 * s2[p]) + (u3 * s3[p] + u4 * s4[p] + u5 * s5[p])
                  + (u6 * s6[p] + u7 * s7[p] + u8 * s8[p]))


@njit(**FAST)
def _madd_3taps_4filters(acc, f, W2, t, s0, s1, s2, length):
    # acc[f + q] += W2[t, f + q]*s0 + W2[t + 1, f + q]*s1 + W2[t + 2, f + q]*s2, q = 0..3
    a0 = acc[f]
    a1 = acc[f + 1]
    a2 = acc[f + 2]
    a3 = acc[f + 3]
    w00, w01, w02 = W2[t, f], W2[t + 1, f], W2[t + 2, f]
    w10, w11, w12 = W2[t, f + 1], W2[t + 1, f + 1], W2[t + 2, f + 1]
    w20, w21, w22 = W2[t, f + 2], W2[t + 1, f + 2], W2[t + 2, f + 2]
    w30, w31, w32 = W2[t, f + 3], W2[t + 1, f + 3], W2[t + 2, f + 3]
    for p in range(length):
        v0 = s0[p]
        v1 = s1[p]
        v2 = s2[p]
        a0[p] += w00 * v0 + w01 * v1 + w02 * v2
        a1[p] += w10 * v0 + w11 * v1 + w12 * v2
        a2[p] += w20 * v0 + w21 * v1 + w22 * v2
        a3[p] += w30 * v0 + w31 * v1 + w32 * v2


@njit(**FAST)
def _madd_3taps(a0, s0, s1, s2, w0, w1, w2, length):
    for p in range(length):
        a0[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p]


@njit(**FAST)
def _madd_1tap(a0, s0, w0, length):
    for p in range(length):
        a0[p] += w0 * s0[p]


@njit(**FAST)
def _dot_3taps_4filters(acc, t, f, r0, r1, r2, dyq, length, zero):
    # acc[t + u, f + q] += run_u . dyq[f + q] over [0, length), u = 0..2, q = 0..3:
    # twelve sums from seven streams
    d0 = dyq[f]
    d1 = dyq[f + 1]
    d2 = dyq[f + 2]
    d3 = dyq[f + 3]
    s00 = s01 = s02 = s03 = zero
    s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = zero
    for p in range(length):
        v0 = r0[p]
        v1 = r1[p]
        v2 = r2[p]
        e0 = d0[p]
        e1 = d1[p]
        e2 = d2[p]
        e3 = d3[p]
        s00 += v0 * e0
        s01 += v0 * e1
        s02 += v0 * e2
        s03 += v0 * e3
        s10 += v1 * e0
        s11 += v1 * e1
        s12 += v1 * e2
        s13 += v1 * e3
        s20 += v2 * e0
        s21 += v2 * e1
        s22 += v2 * e2
        s23 += v2 * e3
    acc[t, f] += s00
    acc[t, f + 1] += s01
    acc[t, f + 2] += s02
    acc[t, f + 3] += s03
    acc[t + 1, f] += s10
    acc[t + 1, f + 1] += s11
    acc[t + 1, f + 2] += s12
    acc[t + 1, f + 3] += s13
    acc[t + 2, f] += s20
    acc[t + 2, f + 1] += s21
    acc[t + 2, f + 2] += s22
    acc[t + 2, f + 3] += s23


@njit(**FAST)
def _dot(run, d0, length, zero):
    # run . d0 over [0, length); zero: 0 in the arrays' dtype, so float32 sums stay float32
    s0 = zero
    for p in range(length):
        s0 += run[p] * d0[p]
    return s0


@njit(**FAST)
def _sum(d0, length, zero):
    # d0[0] + ... + d0[length - 1]
    s0 = zero
    for p in range(length):
        s0 += d0[p]
    return s0


@njit(**PJIT, fastmath=FAST_MATH)
def _forward(xq, W2, bias, tap_plane, tap_offset, oh, ow, wq, rows_per_block, relu, y):
    # y[(b, i, j), f] for blocks of `rows_per_block` output rows: acc[f, o - o0]
    # holds the sums over the block's flat positions. Nine taps and two filters per
    # pass over the block (the last of an odd number of filters alone), so each
    # load of acc serves nine multiply-adds; the taps left over three taps and four
    # filters per pass (one filter at a time for the remainder), then one tap at a
    # time.
    # relu: y = max(sums, 0), applied as the block is stored.
    n = xq.shape[0]
    k_count, f_count = W2.shape
    nblocks = (oh + rows_per_block - 1) // rows_per_block
    block = rows_per_block * wq
    for g in prange(n * nblocks):
        b = g // nblocks
        i0 = (g - b * nblocks) * rows_per_block
        i1 = min(oh, i0 + rows_per_block)
        o0 = i0 * wq
        length = (i1 - i0) * wq
        acc = np.empty((f_count, block), dtype=y.dtype)
        for f in range(f_count):
            bf = bias[f]
            for p in range(length):
                acc[f, p] = bf
        k9 = k_count - k_count % 9
        f2 = f_count - f_count % 2
        for t in range(0, k9, 9):
            s0 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t)
            s1 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 1)
            s2 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 2)
            s3 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 3)
            s4 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 4)
            s5 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 5)
            s6 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 6)
            s7 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 7)
            s8 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 8)
            for f in range(0, f2, 2):
                _madd_9taps_2filters(acc, f, W2, t, s0, s1, s2, s3, s4, s5, s6, s7, s8, length)
            if f2 < f_count:
                _madd_9taps(acc[f2], W2, t, f2, s0, s1, s2, s3, s4, s5, s6, s7, s8, length)
        k3 = k_count - (k_count - k9) % 3
        f4 = f_count - f_count % 4
        for t in range(k9, k3, 3):
            s0 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t)
            s1 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 1)
            s2 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 2)
            for f in range(0, f4, 4):
                _madd_3taps_4filters(acc, f, W2, t, s0, s1, s2, length)
            for f in range(f4, f_count):
                _madd_3taps(acc[f], s0, s1, s2, W2[t, f], W2[t + 1, f], W2[t + 2, f], length)
        for t in range(k3, k_count):
            s0 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t)
            for f in range(f_count):
                _madd_1tap(acc[f], s0, W2[t, f], length)
        # keep the positions j < ow, pixel by pixel with the filters contiguous in y
        _store_block(acc, y, (b * oh + i0) * ow, i1 - i0, ow, wq, relu)


@njit(**FAST)
def _pixels_9taps(out, W2, t, s0, s1, s2, s3, s4, s5, s6, s7, s8, ow):
    # out[j, f] += sum_(u < 9) W2[t + u, f] * s_u[j]: one output row, nine taps at once,
    # the f axis innermost (contiguous in out and in W2's rows)
    f_count = out.shape[1]
    for j in range(ow):
        v0, v1, v2 = s0[j], s1[j], s2[j]
        v3, v4, v5 = s3[j], s4[j], s5[j]
        v6, v7, v8 = s6[j], s7[j], s8[j]
        o = out[j]
        for f in range(f_count):
            o[f] += ((W2[t, f] * v0 + W2[t + 1, f] * v1 + W2[t + 2, f] * v2)
                     + (W2[t + 3, f] * v3 + W2[t + 4, f] * v4 + W2[t + 5, f] * v5)
                     + (W2[t + 6, f] * v6 + W2[t + 7, f] * v7 + W2[t + 8, f] * v8))


@njit(**FAST)
def _pixels_1tap(out, W2, t, s0, ow):
    # out[j, f] += W2[t, f] * s0[j]
    f_count = out.shape[1]
    for j in range(ow):
        v0 = s0[j]
        o = out[j]
        for f in range(f_count):
            o[f] += W2[t, f] * v0


@njit(**PJIT, fastmath=FAST_MATH)
def _forward_pixels(xq, W2, bias, tap_plane, tap_offset, oh, ow, wq, relu, y):
    # y[(b, i, j), :] one output row (b, i) per task: bias, then nine taps per pass
    # over the row's ow x F sums (they stay in L1), then the taps left over, then
    # max(., 0) when relu.
    n = xq.shape[0]
    k_count, f_count = W2.shape
    rows = y.reshape(n * oh, ow, f_count)
    k9 = k_count - k_count % 9
    for g in prange(n * oh):
        b = g // oh
        o0 = (g - b * oh) * wq
        out = rows[g]
        for j in range(ow):
            for f in range(f_count):
                out[j, f] = bias[f]
        for t in range(0, k9, 9):
            _pixels_9taps(out, W2, t,
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 1),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 2),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 3),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 4),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 5),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 6),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 7),
                          _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t + 8), ow)
        for t in range(k9, k_count):
            _pixels_1tap(out, W2, t, _tap_run(xq, b, tap_plane, tap_offset, o0, ow, t), ow)
        if relu:
            _relu_rows(out)


@njit(**PJIT, fastmath=FAST_MATH)
def _weight_grad(xq, dy, relu_output, masked, tap_plane, tap_offset, oh, ow, wq, rows_per_block, parts,
                 bias_parts):
    # parts[t] = thread t's share of dW2[tap, f] = sum over positions of
    # xq[b, plane(tap), o + offset(tap)] * dy[(b, i, j), f]; dW2 = parts.sum(0).
    # dyq[f, o - o0] is the block's dy on the flat grid, zero at dropped positions
    # (when masked, the gradient before the ReLU whose output was relu_output).
    # bias_parts[t] = thread t's share of db[f] = sum of dy[:, f], summed from each
    # block's dyq while it is in cache (one read of dy for both).
    n = xq.shape[0]
    nparts, k_count, f_count = parts.shape
    nblocks = (oh + rows_per_block - 1) // rows_per_block
    jobs = n * nblocks
    block = rows_per_block * wq
    zero = np.zeros(1, dtype=parts.dtype)[0]
    f4 = f_count - f_count % 4
    for part in prange(nparts):
        dyq = np.empty((f_count, block), dtype=parts.dtype)
        acc = parts[part]
        acc[:, :] = 0
        bsum = bias_parts[part]
        bsum[:] = 0
        for g in range(part * jobs // nparts, (part + 1) * jobs // nparts):
            b = g // nblocks
            i0 = (g - b * nblocks) * rows_per_block
            i1 = min(oh, i0 + rows_per_block)
            o0 = i0 * wq
            length = (i1 - i0) * wq
            _gather_block(dy, relu_output, dyq, (b * oh + i0) * ow, i1 - i0, ow, wq, masked)
            for f in range(f_count):             # the block's dy, now in cache (zeros count nothing)
                bsum[f] += _sum(dyq[f], length, zero)
            k3 = k_count - k_count % 3
            for t in range(0, k3, 3):
                r0 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t)
                r1 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 1)
                r2 = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t + 2)
                for f in range(0, f4, 4):
                    _dot_3taps_4filters(acc, t, f, r0, r1, r2, dyq, length, zero)
                for f in range(f4, f_count):
                    acc[t, f] += _dot(r0, dyq[f], length, zero)
                    acc[t + 1, f] += _dot(r1, dyq[f], length, zero)
                    acc[t + 2, f] += _dot(r2, dyq[f], length, zero)
            for t in range(k3, k_count):        # the taps left over after the groups of three
                run = _tap_run(xq, b, tap_plane, tap_offset, o0, length, t)
                for f in range(f_count):
                    acc[t, f] += _dot(run, dyq[f], length, zero)


_space_to_depth_serial = serial_twin(_space_to_depth)
_pad_pixels_serial = serial_twin(_pad_pixels)
_forward_serial = serial_twin(_forward)
_forward_pixels_serial = serial_twin(_forward_pixels)
_weight_grad_serial = serial_twin(_weight_grad)


def split(x, kh, kw, sh, sw, pt, pl, oh, ow, pixels):
    """The input as the kernels read it: padded pixels (pad_pixels) when pixels
    (pixel_layout's answer), else phase planes (phase_split)."""
    if pixels:
        return pad_pixels(x, kh, kw, pt, pl, oh, ow)
    return phase_split(x, kh, kw, sh, sw, pt, pl, oh, ow)


def split_shape(n, c, kh, kw, sh, sw, oh, ow, pixels):
    """The shape `split` gives: (N, hq, wq, C) or (N, planes, hq*wq)."""
    n_planes, hq, wq, _, _ = plane_geometry(c, kh, kw, sh, sw, oh, ow)
    return (n, hq, wq, c) if pixels else (n, n_planes, hq * wq)


def pad_pixels(x, kh, kw, pt, pl, oh, ow):
    """xp (N, hq, wq, C): contiguous x (N, H, W, C) of a stride-1 convolution,
    zero-padded to the grid of the phase planes (plane_geometry's hq, wq), pixels
    and channels in x's order."""
    _, hq, wq, _, _ = plane_geometry(x.shape[3], kh, kw, 1, 1, oh, ow)
    return zero_padded(x, pt, pl, hq, wq)


def zero_padded(x, pt, pl, hp, wp):
    """xp (N, hp, wp, C): contiguous x (N, H, W, C) with pt rows of zeros above it
    and pl columns on its left, zeros (or nothing of x) past its bottom and right
    edges up to hp rows and wp columns."""
    n, _, _, c = x.shape
    xp = np.empty((n, hp, wp, c), dtype=x.dtype)
    (_pad_pixels_serial if xp.size < threads.serial_below() else _pad_pixels)(x, pt, pl, xp)
    return xp


def phase_split(x, kh, kw, sh, sw, pt, pl, oh, ow):
    """xq (N, C*nry*nrx, hq*wq): contiguous x (N, H, W, C) split into zero-padded
    stride phases (see plane_geometry)."""
    n, _, _, c = x.shape
    n_planes, hq, wq, _, _ = plane_geometry(c, kh, kw, sh, sw, oh, ow)
    xq = np.empty((n, n_planes, hq * wq), dtype=x.dtype)
    # a strided gather, slower per element than the element-wise kernels the
    # threshold was measured on: it goes parallel four times sooner
    kernel = _space_to_depth_serial if 4 * xq.size < threads.serial_below() else _space_to_depth
    kernel(x, sh, sw, pt, pl, min(sh, kh), min(sw, kw), hq, wq, xq)
    return xq


#: filters from which the pixel-major forward beats the filter-major one (measured
#: at batch 128: 1 channel -> 32 filters at 28x28 0.74 ms instead of 1.20, 3 -> 32
#: at 32x32 2.50 instead of 2.93; but 3 -> 16 1.67 instead of 1.33, 16 -> 16 7.9
#: instead of 5.7, 3 -> 8 at stride 2 11.0 instead of 2.4)
PIXEL_MAJOR_FILTERS = 32


def forward(xq, W2, bias, c, kh, kw, sh, sw, oh, ow, y, relu=False):
    """y (N*OH*OW, F) = the convolution of the split input xq (`split`'s, either
    layout) with the kernel matrix W2 (K, F) plus bias (F,), written into y, through
    max(., 0) when relu: in register tiles (phases_tiles.py) for 16 or a multiple of
    32 float32 filters where the CPU has 512-bit vectors, or a multiple of 16 on the
    narrow tiles (the only kernels that read padded pixels), else pixel-major from PIXEL_MAJOR_FILTERS filters on and
    filter-major below."""
    serial = y.size * W2.shape[0] < threads.serial_below()
    n = xq.shape[0]
    pixels = xq.ndim == 4
    if pixels:
        W2, bias = contig(W2), contig(bias)
    if pixels or phases_tiles.forward_applies(xq, W2, bias, y):
        tap_start, step = tap_starts(c, kh, kw, sh, sw, oh, ow, pixels)
        wq = plane_geometry(c, kh, kw, sh, sw, oh, ow)[2]
        phases_tiles.forward(xq.reshape(n, -1), W2, bias, tap_start, step, oh, ow, wq, relu, y, serial)
        return
    _, _, wq, tap_plane, tap_offset = plane_geometry(c, kh, kw, sh, sw, oh, ow)
    if W2.shape[1] >= PIXEL_MAJOR_FILTERS:
        (_forward_pixels_serial if serial else _forward_pixels)(xq, W2, bias, tap_plane, tap_offset, oh, ow, wq,
                                                                relu, y)
    else:
        (_forward_serial if serial else _forward)(xq, W2, bias, tap_plane, tap_offset, oh, ow, wq,
                                                  rows_per_block(wq, None if serial else n, oh),
                                                  relu, y)


def weight_grad(xq, dy, c, kh, kw, sh, sw, oh, ow, k, relu_output=None):
    """(dW2 (K, F), db (F,)): dW2 = sum over positions of tap runs times dy
    (N*OH*OW, F), db = the column sums of dy, from one pass over dy; one partial
    sum per thread, added at the end. xq is `split`'s (padded pixels only where
    the tiles take every kernel: pixel_layout). With relu_output (the forward's y after its
    ReLU, (N*OH*OW, F)), dy is the gradient after that ReLU and is masked as it is
    read (NumpyOps.relu_backward)."""
    _, _, wq, tap_plane, tap_offset = plane_geometry(c, kh, kw, sh, sw, oh, ow)
    per_block = rows_per_block(wq)
    n = xq.shape[0]
    jobs = n * -(-oh // per_block)
    serial = dy.size * k < threads.serial_below()
    nparts = 1 if serial else max(1, min(jobs, threads.num_threads()))
    parts = np.empty((nparts, k, dy.shape[1]), dtype=dy.dtype)
    bias_parts = np.empty((nparts, dy.shape[1]), dtype=dy.dtype)
    masked = relu_output is not None
    pixels = xq.ndim == 4
    if pixels:          # only the tiles read padded pixels: the arrays as they take them
        dy = contig(dy)
        relu_output = contig(relu_output) if masked else None
    mask = relu_output if masked else dy
    if pixels or phases_tiles.weight_grad_applies(xq, dy, mask):
        tap_start, step = tap_starts(c, kh, kw, sh, sw, oh, ow, pixels)
        phases_tiles.weight_grad(xq.reshape(n, -1), dy, mask, masked, tap_start, step, oh, ow, wq, per_block,
                                   parts, bias_parts, serial)
    else:
        (_weight_grad_serial if serial else _weight_grad)(xq, dy, mask, masked, tap_plane, tap_offset, oh, ow, wq,
                                                          per_block, parts, bias_parts)
    if nparts == 1:
        return parts[0], bias_parts[0]
    return parts.sum(axis=0), bias_parts.sum(axis=0)
