"""Pooling kernels, jitted: max and average pooling and their backward passes.

Same functions as NumpyOps.maxpool / maxpool_backward / avgpool /
avgpool_backward (read those first). Padding is never materialised: taps outside
the image read -inf (max) or are skipped (average). The backward passes gather:
each input pixel collects the gradient of every window that covers it, visiting
the windows in the reference's (ty, tx) tap order, so each output element is
written by one thread and its sum is formed in the reference's order. The common
2x2 stride-2 max pool without padding has its own unrolled pair.
"""

import numpy as np
from numba import njit, prange

from ._jit import PJIT, Sized


@njit(**PJIT)
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
                for ty in range(ph):
                    yy = i * sh + ty - pt
                    for tx in range(pw):
                        xx = j * sw + tx - pl
                        if 0 <= yy < h and 0 <= xx < w:
                            v = x[b, yy, xx, ch]
                        else:
                            v = neg_inf
                        if v > best:     # strict: the first maximum wins, as in the reference
                            best = v
                            arg = ty * pw + tx
                y[b, i, j, ch] = best
                argmax[b, i, j, ch] = arg


@njit(**PJIT)
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


@njit(**PJIT)
def _maxpool_backward(dy, argmax, cover_y, cover_x, out):
    # Gather: input pixel (yy, xx) collects dy of every window whose argmax points
    # at it, visiting windows in the reference's (ty, tx) tap order.
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


@njit(**PJIT)
def _maxpool2x2_backward(dy, argmax, out):
    # No overlap, every window inside the input (0 < 2*OH <= H, 0 < 2*OW <= W: the caller
    # checks): each input pixel of a window gets its window's dy or zero. One task
    # per output row i writes input rows 2i and 2i+1, each window's four pixels from
    # one read of its argmax and dy (measured: 6.5x faster on W4's 5 channels
    # than one task per input row, which read a window's argmax and dy once for
    # each of its pixels; the same speed on 32 and 64 channels). The pixels in no
    # window (an odd last row or column) are maxpool2x2_backward's.
    oh, ow, c = dy.shape[1], dy.shape[2], dy.shape[3]
    for r in prange(dy.shape[0] * oh):
        b = r // oh
        i = r - b * oh
        y0 = 2 * i
        for j in range(ow):
            x0 = 2 * j
            for ch in range(c):
                tap = argmax[b, i, j, ch]
                d = dy[b, i, j, ch]
                out[b, y0, x0, ch] = d if tap == 0 else 0
                out[b, y0, x0 + 1, ch] = d if tap == 1 else 0
                out[b, y0 + 1, x0, ch] = d if tap == 2 else 0
                out[b, y0 + 1, x0 + 1, ch] = d if tap == 3 else 0


@njit(**PJIT)
def _avgpool(x, ph, pw, sh, sw, pt, pl, oh, ow, count, y):
    n, h, w, c = x.shape
    for r in prange(n * oh):
        b = r // oh
        i = r - b * oh
        for j in range(ow):
            for ch in range(c):
                y[b, i, j, ch] = 0
            for ty in range(ph):
                yy = i * sh + ty - pt
                if yy < 0 or yy >= h:
                    continue
                for tx in range(pw):
                    xx = j * sw + tx - pl
                    if xx < 0 or xx >= w:
                        continue
                    for ch in range(c):
                        y[b, i, j, ch] += x[b, yy, xx, ch]
            cnt = count[i, j, 0]
            for ch in range(c):
                y[b, i, j, ch] = y[b, i, j, ch] / cnt


@njit(**PJIT)
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


maxpool = Sized(_maxpool)
maxpool2x2 = Sized(_maxpool2x2)
maxpool_backward = Sized(_maxpool_backward)
_maxpool2x2_backward_kernels = Sized(_maxpool2x2_backward)
avgpool = Sized(_avgpool)
avgpool_backward = Sized(_avgpool_backward)


def maxpool2x2_backward(dy, argmax, out):
    """out (N, H, W, C) = the gradient of the 2x2 stride-2 max pool without padding
    whose windows all lie inside the input (0 < 2*OH <= H, 0 < 2*OW <= W) for dy and
    argmax (N, OH, OW, C). An odd last row or column of the input is in no window:
    zero, filled here rather than in the kernel (its two loop nests for them cost
    about 0.25 s of a clean install's first compile)."""
    _maxpool2x2_backward_kernels.pick(out.size)(dy, argmax, out)
    oh, ow = dy.shape[1], dy.shape[2]
    out[:, 2 * oh:] = 0
    out[:, :2 * oh, 2 * ow:] = 0


def window_counts(h, w, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow, dtype):
    """How many real (unpadded) pixels each pooling window covers: (OH, OW, 1)."""
    rows = np.array([min(i * sh - pt + ph, h) - max(i * sh - pt, 0) for i in range(oh)], dtype=dtype)
    cols = np.array([min(j * sw - pl + pw, w) - max(j * sw - pl, 0) for j in range(ow)], dtype=dtype)
    return (rows[:, None] * cols[None, :])[:, :, None]
