"""NumbaOps: the hot kernel pairs of NumpyOps, jitted for the CPU with Numba.

Each method here computes the same function as the NumpyOps method of the same
name (convnet/backend/numpy_ops.py, the readable reference; read that first) and
says so in its docstring. tests/test_backend_numba.py checks every override
against the reference in float32 and float64 over a grid of shapes.

How the kernels differ from the reference, and why:
- No padded copies. The reference pads x with np.pad and slices sub-grids; here
  each kernel tests the bounds of every window tap and reads zero (or -inf for
  max pooling) outside the image, so no padded array is ever allocated.
- Gather instead of scatter. col2im and the pooling backward passes compute each
  input pixel's gradient by visiting the windows that cover it, in the same
  (dy, dx) order the reference adds them in. Each output element is then written
  by one thread only, so rows of the batch can be processed in parallel with no
  races, and the sums are added in the reference's order.
- Parallel loops (prange) run over batch rows (n, output row); the matrix
  products stay with numpy's BLAS (np.dot on contiguous arrays), which is far
  faster than any loop nest written here.
- fastmath is used only where reassociation cannot move a result beyond float
  rounding (elementwise updates); reductions that tests compare exactly do not
  use it.

Thread settings (threading layer, Numba threads vs OpenBLAS threads) are chosen
in convnet/backend/threads.py before the first parallel kernel runs.
"""

import functools
import math
import os
import threading
import types

import numpy as np

from . import blas
from . import threads as _threads

_threads.configure()

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402  (threads.configure() must run first)

from .numba_batchnorm import BatchNormKernels  # noqa: E402
from .numpy_ops import NumpyOps, output_size  # noqa: E402

# Kernels are compiled on first use for each dtype and cached on disk
# (cache=True), so a new process pays only the cache load.
_jit = dict(cache=True, nogil=True)
_pjit = dict(cache=True, nogil=True, parallel=True)


# ---------------------------------------------------------------------- im2col
@njit(**_pjit)
def _im2col_narrow(x, kh, kw, sh, sw, pt, pl, oh, ow, cols):
    # Narrow channels (c < 8). Row (b, i, j) of cols, tap row dy: the kw*c values x[b, yy, xx0:xx0+kw, :]
    # are contiguous in x (channels-last), so a window's tap row is one run of
    # kw*c copies when it lies inside the image; only border windows test taps.
    n, h, w, c = x.shape
    span = kw * c
    # windows j in [j_lo, j_hi) lie wholly inside the image horizontally
    j_lo = min(ow, (pl + sw - 1) // sw)
    j_hi = max(j_lo, min(ow, (w + pl - kw) // sw + 1))
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        for dy in range(kh):
            yy = i * sh + dy - pt
            col0 = dy * span
            if yy < 0 or yy >= h:
                for j in range(ow):
                    row = r * ow + j
                    for t in range(span):
                        cols[row, col0 + t] = 0
                continue
            for j in range(ow):
                row = r * ow + j
                x0 = j * sw - pl
                if j_lo <= j < j_hi:
                    for dx in range(kw):
                        for ch in range(c):
                            cols[row, col0 + dx * c + ch] = x[b, yy, x0 + dx, ch]
                else:
                    for dx in range(kw):
                        xx = x0 + dx
                        if 0 <= xx < w:
                            for ch in range(c):
                                cols[row, col0 + dx * c + ch] = x[b, yy, xx, ch]
                        else:
                            for ch in range(c):
                                cols[row, col0 + dx * c + ch] = 0


@njit(**_pjit)
def _zero(a):
    f = a.reshape(-1)
    for k in prange(f.size):
        f[k] = 0


@njit(**_pjit)
def _col2im_tap_row(cols, n, h, w, c, kw, sh, sw, pt, pl, oh, ow, dy, out):
    # Adds tap row dy of every window to out. For a fixed dy, windows of
    # different output rows i land on different input rows yy = i*sh + dy - pt,
    # so the (b, i) loop runs in parallel without races; taps are added in the
    # reference's (dy, dx) order, so every pixel's sum is formed in the same order.
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        yy = i * sh + dy - pt
        if yy < 0 or yy >= h:
            continue
        for dx in range(kw):
            base = (dy * kw + dx) * c
            for j in range(ow):
                xx = j * sw + dx - pl
                if 0 <= xx < w:
                    row = r * ow + j
                    for ch in range(c):
                        out[b, yy, xx, ch] += cols[row, base + ch]


def _col2im_narrow(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out):
    """out (n, h, w, c) = col2im(cols): zero, then one parallel pass per tap row."""
    _zero(out)
    for dy in range(kh):
        _col2im_tap_row(cols, n, h, w, c, kw, sh, sw, pt, pl, oh, ow, dy, out)


# Which loop order wins depends on the channel count (measured: with c >= 8 the
# per-tap runs are long enough, with few channels the per-tap-row layout wins).
WIDE_CHANNELS = 8


def _im2col(x, kh, kw, sh, sw, pt, pl, oh, ow, cols, serial=False):
    """cols (N*OH*OW, kh*kw*C) = im2col(x), written into `cols`; serial=True runs
    on the calling thread only (for jobs that already run one per core)."""
    if x.shape[3] >= WIDE_CHANNELS:
        kernel = _im2col_wide_serial if serial else _im2col_wide
    else:
        kernel = _im2col_narrow_serial if serial else _im2col_narrow
    kernel(x, kh, kw, sh, sw, pt, pl, oh, ow, cols)


def _col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out, serial=False):
    """out (n, h, w, c) = col2im(cols), the adjoint of _im2col; serial as in _im2col."""
    if c >= WIDE_CHANNELS:
        kernel = _col2im_wide_serial if serial else _col2im_wide
        kernel(cols, oh, ow, _covering_windows(h, pt, kh, sh, oh), _covering_windows(w, pl, kw, sw, ow), out)
    elif serial:
        out[...] = 0
        for dy in range(kh):
            _col2im_tap_row_serial(cols, n, h, w, c, kw, sh, sw, pt, pl, oh, ow, dy, out)
    else:
        _col2im_narrow(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out)


@njit(**_pjit)
def _im2col_wide(x, kh, kw, sh, sw, pt, pl, oh, ow, cols):
    # Wide channels: one window at a time, a run of c copies per tap.
    n, h, w, c = x.shape
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        for j in range(ow):
            row = (r * ow + j)
            for dy in range(kh):
                yy = i * sh + dy - pt
                for dx in range(kw):
                    xx = j * sw + dx - pl
                    base = (dy * kw + dx) * c
                    if 0 <= yy < h and 0 <= xx < w:
                        for ch in range(c):
                            cols[row, base + ch] = x[b, yy, xx, ch]
                    else:
                        for ch in range(c):
                            cols[row, base + ch] = 0


@functools.lru_cache(maxsize=256)
def _covering_windows(size, pad, taps, stride, n_windows):
    """Table (size, taps): entry [pos, t] is the index of the window whose tap t
    reaches position pos of the input along one axis (pos + pad = window * stride + t),
    or -1 when no window does. The gather kernels look windows up here instead of
    dividing by the stride for every pixel and tap (an integer division costs
    tens of cycles; the table is a few hundred entries). Cached and shared: read only."""
    reach = np.arange(size)[:, None] + pad - np.arange(taps)[None, :]
    window = reach // stride
    covered = (reach >= 0) & (reach % stride == 0) & (window < n_windows)
    return np.where(covered, window, -1).astype(np.int64)


@njit(**_pjit)
def _col2im_wide(cols, oh, ow, cover_y, cover_x, out):
    # Wide channels: gather, each input pixel from the windows that cover it.
    # out[b, yy, xx, :] = sum over windows (i, j) and taps (dy, dx) with
    # i*sh + dy - pt == yy and j*sw + dx - pl == xx of cols[(b, i, j), (dy, dx, :)],
    # visited in (dy, dx) order like the reference's loop of += over offsets.
    # cover_y (h, kh) and cover_x (w, kw) give the window i, j of each tap (-1: none).
    n, h, w, c = out.shape
    kh = cover_y.shape[1]
    kw = cover_x.shape[1]
    for r in prange(n * h):
        b = r // h
        yy = r - b * h
        for xx in range(w):
            for ch in range(c):
                out[b, yy, xx, ch] = 0
            for dy in range(kh):
                i = cover_y[yy, dy]
                if i < 0:
                    continue
                for dx in range(kw):
                    j = cover_x[xx, dx]
                    if j < 0:
                        continue
                    row = (b * oh + i) * ow + j
                    base = (dy * kw + dx) * c
                    for ch in range(c):
                        out[b, yy, xx, ch] += cols[row, base + ch]


def _serial_twin(kernel):
    """The same kernel compiled without parallel=True (its prange loops run as plain
    loops), for jobs that already run one per core. It is compiled from a copy of
    the Python function under its own name, so Numba's disk cache keeps the two
    compilations apart."""
    fn = kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    return njit(**_jit)(twin)


_im2col_narrow_serial = _serial_twin(_im2col_narrow)
_im2col_wide_serial = _serial_twin(_im2col_wide)
_col2im_tap_row_serial = _serial_twin(_col2im_tap_row)
_col2im_wide_serial = _serial_twin(_col2im_wide)


# ------------------------------------------------- direct small convolutions
# When a convolution has few filters or a short window (F <= 16 or kh*kw*C <= 32,
# e.g. a first layer on 1 or 3 channels), a GEMM over the im2col matrix is
# memory-bound: each long, thin row is used for only a few multiply-adds, and
# unfolding K values per output pixel costs more than the products. These kernels
# unfold nothing. They first split the zero-padded input into stride phases
# ("space to depth"): plane (ch, ry, rx) of an image holds the pixels whose padded
# row is = ry and column is = rx modulo the strides,
#
#     xq[b, (ch*nry + ry)*nrx + rx, m*wq + q] = x[b, m*sh + ry - pt, q*sw + rx - pl, ch]
#
# (zero outside the image). Tap (dy, dx) = (qy*sh + ry, qx*sw + rx) of output pixel
# (i, j) then reads plane (ch, ry, rx) at m = i + qy, q = j + qx, so over the flat
# position o = i*wq + j every tap is one contiguous run at a fixed offset:
#
#     y[(b, i, j), f] = bias[f] + sum_taps W2[tap, f] * xq[b, plane(tap), o + qy*wq + qx].
#
# The long o axis is innermost, where the vector units work on it. Positions with
# j >= ow (wq - ow per output row) are computed and dropped. The split costs one
# pass over the input, and training keeps xq for the weight gradient.
@functools.lru_cache(maxsize=256)
def _plane_geometry(c, kh, kw, sh, sw, oh, ow):
    """(n_planes, hq, wq, tap_plane (K,), tap_offset (K,)) of the phase split, taps in
    W2's row order (dy, dx, ch); hq has one spare row for the reads of dropped positions.
    Cached (building the tables costs ~17 us, a third of a batch-1 convolution);
    the arrays are shared, so nothing may write to them."""
    nry, nrx = min(sh, kh), min(sw, kw)
    wq = ow + (kw - 1) // sw
    hq = oh + (kh - 1) // sh + 1
    dy, dx, ch = (a.ravel() for a in np.meshgrid(np.arange(kh), np.arange(kw), np.arange(c), indexing="ij"))
    tap_plane = (ch * nry + dy % sh) * nrx + dx % sw
    tap_offset = (dy // sh) * wq + dx // sw
    return c * nry * nrx, hq, wq, tap_plane.astype(np.int64), tap_offset.astype(np.int64)


@njit(**_pjit)
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


@njit(**_jit)
def _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t):
    # the run of tap t over flat positions [o0, o0 + length) of image b
    start = o0 + tap_offset[t]
    return xq[b, tap_plane[t], start:start + length]


# The inner loops of the two kernels below are small functions of their own:
# compiled alone, LLVM vectorizes them (measured: the forward kernel took 8.4 ms
# for W3's first layer at batch 128 with these loops written inline in the
# parallel loop body, where they stayed scalar, 3.2 ms as calls of two filters
# each, and 2.0 ms with four filters per call).
@njit(cache=True, nogil=True, fastmath=True)
def _madd_3taps_4filters(acc, f, W2T, t, s0, s1, s2, length):
    # acc[f + q] += W2T[f + q, t]*s0 + W2T[f + q, t + 1]*s1 + W2T[f + q, t + 2]*s2, q = 0..3
    a0 = acc[f]
    a1 = acc[f + 1]
    a2 = acc[f + 2]
    a3 = acc[f + 3]
    w00, w01, w02 = W2T[f, t], W2T[f, t + 1], W2T[f, t + 2]
    w10, w11, w12 = W2T[f + 1, t], W2T[f + 1, t + 1], W2T[f + 1, t + 2]
    w20, w21, w22 = W2T[f + 2, t], W2T[f + 2, t + 1], W2T[f + 2, t + 2]
    w30, w31, w32 = W2T[f + 3, t], W2T[f + 3, t + 1], W2T[f + 3, t + 2]
    for p in range(length):
        v0 = s0[p]
        v1 = s1[p]
        v2 = s2[p]
        a0[p] += w00 * v0 + w01 * v1 + w02 * v2
        a1[p] += w10 * v0 + w11 * v1 + w12 * v2
        a2[p] += w20 * v0 + w21 * v1 + w22 * v2
        a3[p] += w30 * v0 + w31 * v1 + w32 * v2


@njit(cache=True, nogil=True, fastmath=True)
def _madd_3taps(a0, s0, s1, s2, w0, w1, w2, length):
    for p in range(length):
        a0[p] += w0 * s0[p] + w1 * s1[p] + w2 * s2[p]


@njit(cache=True, nogil=True, fastmath=True)
def _madd_1tap(a0, s0, w0, length):
    for p in range(length):
        a0[p] += w0 * s0[p]


@njit(cache=True, nogil=True, fastmath=True)
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


@njit(cache=True, nogil=True, fastmath=True)
def _dot(run, d0, length, zero):
    # run . d0 over [0, length); zero: 0 in the arrays' dtype, so float32 sums stay float32
    s0 = zero
    for p in range(length):
        s0 += run[p] * d0[p]
    return s0


@njit(**_pjit, fastmath=True)
def _conv_planes_forward(xq, W2T, bias, tap_plane, tap_offset, oh, ow, wq, rows_per_block, y):
    # y[(b, i, j), f] for blocks of `rows_per_block` output rows: acc[f, o - o0]
    # holds the sums over the block's flat positions; four filters and three taps
    # per pass over the block (one filter at a time for the remainder), so each
    # load of acc serves three multiply-adds and each load of a run serves four.
    n = xq.shape[0]
    f_count, k_count = W2T.shape
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
        k3 = k_count - k_count % 3
        f4 = f_count - f_count % 4
        for t in range(0, k3, 3):
            s0 = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t)
            s1 = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t + 1)
            s2 = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t + 2)
            for f in range(0, f4, 4):
                _madd_3taps_4filters(acc, f, W2T, t, s0, s1, s2, length)
            for f in range(f4, f_count):
                _madd_3taps(acc[f], s0, s1, s2, W2T[f, t], W2T[f, t + 1], W2T[f, t + 2], length)
        for t in range(k3, k_count):
            s0 = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t)
            for f in range(f_count):
                _madd_1tap(acc[f], s0, W2T[f, t], length)
        # keep the positions j < ow, pixel by pixel with the filters contiguous in y
        for i in range(i0, i1):
            src = (i - i0) * wq
            dst = (b * oh + i) * ow
            for j in range(ow):
                for f in range(f_count):
                    y[dst + j, f] = acc[f, src + j]


@njit(**_pjit, fastmath=True)
def _conv_planes_dw(xq, dy2, tap_plane, tap_offset, oh, ow, wq, rows_per_block, parts):
    # parts[t] = thread t's share of dW2[tap, f] = sum over positions of
    # xq[b, plane(tap), o + offset(tap)] * dy[(b, i, j), f]; dW2 = parts.sum(0).
    # dyq[f, o - o0] is the block's dy on the flat grid, zero at dropped positions.
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
        for g in range(part * jobs // nparts, (part + 1) * jobs // nparts):
            b = g // nblocks
            i0 = (g - b * nblocks) * rows_per_block
            i1 = min(oh, i0 + rows_per_block)
            o0 = i0 * wq
            length = (i1 - i0) * wq
            for i in range(i0, i1):
                dst = (i - i0) * wq
                src = (b * oh + i) * ow
                for j in range(ow):
                    for f in range(f_count):
                        dyq[f, dst + j] = dy2[src + j, f]
                for j in range(ow, wq):
                    for f in range(f_count):
                        dyq[f, dst + j] = 0
            k3 = k_count - k_count % 3
            for t in range(0, k3, 3):
                r0 = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t)
                r1 = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t + 1)
                r2 = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t + 2)
                for f in range(0, f4, 4):
                    _dot_3taps_4filters(acc, t, f, r0, r1, r2, dyq, length, zero)
                for f in range(f4, f_count):
                    acc[t, f] += _dot(r0, dyq[f], length, zero)
                    acc[t + 1, f] += _dot(r1, dyq[f], length, zero)
                    acc[t + 2, f] += _dot(r2, dyq[f], length, zero)
            for t in range(k3, k_count):        # the taps left over after the groups of three
                run = _tap_runs(xq, b, tap_plane, tap_offset, o0, length, t)
                for f in range(f_count):
                    acc[t, f] += _dot(run, dyq[f], length, zero)


@njit(**_pjit)
def _column_sums(a, parts):
    # parts[t] = sum of the rows of thread t's block of a (M, F); sum(parts) = a.sum(0).
    # numpy's a.sum(axis=0) on a tall, narrow array is several times slower.
    m, f = a.shape
    nparts = parts.shape[0]
    for t in prange(nparts):
        acc = parts[t]
        for q in range(f):
            acc[q] = 0
        for r in range(t * m // nparts, (t + 1) * m // nparts):
            for q in range(f):
                acc[q] += a[r, q]


def _is_small_conv(k, f):
    return f <= 16 or k <= 32


# --------------------------------------------------------------------- pooling
@njit(**_pjit)
def _maxpool(x, ph, pw, sh, sw, pt, pl, oh, ow, y, argmax):
    n, h, w, c = x.shape
    neg_inf = -np.inf
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        for j in range(ow):
            for ch in range(c):
                best = neg_inf
                arg = 0
                for dy in range(ph):
                    yy = i * sh + dy - pt
                    for dx in range(pw):
                        xx = j * sw + dx - pl
                        if 0 <= yy < h and 0 <= xx < w:
                            v = x[b, yy, xx, ch]
                        else:
                            v = neg_inf
                        if v > best:     # strict: the first maximum wins, as in the reference
                            best = v
                            arg = dy * pw + dx
                y[b, i, j, ch] = best
                argmax[b, i, j, ch] = arg


@njit(**_pjit)
def _maxpool2x2(x, oh, ow, y, argmax):
    # The common case (2x2 windows, stride 2, no padding, no overlap): four
    # loads per output, unrolled; the same strict-greater rule picks the first max.
    n, h, w, c = x.shape
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        y0 = 2 * i
        for j in range(ow):
            x0 = 2 * j
            for ch in range(c):
                best = x[b, y0, x0, ch]
                arg = 0
                if not (best > -np.inf):     # -inf or NaN: the reference keeps -inf, arg 0
                    best = -np.inf
                v = x[b, y0, x0 + 1, ch]
                if v > best:
                    best = v
                    arg = 1
                v = x[b, y0 + 1, x0, ch]
                if v > best:
                    best = v
                    arg = 2
                v = x[b, y0 + 1, x0 + 1, ch]
                if v > best:
                    best = v
                    arg = 3
                y[b, i, j, ch] = best
                argmax[b, i, j, ch] = arg


@njit(**_pjit)
def _maxpool_backward(dy, argmax, cover_y, cover_x, out):
    # Gather: input pixel (yy, xx) collects dy of every window whose argmax points
    # at it, visiting windows in the reference's (tap dy, tap dx) order.
    n, h, w, c = out.shape
    ph = cover_y.shape[1]
    pw = cover_x.shape[1]
    for r in prange(n * h):
        b = r // h
        yy = r - b * h
        for xx in range(w):
            for ch in range(c):
                out[b, yy, xx, ch] = 0
            for ty in range(ph):
                i = cover_y[yy, ty]
                if i < 0:
                    continue
                for tx in range(pw):
                    j = cover_x[xx, tx]
                    if j < 0:
                        continue
                    tap = ty * pw + tx
                    for ch in range(c):
                        if argmax[b, i, j, ch] == tap:
                            out[b, yy, xx, ch] += dy[b, i, j, ch]


@njit(**_pjit)
def _maxpool2x2_backward(dy, argmax, out):
    # No overlap: each input gets either its window's dy or zero.
    n, h, w, c = out.shape
    oh, ow = dy.shape[1], dy.shape[2]
    for r in prange(n * h):
        b = r // h
        yy = r - b * h
        i = yy // 2
        for xx in range(w):
            j = xx // 2
            if i >= oh or j >= ow:
                for ch in range(c):
                    out[b, yy, xx, ch] = 0
                continue
            tap = (yy - 2 * i) * 2 + (xx - 2 * j)
            for ch in range(c):
                if argmax[b, i, j, ch] == tap:
                    out[b, yy, xx, ch] = dy[b, i, j, ch]
                else:
                    out[b, yy, xx, ch] = 0


@njit(**_pjit)
def _avgpool(x, ph, pw, sh, sw, pt, pl, oh, ow, count, y):
    n, h, w, c = x.shape
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        for j in range(ow):
            for ch in range(c):
                y[b, i, j, ch] = 0
            for dy in range(ph):
                yy = i * sh + dy - pt
                if yy < 0 or yy >= h:
                    continue
                for dx in range(pw):
                    xx = j * sw + dx - pl
                    if xx < 0 or xx >= w:
                        continue
                    for ch in range(c):
                        y[b, i, j, ch] += x[b, yy, xx, ch]
            cnt = count[i, j, 0]
            for ch in range(c):
                y[b, i, j, ch] = y[b, i, j, ch] / cnt


@njit(**_pjit)
def _avgpool_backward(dy, count, cover_y, cover_x, out):
    n, h, w, c = out.shape
    ph = cover_y.shape[1]
    pw = cover_x.shape[1]
    for r in prange(n * h):
        b = r // h
        yy = r - b * h
        for xx in range(w):
            for ch in range(c):
                out[b, yy, xx, ch] = 0
            for ty in range(ph):
                i = cover_y[yy, ty]
                if i < 0:
                    continue
                for tx in range(pw):
                    j = cover_x[xx, tx]
                    if j < 0:
                        continue
                    cnt = count[i, j, 0]
                    for ch in range(c):
                        out[b, yy, xx, ch] += dy[b, i, j, ch] / cnt


# ------------------------------------------------------------------ elementwise
@njit(**_pjit)
def _relu(x, out):
    a = x.reshape(-1)
    o = out.reshape(-1)
    zero = 0
    for k in prange(a.size):
        v = a[k]
        # max(v, 0) that keeps NaN, as np.maximum does
        o[k] = v if (v > zero or v != v) else zero


@njit(**_pjit)
def _relu_backward(dy, y, out):
    d = dy.reshape(-1)
    a = y.reshape(-1)
    o = out.reshape(-1)
    for k in prange(d.size):
        o[k] = d[k] if a[k] > 0 else d[k] * 0   # d*0 keeps the reference's NaN/-0 rules


@njit(**_jit)
def _sparse_softmax_xent(z, labels, losses, grad):
    n, k = z.shape
    for r in range(n):
        m = z[r, 0]
        for q in range(1, k):
            if z[r, q] > m:
                m = z[r, q]
        s = 0.0
        for q in range(k):
            s += math.exp(z[r, q] - m)
        lse = math.log(s)
        for q in range(k):
            grad[r, q] = math.exp((z[r, q] - m) - lse)
        lab = labels[r]
        losses[r] = -((z[r, lab] - m) - lse)
        grad[r, lab] -= 1


@njit(**_jit)
def _softmax_rows(z, out):
    # out = exp(z - m - log(sum exp(z - m))) per row, m the row max (see log_softmax)
    n, k = z.shape
    for r in range(n):
        m = z[r, 0]
        for q in range(1, k):
            if z[r, q] > m:
                m = z[r, q]
        s = 0.0
        for q in range(k):
            s += math.exp(z[r, q] - m)
        lse = math.log(s)
        for q in range(k):
            out[r, q] = math.exp((z[r, q] - m) - lse)


@njit(**_pjit, fastmath=True)
def _adam(p, g, m, v, lr, b1, b2, ob1, ob2, c1, c2, eps):
    # ob1 = 1 - b1, ob2 = 1 - b2; c1 = 1 - b1**t, c2 = 1 - b2**t: Kingma & Ba's
    # bias corrections. All scalars arrive in p's dtype, so float32 stays float32.
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    mf = m.reshape(-1)
    vf = v.reshape(-1)
    for k in prange(pf.size):
        gk = gf[k]
        mk = b1 * mf[k] + ob1 * gk
        vk = b2 * vf[k] + ob2 * (gk * gk)
        mf[k] = mk
        vf[k] = vk
        pf[k] -= lr * (mk / c1) / (math.sqrt(vk / c2) + eps)


@njit(**_pjit, fastmath=True)
def _sgd(p, g, vel, lr, momentum, nesterov, wd, has_velocity):
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    vf = vel.reshape(-1)
    for k in prange(pf.size):
        gk = gf[k] + wd * pf[k]
        if has_velocity:
            vk = momentum * vf[k] + gk
            vf[k] = vk
            step = gk + momentum * vk if nesterov else vk
        else:
            step = gk
        pf[k] -= lr * step


def _contig(a):
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


_JIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _jittable(*arrays):
    """The kernels are compiled for float32 and float64; anything else (float16,
    ints) takes the reference path."""
    return all(a.dtype in _JIT_DTYPES for a in arrays)


# Below about 64K elements a parallel launch costs more than it saves (measured
# with relu: 1.5 us parallel vs 0.3 us serial at 1K elements, 3.1 vs 1.4 us at
# 25K, 5.0 vs 4.3 us at 100K, 17 vs 30 us at 400K), which shows at batch 1 and
# on biases, so the memory-bound kernels run serially on small arrays.
SERIAL_BELOW = 1 << 16

_relu_serial = _serial_twin(_relu)
_relu_backward_serial = _serial_twin(_relu_backward)
_maxpool_serial = _serial_twin(_maxpool)
_maxpool2x2_serial = _serial_twin(_maxpool2x2)
_maxpool_backward_serial = _serial_twin(_maxpool_backward)
_maxpool2x2_backward_serial = _serial_twin(_maxpool2x2_backward)
_adam_serial = _serial_twin(_adam)
_sgd_serial = _serial_twin(_sgd)
_column_sums_serial = _serial_twin(_column_sums)


def _sized(parallel, serial, elements):
    """The serial twin of a memory-bound kernel for small arrays, else the parallel one."""
    return serial if elements < SERIAL_BELOW else parallel


class _ConvWorkers:
    """One worker thread per Numba thread, for wide convolutions as one job per core.

    Each job unfolds and multiplies its own share of the batch with the serial
    kernels while OpenBLAS runs on one thread (`map`), so the cores
    never hand work back and forth between Numba's pool and OpenBLAS's, and each
    job's im2col chunk stays in its own core's L2 cache until its GEMM reads it.
    Measured on W2's 32->32-channel convolution at batch 128 (2 cores): forward
    17-20 ms as one job with both cores in every kernel, 13 ms as two jobs.
    Needs numpy's BLAS to be OpenBLAS (convnet/backend/blas.py); `get()` is None
    without it or with one thread.
    """

    _instance = None
    _tried = False

    def __init__(self, size, blas_threads):
        from concurrent.futures import ThreadPoolExecutor
        self.size = size
        self._get_blas_threads, self._set_blas_threads = blas_threads
        self._pool = ThreadPoolExecutor(size, thread_name_prefix="convnet-conv")
        # one convolution's jobs at a time: two Python threads each running
        # convolutions would otherwise restore each other's BLAS thread count
        self._lock = threading.Lock()

    @classmethod
    def get(cls):
        if not cls._tried:
            cls._tried = True
            threads = numba.get_num_threads()
            blas_threads = blas.thread_count_functions()
            if threads > 1 and blas_threads is not None:
                cls._instance = cls(threads, blas_threads)
        return cls._instance

    def map(self, work, ranges):
        """[work(s0, e0, True) for (s0, e0) in ranges], one range per worker, run
        while OpenBLAS uses one thread (its count is process-wide; it is restored
        afterwards, also when a job fails)."""
        with self._lock:
            before = self._get_blas_threads()
            self._set_blas_threads(1)
            try:
                jobs = [self._pool.submit(work, s0, e0, True) for s0, e0 in ranges]
                return [job.result() for job in jobs]
            finally:
                self._set_blas_threads(before)

    @classmethod
    def _forget(cls):
        # a forked child has none of the parent's worker threads: it starts its own
        cls._instance = None
        cls._tried = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ConvWorkers._forget)


class NumbaOps(BatchNormKernels, NumpyOps):
    """NumpyOps with the hot kernels jitted by Numba (parallel over the batch)."""

    name = "numba"

    # ------------------------------------------------------------------ im2col
    def im2col(self, x, kh, kw, sh, sw, pads):
        """Same as NumpyOps.im2col: x (N, H, W, C) -> cols (N*OH*OW, kh*kw*C),
        rows (n, i, j), columns (dy, dx, c); taps outside the image read zero."""
        if not _jittable(x):
            return super().im2col(x, kh, kw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        x = _contig(x)
        if kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == pb == pl == pr == 0:
            return x.reshape(n * h * w, c)      # a 1x1 convolution needs no unfolding
        cols = np.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
        _im2col(x, kh, kw, sh, sw, pt, pl, oh, ow, cols)
        return cols

    def col2im(self, cols, x_shape, kh, kw, sh, sw, pads):
        """Same as NumpyOps.col2im (the adjoint of im2col): cols (N*OH*OW, kh*kw*C)
        -> dx (N, H, W, C), each pixel the sum of the entries of the windows that
        cover it, added in the reference's (dy, dx) order."""
        if not _jittable(cols):
            return super().col2im(cols, x_shape, kh, kw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        cols = _contig(cols).reshape(n * oh * ow, kh * kw * c)
        out = np.empty((n, h, w, c), dtype=cols.dtype)
        _col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out)
        return out

    # ------------------------------------------------------- whole convolution
    fused_conv = True
    #: bytes of im2col matrix per chunk (split among the jobs when there is one
    #: job per core): small enough to stay in the 32 MiB L3 with the GEMM's
    #: output, large enough for an efficient GEMM (measured here: 1 to 8 MiB
    #: within 3% of each other with one job per core; 16 MiB and up 10-50% slower)
    conv_chunk_bytes = 8 << 20

    #: flat positions per block of the small-convolution kernels (acc stays in L1/L2)
    small_conv_positions = 512

    def _rows_per_block(self, wq):
        return max(1, self.small_conv_positions // wq)

    @staticmethod
    def _blocks(rows):
        # one partial weight gradient per thread
        return max(1, min(rows, numba.get_num_threads()))

    def _chunk_images(self, n, rows_per_image, k, itemsize, serial=False):
        # images per chunk: conv_chunk_bytes of im2col rows, shared out among
        # the workers when each job runs on its own core
        budget = self.conv_chunk_bytes // (numba.get_num_threads() if serial else 1)
        per_image = max(rows_per_image * k * itemsize, 1)
        return max(1, min(n, budget // per_image))

    #: whether wide convolutions may run as one job per core (see _ConvWorkers)
    conv_jobs_per_core = True

    def _over_images(self, n, work):
        """[work(s0, e0, serial)] over the batch: one job per worker thread on
        consecutive ranges of images (serial kernels, one-core BLAS) when there
        are workers and at least one image each, else one job [work(0, n, False)]
        with the parallel kernels and multi-threaded BLAS."""
        workers = _ConvWorkers.get() if self.conv_jobs_per_core else None
        if workers is None or n < workers.size:
            return [work(0, n, False)]
        bounds = [n * t // workers.size for t in range(workers.size + 1)]
        return workers.map(work, list(zip(bounds[:-1], bounds[1:])))

    @staticmethod
    def _phase_split(x, kh, kw, sh, sw, pt, pl, oh, ow):
        """xq (N, C*nry*nrx, hq*wq): x split into zero-padded stride phases (see
        _plane_geometry), the input of the small-convolution kernels."""
        n, _, _, c = x.shape
        n_planes, hq, wq, _, _ = _plane_geometry(c, kh, kw, sh, sw, oh, ow)
        xq = np.empty((n, n_planes, hq * wq), dtype=x.dtype)
        _space_to_depth(x, sh, sw, pt, pl, min(sh, kh), min(sw, kw), hq, wq, xq)
        return xq

    def conv2d_forward(self, x, W2, b, kh, kw, sh, sw, pads, training=True):
        """Same as NumpyOps.conv2d_forward: y = im2col(x) @ W2 + b, (N*OH*OW, F).

        The batch is processed in chunks of images: each chunk's im2col rows are
        written to a cache-sized buffer and multiplied at once (numpy BLAS), so
        the full im2col matrix never exists; nothing is saved for backward
        (saved is None: backward recomputes the chunks from x). Small convolutions
        (few filters or a short window) run the direct kernels on the input split
        into stride phases instead and, when training, keep that split (about the
        size of x) for dW.
        """
        if not _jittable(x, W2):
            return super().conv2d_forward(x, W2, b, kh, kw, sh, sw, pads, training)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        k, f = W2.shape
        x = _contig(x)
        W2 = _contig(W2)
        y = np.empty((n * oh * ow, f), dtype=np.result_type(x, W2))
        if _is_small_conv(k, f) and x.dtype == W2.dtype:
            bias = _contig(b) if b is not None else np.zeros(f, dtype=x.dtype)
            xq = self._phase_split(x, kh, kw, sh, sw, pt, pl, oh, ow)
            _, _, wq, tap_plane, tap_offset = _plane_geometry(c, kh, kw, sh, sw, oh, ow)
            _conv_planes_forward(xq, np.ascontiguousarray(W2.T), bias.astype(x.dtype, copy=False),
                                 tap_plane, tap_offset, oh, ow, wq, self._rows_per_block(wq), y)
            return y, (xq if training else None)
        rows = oh * ow

        def forward_images(s0, e0, serial):
            # y rows of images [s0, e0): chunk by chunk, unfold and multiply
            step = self._chunk_images(e0 - s0, rows, k, x.itemsize, serial)
            buf = np.empty((step * rows, k), dtype=x.dtype)
            for s in range(s0, e0, step):
                e = min(e0, s + step)
                cols = buf[:(e - s) * rows]
                _im2col(x[s:e], kh, kw, sh, sw, pt, pl, oh, ow, cols, serial)
                out = y[s * rows:e * rows]
                np.matmul(cols, W2, out=out)
                if b is not None:
                    out += b

        self._over_images(n, forward_images)
        return y, None

    def conv2d_backward(self, dy2, x, saved, W2, kh, kw, sh, sw, pads, need_dx=True):
        """Same as NumpyOps.conv2d_backward: (dx or None, dW2 = cols^T dy2,
        db = sum of dy2 over rows), chunk by chunk of images: each chunk's im2col
        rows are recomputed into a cache-sized buffer, used for its share of dW2,
        and its dcols = dy2 @ W2^T is folded back by col2im while still in cache.
        Small convolutions take dW2 from the direct kernel instead (and dx, when
        asked for, from the chunked dcols/col2im as above).
        """
        if not _jittable(dy2, x, W2):
            return super().conv2d_backward(dy2, x, saved, W2, kh, kw, sh, sw, pads, need_dx)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        k, f = W2.shape
        x = _contig(x)
        dy2 = _contig(dy2)
        rows = oh * ow
        small = _is_small_conv(k, f) and x.dtype == dy2.dtype
        dx = np.empty((n, h, w, c), dtype=dy2.dtype) if need_dx else None
        W2t = np.ascontiguousarray(W2.T)
        dW2 = None
        if small:
            n_planes, hq, wq, tap_plane, tap_offset = _plane_geometry(c, kh, kw, sh, sw, oh, ow)
            xq = saved if saved is not None and saved.shape == (n, n_planes, hq * wq) \
                else self._phase_split(x, kh, kw, sh, sw, pt, pl, oh, ow)
            rows_per_block = self._rows_per_block(wq)
            jobs = n * -(-oh // rows_per_block)
            parts = np.empty((self._blocks(jobs), k, f), dtype=dy2.dtype)
            _conv_planes_dw(xq.astype(dy2.dtype, copy=False), dy2, tap_plane, tap_offset, oh, ow, wq,
                            rows_per_block, parts)
            dW2 = parts.sum(axis=0)

        def backward_images(s0, e0, serial):
            # dx rows of images [s0, e0), and (wide path) their share of dW2
            step = self._chunk_images(e0 - s0, rows, k, x.itemsize, serial)
            buf = None if small else np.empty((step * rows, k), dtype=x.dtype)
            dbuf = np.empty((step * rows, k), dtype=dy2.dtype) if need_dx else None
            share = None if small else np.zeros((k, f), dtype=dy2.dtype)
            part = None if small else np.empty((k, f), dtype=dy2.dtype)
            for s in range(s0, e0, step):
                e = min(e0, s + step)
                d = dy2[s * rows:e * rows]
                if not small:
                    cols = buf[:(e - s) * rows]
                    _im2col(x[s:e], kh, kw, sh, sw, pt, pl, oh, ow, cols, serial)
                    np.matmul(cols.T, d, out=part)
                    share += part
                if need_dx:
                    dcols = dbuf[:(e - s) * rows]
                    np.matmul(d, W2t, out=dcols)
                    _col2im(dcols, e - s, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, dx[s:e], serial)
            return share

        if not small or need_dx:
            shares = self._over_images(n, backward_images)
            if not small:
                dW2 = shares[0] if len(shares) == 1 else np.sum(shares, axis=0)
        parts = np.empty((self._blocks(dy2.shape[0]), f), dtype=dy2.dtype)
        _sized(_column_sums, _column_sums_serial, dy2.size)(dy2, parts)
        db = parts.sum(axis=0)
        return dx, dW2, db

    # ----------------------------------------------------------------- pooling
    def maxpool(self, x, ph, pw, sh, sw, pads):
        """Same as NumpyOps.maxpool: (y, argmax) with argmax = dy*pw + dx of the
        first maximum of each window (int32); padding is -inf and never wins."""
        if not _jittable(x):
            return super().maxpool(x, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, ph, sh, pt, pb)
        ow = output_size(w, pw, sw, pl, pr)
        x = _contig(x)
        y = np.empty((n, oh, ow, c), dtype=x.dtype)
        argmax = np.empty((n, oh, ow, c), dtype=np.int32)
        if (ph, pw, sh, sw) == (2, 2, 2, 2) and pt == pl == 0 and 2 * oh <= h and 2 * ow <= w:
            _sized(_maxpool2x2, _maxpool2x2_serial, x.size)(x, oh, ow, y, argmax)
        else:
            _sized(_maxpool, _maxpool_serial, x.size)(x, ph, pw, sh, sw, pt, pl, oh, ow, y, argmax)
        return y, argmax

    def maxpool_backward(self, dy, argmax, x_shape, ph, pw, sh, sw, pads):
        """Same as NumpyOps.maxpool_backward: each window's dy goes to the input its
        argmax names; overlapping windows add up (in the reference's order)."""
        if not _jittable(dy):
            return super().maxpool_backward(dy, argmax, x_shape, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        dy = _contig(dy)
        argmax = _contig(argmax)
        out = np.empty((n, h, w, c), dtype=dy.dtype)
        if (ph, pw, sh, sw) == (2, 2, 2, 2) and pt == pl == 0:
            _sized(_maxpool2x2_backward, _maxpool2x2_backward_serial, out.size)(dy, argmax, out)
        else:
            _sized(_maxpool_backward, _maxpool_backward_serial, out.size)(
                dy, argmax, _covering_windows(h, pt, ph, sh, dy.shape[1]),
                _covering_windows(w, pl, pw, sw, dy.shape[2]), out)
        return out

    def avgpool(self, x, ph, pw, sh, sw, pads):
        """Same as NumpyOps.avgpool: (y, count), the mean over the real pixels of
        each window; count (OH, OW, 1) is computed by the reference code (tiny)."""
        if not _jittable(x):
            return super().avgpool(x, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, ph, sh, pt, pb)
        ow = output_size(w, pw, sw, pl, pr)
        count = _window_counts(h, w, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow, x.dtype)
        y = np.empty((n, oh, ow, c), dtype=x.dtype)
        _avgpool(_contig(x), ph, pw, sh, sw, pt, pl, oh, ow, count, y)
        return y, count

    def avgpool_backward(self, dy, count, x_shape, ph, pw, sh, sw, pads):
        """Same as NumpyOps.avgpool_backward: each input gets dy / count of every
        window that covers it."""
        if not _jittable(dy):
            return super().avgpool_backward(dy, count, x_shape, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        out = np.empty((n, h, w, c), dtype=dy.dtype)
        _avgpool_backward(_contig(dy), _contig(count), _covering_windows(h, pt, ph, sh, dy.shape[1]),
                          _covering_windows(w, pl, pw, sw, dy.shape[2]), out)
        return out

    # ------------------------------------------------------------- activations
    def relu(self, x, out=None):
        """Same as NumpyOps.relu: max(x, 0) (NaN stays NaN), into `out` when given."""
        if not x.flags.c_contiguous or not _jittable(x) or (
                out is not None and (not out.flags.c_contiguous or out.shape != x.shape
                                     or out.dtype != x.dtype)):
            return super().relu(x, out=out)
        if out is None:
            out = np.empty_like(x)
        _sized(_relu, _relu_serial, x.size)(x, out)
        return out

    def relu_backward(self, dy, y):
        """Same as NumpyOps.relu_backward: dy where y > 0, else 0."""
        if dy.shape != y.shape or dy.dtype != y.dtype or not _jittable(dy):
            return super().relu_backward(dy, y)
        dy, y = _contig(dy), _contig(y)
        out = np.empty_like(dy)
        _sized(_relu_backward, _relu_backward_serial, dy.size)(dy, y, out)
        return out

    # ----------------------------------------------------------------- softmax
    def softmax(self, z):
        """Same as NumpyOps.softmax: exp(log_softmax(z)) over the last axis, one
        pass per row instead of seven numpy calls (it shows at batch 1)."""
        if z.ndim != 2 or not _jittable(z) or z.shape[1] == 0:
            return super().softmax(z)
        z = _contig(z)
        out = np.empty_like(z)
        _softmax_rows(z, out)
        return out

    def sparse_softmax_cross_entropy(self, logits, labels):
        """Same as NumpyOps.sparse_softmax_cross_entropy: per-sample losses (N,)
        and dlogits = softmax(z) - onehot(y) (N, K), stable via log-sum-exp."""
        labels = np.asarray(labels)
        if logits.ndim != 2 or not _jittable(logits) or labels.dtype.kind not in "iu":
            return super().sparse_softmax_cross_entropy(logits, labels)
        z = _contig(logits)
        losses = np.empty(z.shape[0], dtype=z.dtype)
        grad = np.empty_like(z)
        _sparse_softmax_xent(z, _contig(labels.astype(np.int64, copy=False)), losses, grad)
        return losses, grad

    # -------------------------------------------------------------- optimizers
    def adam_update(self, p, g, m, v, lr, beta_1, beta_2, epsilon, t):
        """Same as NumpyOps.adam_update (Kingma & Ba, Algorithm 1), in place, one
        fused pass over p, g, m and v instead of about ten numpy passes."""
        arrays = (p, g, m, v)
        if not all(a.flags.c_contiguous and a.dtype == p.dtype for a in arrays) or not _jittable(p):
            return super().adam_update(p, g, m, v, lr, beta_1, beta_2, epsilon, t)
        s = p.dtype.type
        _sized(_adam, _adam_serial, p.size)(p, g, m, v, s(lr), s(beta_1), s(beta_2), s(1 - beta_1),
                                            s(1 - beta_2), s(1 - beta_1 ** t), s(1 - beta_2 ** t), s(epsilon))

    def sgd_update(self, p, g, velocity, lr, momentum, nesterov, weight_decay):
        """Same as NumpyOps.sgd_update: heavy-ball momentum (optionally Nesterov)
        with L2 weight decay, in place, one fused pass."""
        vel = velocity if velocity is not None else p
        if not all(a.flags.c_contiguous and a.dtype == p.dtype for a in (p, g, vel)) \
                or not _jittable(p) or (velocity is None and momentum):
            return super().sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay)
        s = p.dtype.type
        _sized(_sgd, _sgd_serial, p.size)(p, g, vel, s(lr), s(momentum), bool(nesterov), s(weight_decay),
                                          velocity is not None)


def _window_counts(h, w, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow, dtype):
    """How many real (unpadded) pixels each pooling window covers: (OH, OW, 1)."""
    rows = np.array([min(i * sh - pt + ph, h) - max(i * sh - pt, 0) for i in range(oh)], dtype=dtype)
    cols = np.array([min(j * sw - pl + pw, w) - max(j * sw - pl, 0) for j in range(ow)], dtype=dtype)
    return (rows[:, None] * cols[None, :])[:, :, None]
