"""im2col and col2im, jitted: the unfolding behind the GEMM convolution.

Same functions as NumpyOps.im2col / NumpyOps.col2im (read those first):

    im2col: x (N, H, W, C)              -> cols (N*OH*OW, kh*kw*C)
    col2im: cols (N*OH*OW, kh*kw*C)     -> out (N, H, W, C), its adjoint

How these differ from the reference, and why:
- No padded copies: each kernel tests the bounds of every window tap and reads
  zero outside the image, so no padded array is ever allocated.
- Gather instead of scatter in col2im: each input pixel's gradient is computed by
  visiting the windows that cover it, in the reference's (ty, tx) tap order, so
  each output element is written by one thread only (rows of the batch run in
  parallel without races) and every sum is added in the reference's order.
- Two loop orders, picked by the channel count (WIDE_CHANNELS): with many
  channels a window's taps are long contiguous runs; with few channels a whole
  tap row (kw*C values) is one run and the kernel walks tap rows instead.

Every kernel has a serial twin (the same code without prange) for small inputs
and for jobs that already run one per core.
"""

import functools

import numpy as np
from numba import njit, prange

from . import threads
from ._jit import PJIT, serial_twin

# Which loop order wins depends on the channel count (measured: with C >= 8 the
# per-tap runs are long enough, with few channels the per-tap-row layout wins).
WIDE_CHANNELS = 8


@njit(**PJIT)
def _im2col_narrow(x, kh, kw, sh, sw, pt, pl, oh, ow, cols):
    # Narrow channels (C < 8). Row (b, i, j) of cols, tap row ty: the kw*c values
    # x[b, yy, x0:x0+kw, :] are contiguous in x (channels-last), so a window's tap
    # row is one run of kw*c copies when it lies inside the image; only border
    # windows test each tap.
    n, h, w, c = x.shape
    span = kw * c
    # windows j in [j_lo, j_hi) lie wholly inside the image horizontally
    j_lo = min(ow, (pl + sw - 1) // sw)
    j_hi = max(j_lo, min(ow, (w + pl - kw) // sw + 1))
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        for ty in range(kh):
            yy = i * sh + ty - pt
            col0 = ty * span
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
                    for tx in range(kw):
                        for ch in range(c):
                            cols[row, col0 + tx * c + ch] = x[b, yy, x0 + tx, ch]
                else:
                    for tx in range(kw):
                        xx = x0 + tx
                        if 0 <= xx < w:
                            for ch in range(c):
                                cols[row, col0 + tx * c + ch] = x[b, yy, xx, ch]
                        else:
                            for ch in range(c):
                                cols[row, col0 + tx * c + ch] = 0


@njit(**PJIT)
def _im2col_wide(x, kh, kw, sh, sw, pt, pl, oh, ow, cols):
    # Wide channels: one window at a time, a run of c copies per tap.
    n, h, w, c = x.shape
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        for j in range(ow):
            row = r * ow + j
            for ty in range(kh):
                yy = i * sh + ty - pt
                for tx in range(kw):
                    xx = j * sw + tx - pl
                    base = (ty * kw + tx) * c
                    if 0 <= yy < h and 0 <= xx < w:
                        for ch in range(c):
                            cols[row, base + ch] = x[b, yy, xx, ch]
                    else:
                        for ch in range(c):
                            cols[row, base + ch] = 0


@njit(**PJIT)
def _zero(a):
    f = a.reshape(-1)
    for k in prange(f.size):
        f[k] = 0


@njit(**PJIT)
def _col2im_tap_row(cols, n, h, w, c, kw, sh, sw, pt, pl, oh, ow, ty, out):
    # Adds tap row ty of every window to out. For a fixed ty, windows of different
    # output rows i land on different input rows yy = i*sh + ty - pt, so the
    # (b, i) loop runs in parallel without races; taps are added in the
    # reference's (ty, tx) order, so every pixel's sum is formed in the same order.
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        yy = i * sh + ty - pt
        if yy < 0 or yy >= h:
            continue
        for tx in range(kw):
            base = (ty * kw + tx) * c
            for j in range(ow):
                xx = j * sw + tx - pl
                if 0 <= xx < w:
                    row = r * ow + j
                    for ch in range(c):
                        out[b, yy, xx, ch] += cols[row, base + ch]


@njit(**PJIT)
def _col2im_wide(cols, oh, ow, cover_y, cover_x, out):
    # Wide channels: gather, each input pixel from the windows that cover it.
    # out[b, yy, xx, :] = sum over windows (i, j) and taps (ty, tx) with
    # i*sh + ty - pt == yy and j*sw + tx - pl == xx of cols[(b, i, j), (ty, tx, :)],
    # visited in (ty, tx) order like the reference's loop of += over offsets.
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
            for ty in range(kh):
                i = cover_y[yy, ty]
                if i < 0:
                    continue
                for tx in range(kw):
                    j = cover_x[xx, tx]
                    if j < 0:
                        continue
                    row = (b * oh + i) * ow + j
                    base = (ty * kw + tx) * c
                    for ch in range(c):
                        out[b, yy, xx, ch] += cols[row, base + ch]


_im2col_narrow_serial = serial_twin(_im2col_narrow)
_im2col_wide_serial = serial_twin(_im2col_wide)
_col2im_tap_row_serial = serial_twin(_col2im_tap_row)
_col2im_wide_serial = serial_twin(_col2im_wide)


@functools.lru_cache(maxsize=256)
def covering_windows(size, pad, taps, stride, n_windows):
    """Table (size, taps): entry [pos, t] is the index of the window whose tap t
    reaches position pos of the input along one axis (pos + pad = window * stride + t),
    or -1 when no window does. The gather kernels look windows up here instead of
    dividing by the stride for every pixel and tap (an integer division costs
    tens of cycles; the table is a few hundred entries). Cached and shared: read only."""
    reach = np.arange(size)[:, None] + pad - np.arange(taps)[None, :]
    window = reach // stride
    covered = (reach >= 0) & (reach % stride == 0) & (window < n_windows)
    return np.where(covered, window, -1).astype(np.int64)


def im2col(x, kh, kw, sh, sw, pt, pl, oh, ow, cols, serial=False):
    """cols (N*OH*OW, kh*kw*C) = im2col(x) for contiguous x (N, H, W, C), written
    into `cols`. serial=True runs on the calling thread only (for jobs that already
    run one per core); small inputs run serially anyway."""
    serial = serial or cols.size < threads.serial_below()
    if x.shape[3] >= WIDE_CHANNELS:
        kernel = _im2col_wide_serial if serial else _im2col_wide
    else:
        kernel = _im2col_narrow_serial if serial else _im2col_narrow
    kernel(x, kh, kw, sh, sw, pt, pl, oh, ow, cols)


def col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out, serial=False):
    """out (n, h, w, c) = col2im(cols), the adjoint of im2col; serial as in im2col."""
    serial = serial or cols.size < threads.serial_below()
    if c >= WIDE_CHANNELS:
        kernel = _col2im_wide_serial if serial else _col2im_wide
        kernel(cols, oh, ow, covering_windows(h, pt, kh, sh, oh), covering_windows(w, pl, kw, sw, ow), out)
        return
    # zero, then one pass per tap row (each pass parallel over output rows)
    if serial:
        out[...] = 0
    else:
        _zero(out)
    kernel = _col2im_tap_row_serial if serial else _col2im_tap_row
    for ty in range(kh):
        kernel(cols, n, h, w, c, kw, sh, sw, pt, pl, oh, ow, ty, out)
