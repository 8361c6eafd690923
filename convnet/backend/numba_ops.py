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

import math

import numpy as np

from . import threads as _threads

_threads.configure()

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402  (threads.configure() must run first)

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


def _im2col(x, kh, kw, sh, sw, pt, pl, oh, ow, cols):
    """cols (N*OH*OW, kh*kw*C) = im2col(x), written into `cols`."""
    kernel = _im2col_wide if x.shape[3] >= WIDE_CHANNELS else _im2col_narrow
    kernel(x, kh, kw, sh, sw, pt, pl, oh, ow, cols)


def _col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out):
    """out (n, h, w, c) = col2im(cols), the adjoint of _im2col."""
    if c >= WIDE_CHANNELS:
        _col2im_wide(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out)
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


@njit(cache=True, inline="always")
def _covering_window(pos, stride, n_windows):
    """Index of the window whose tap reaches padded position `pos` along one axis
    (pos = window * stride + tap), or -1 when no window starts there."""
    if pos < 0 or pos % stride != 0:
        return -1
    i = pos // stride
    return i if i < n_windows else -1


@njit(**_pjit)
def _col2im_wide(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out):
    # Wide channels: gather, each input pixel from the windows that cover it.
    # out[b, yy, xx, :] = sum over windows (i, j) and taps (dy, dx) with
    # i*sh + dy - pt == yy and j*sw + dx - pl == xx of cols[(b, i, j), (dy, dx, :)],
    # visited in (dy, dx) order like the reference's loop of += over offsets.
    for r in prange(n * h):
        b = r // h
        yy = r - b * h
        for xx in range(w):
            for ch in range(c):
                out[b, yy, xx, ch] = 0
            for dy in range(kh):
                i = _covering_window(yy + pt - dy, sh, oh)
                if i < 0:
                    continue
                for dx in range(kw):
                    j = _covering_window(xx + pl - dx, sw, ow)
                    if j < 0:
                        continue
                    row = (b * oh + i) * ow + j
                    base = (dy * kw + dx) * c
                    for ch in range(c):
                        out[b, yy, xx, ch] += cols[row, base + ch]


# ------------------------------------------------- direct small convolutions
# When a convolution has few filters or a short window (F <= 16 or kh*kw*C <= 32,
# e.g. a first layer on 1 or 3 channels), a GEMM over the im2col matrix is
# memory-bound: each long, thin row is used for only a few multiply-adds. These
# kernels instead unfold one output row at a time into a small transposed buffer
# colsT (K, OW) that stays in L1, and run the products with the long OW axis
# innermost, where the vector units can work on it.
@njit(**_jit)
def _fill_colsT(x, r0, r1, oh, kh, kw, sh, sw, pt, pl, ow, colsT):
    # colsT[k, (r - r0)*ow + j] = im2col row (r, j), column k, for output rows
    # r in [r0, r1) of the (n*oh) grid: taps outside the image read zero.
    n, h, w, c = x.shape
    for r in range(r0, r1):
        b = r // oh
        i = r - b * oh
        off = (r - r0) * ow
        for dy in range(kh):
            yy = i * sh + dy - pt
            inside = 0 <= yy < h
            for dx in range(kw):
                # windows j in [lo, hi) read column xx = j*sw + dx - pl inside the image
                lo = min(ow, max(0, (pl - dx + sw - 1) // sw))
                hi = max(lo, min(ow, (w - 1 + pl - dx) // sw + 1))
                for ch in range(c):
                    k = (dy * kw + dx) * c + ch
                    if not inside:
                        for j in range(ow):
                            colsT[k, off + j] = 0
                        continue
                    for j in range(lo):
                        colsT[k, off + j] = 0
                    for j in range(lo, hi):
                        colsT[k, off + j] = x[b, yy, j * sw + dx - pl, ch]
                    for j in range(hi, ow):
                        colsT[k, off + j] = 0


@njit(**_pjit, fastmath=True)
def _conv_small_forward(x, W2T, bias, kh, kw, sh, sw, pt, pl, oh, ow, group, y, store):
    # y[(r, j), f] = bias[f] + sum_k colsT[k, (r, j)] * W2T[f, k], `group` output
    # rows at a time, so the innermost loops run over group*ow pixels. When
    # store has one (K, group*ow) block per group, the unfolded blocks are kept
    # there for the weight gradient (training); with zero blocks they are not.
    n = x.shape[0]
    f_count, k_count = W2T.shape
    rows = n * oh
    ngroups = (rows + group - 1) // group
    for g in prange(ngroups):
        r0 = g * group
        r1 = min(rows, r0 + group)
        length = (r1 - r0) * ow
        if store.shape[0] > 0:
            colsT = store[g]
        else:
            colsT = np.empty((k_count, group * ow), dtype=y.dtype)
        acc = np.empty(group * ow, dtype=y.dtype)
        _fill_colsT(x, r0, r1, oh, kh, kw, sh, sw, pt, pl, ow, colsT)
        base = r0 * ow
        k3 = k_count - k_count % 3
        for f in range(f_count):
            bf = bias[f]
            for p in range(length):
                acc[p] = bf
            # three taps per pass: one load and store of acc per three multiply-adds
            for k in range(0, k3, 3):
                w0 = W2T[f, k]
                w1 = W2T[f, k + 1]
                w2 = W2T[f, k + 2]
                for p in range(length):
                    acc[p] += w0 * colsT[k, p] + w1 * colsT[k + 1, p] + w2 * colsT[k + 2, p]
            for k in range(k3, k_count):
                wv = W2T[f, k]
                for p in range(length):
                    acc[p] += wv * colsT[k, p]
            for p in range(length):
                y[base + p, f] = acc[p]


@njit(**_pjit, fastmath=True)
def _conv_small_dw(x, dy2, kh, kw, sh, sw, pt, pl, oh, ow, group, parts, store):
    # parts[t] = sum over thread t's row groups of colsT @ dyT (K, F); dW2 = parts.sum(0).
    # The unfolded blocks come from the forward pass's store when it kept them.
    n = x.shape[0]
    nparts, k_count, f_count = parts.shape
    rows = n * oh
    ngroups = (rows + group - 1) // group
    zero = np.zeros(1, dtype=parts.dtype)[0]     # sums in the array's dtype (float32 stays)
    kept = store.shape[0] > 0
    for t in prange(nparts):
        local = np.empty((k_count, group * ow), dtype=parts.dtype)
        dyT = np.empty((f_count, group * ow), dtype=parts.dtype)
        acc = parts[t]
        acc[:, :] = 0
        for g in range(t * ngroups // nparts, (t + 1) * ngroups // nparts):
            r0 = g * group
            r1 = min(rows, r0 + group)
            length = (r1 - r0) * ow
            base = r0 * ow
            if kept:
                colsT = store[g]
            else:
                colsT = local
                _fill_colsT(x, r0, r1, oh, kh, kw, sh, sw, pt, pl, ow, colsT)
            for p in range(length):
                for f in range(f_count):
                    dyT[f, p] = dy2[base + p, f]
            f4 = f_count - f_count % 4
            for k in range(k_count):
                # four filters per pass: each colsT load feeds four multiply-adds
                for f in range(0, f4, 4):
                    s0 = zero
                    s1 = zero
                    s2 = zero
                    s3 = zero
                    for p in range(length):
                        c = colsT[k, p]
                        s0 += c * dyT[f, p]
                        s1 += c * dyT[f + 1, p]
                        s2 += c * dyT[f + 2, p]
                        s3 += c * dyT[f + 3, p]
                    acc[k, f] += s0
                    acc[k, f + 1] += s1
                    acc[k, f + 2] += s2
                    acc[k, f + 3] += s3
                for f in range(f4, f_count):
                    s = zero
                    for p in range(length):
                        s += colsT[k, p] * dyT[f, p]
                    acc[k, f] += s


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
def _maxpool_backward(dy, argmax, ph, pw, sh, sw, pt, pl, out):
    # Gather: input pixel (yy, xx) collects dy of every window whose argmax points
    # at it, visiting windows in the reference's (tap dy, tap dx) order.
    n, h, w, c = out.shape
    oh, ow = dy.shape[1], dy.shape[2]
    for r in prange(n * h):
        b = r // h
        yy = r - b * h
        for xx in range(w):
            for ch in range(c):
                out[b, yy, xx, ch] = 0
            for ty in range(ph):
                i = _covering_window(yy + pt - ty, sh, oh)
                if i < 0:
                    continue
                for tx in range(pw):
                    j = _covering_window(xx + pl - tx, sw, ow)
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
def _avgpool_backward(dy, count, ph, pw, sh, sw, pt, pl, out):
    n, h, w, c = out.shape
    oh, ow = dy.shape[1], dy.shape[2]
    for r in prange(n * h):
        b = r // h
        yy = r - b * h
        for xx in range(w):
            for ch in range(c):
                out[b, yy, xx, ch] = 0
            for ty in range(ph):
                i = _covering_window(yy + pt - ty, sh, oh)
                if i < 0:
                    continue
                for tx in range(pw):
                    j = _covering_window(xx + pl - tx, sw, ow)
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


class NumbaOps(NumpyOps):
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
    #: bytes of im2col matrix per chunk: small enough to stay in the 32 MiB L3
    #: (with the GEMM's output), large enough for an efficient GEMM
    conv_chunk_bytes = 4 << 20

    #: pixels per row group of the small-convolution kernels (buffers stay in L1/L2)
    small_conv_pixels = 512

    def _group(self, ow):
        return max(1, self.small_conv_pixels // ow)

    @staticmethod
    def _blocks(rows):
        # one partial weight gradient per thread
        return max(1, min(rows, numba.get_num_threads()))

    def _chunk_images(self, n, rows_per_image, k, itemsize):
        per_image = max(rows_per_image * k * itemsize, 1)
        return max(1, min(n, self.conv_chunk_bytes // per_image))

    def conv2d_forward(self, x, W2, b, kh, kw, sh, sw, pads, training=True):
        """Same as NumpyOps.conv2d_forward: y = im2col(x) @ W2 + b, (N*OH*OW, F).

        The batch is processed in chunks of images: each chunk's im2col rows are
        written to a cache-sized buffer and multiplied at once (numpy BLAS), so
        the full im2col matrix never exists; nothing is saved for backward
        (saved is None: backward recomputes the chunks from x). Small convolutions
        (few filters or a short window) run the direct kernels instead and, when
        training, keep their unfolded blocks (K x N*OH*OW values) for dW.
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
            group = self._group(ow)
            ngroups = -(-(n * oh) // group) if training else 0
            store = np.empty((ngroups, k, group * ow), dtype=x.dtype)
            _conv_small_forward(x, np.ascontiguousarray(W2.T), bias.astype(x.dtype, copy=False),
                                kh, kw, sh, sw, pt, pl, oh, ow, group, y, store)
            return y, (store if training else None)
        step = self._chunk_images(n, oh * ow, k, x.itemsize)
        rows = oh * ow
        buf = np.empty((step * rows, k), dtype=x.dtype)
        for s in range(0, n, step):
            e = min(n, s + step)
            cols = buf[:(e - s) * rows]
            _im2col(x[s:e], kh, kw, sh, sw, pt, pl, oh, ow, cols)
            out = y[s * rows:e * rows]
            np.matmul(cols, W2, out=out)
            if b is not None:
                out += b
        return y, None

    def conv2d_backward(self, dy2, x, saved, W2, kh, kw, sh, sw, pads, need_dx=True):
        """Same as NumpyOps.conv2d_backward: (dx or None, dW2 = cols^T dy2,
        db = sum of dy2 over rows), chunk by chunk of images: each chunk's im2col
        rows are recomputed into a cache-sized buffer, used for its share of dW2,
        and its dcols = dy2 @ W2^T is folded back by col2im while still in cache.
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
        step = self._chunk_images(n, rows, k, x.itemsize)
        small = _is_small_conv(k, f) and x.dtype == dy2.dtype
        buf = None if small else np.empty((step * rows, k), dtype=x.dtype)
        dbuf = np.empty((step * rows, k), dtype=dy2.dtype) if need_dx else None
        dx = np.empty((n, h, w, c), dtype=dy2.dtype) if need_dx else None
        W2t = np.ascontiguousarray(W2.T)
        if small:
            parts = np.empty((self._blocks(n * oh), k, f), dtype=dy2.dtype)
            group = self._group(ow)
            store = saved if saved is not None and saved.shape[1:] == (k, group * ow) \
                else np.empty((0, k, group * ow), dtype=dy2.dtype)
            _conv_small_dw(x, dy2, kh, kw, sh, sw, pt, pl, oh, ow, group, parts, store)
            dW2 = parts.sum(axis=0)
        else:
            dW2 = np.zeros((k, f), dtype=dy2.dtype)
            part = np.empty((k, f), dtype=dy2.dtype)
        for s in range(0, n, step):
            e = min(n, s + step)
            d = dy2[s * rows:e * rows]
            if not small:
                cols = buf[:(e - s) * rows]
                _im2col(x[s:e], kh, kw, sh, sw, pt, pl, oh, ow, cols)
                np.matmul(cols.T, d, out=part)
                dW2 += part
            elif not need_dx:
                break
            if need_dx:
                dcols = dbuf[:(e - s) * rows]
                np.matmul(d, W2t, out=dcols)
                _col2im(dcols, e - s, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, dx[s:e])
        parts = np.empty((self._blocks(dy2.shape[0]), f), dtype=dy2.dtype)
        _column_sums(dy2, parts)
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
            _maxpool2x2(x, oh, ow, y, argmax)
        else:
            _maxpool(x, ph, pw, sh, sw, pt, pl, oh, ow, y, argmax)
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
            _maxpool2x2_backward(dy, argmax, out)
        else:
            _maxpool_backward(dy, argmax, ph, pw, sh, sw, pt, pl, out)
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
        out = np.empty(tuple(x_shape), dtype=dy.dtype)
        _avgpool_backward(_contig(dy), _contig(count), ph, pw, sh, sw, pt, pl, out)
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
        _relu(x, out)
        return out

    def relu_backward(self, dy, y):
        """Same as NumpyOps.relu_backward: dy where y > 0, else 0."""
        if dy.shape != y.shape or dy.dtype != y.dtype or not _jittable(dy):
            return super().relu_backward(dy, y)
        dy, y = _contig(dy), _contig(y)
        out = np.empty_like(dy)
        _relu_backward(dy, y, out)
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
        _adam(p, g, m, v, s(lr), s(beta_1), s(beta_2), s(1 - beta_1), s(1 - beta_2),
              s(1 - beta_1 ** t), s(1 - beta_2 ** t), s(epsilon))

    def sgd_update(self, p, g, velocity, lr, momentum, nesterov, weight_decay):
        """Same as NumpyOps.sgd_update: heavy-ball momentum (optionally Nesterov)
        with L2 weight decay, in place, one fused pass."""
        vel = velocity if velocity is not None else p
        if not all(a.flags.c_contiguous and a.dtype == p.dtype for a in (p, g, vel)) \
                or not _jittable(p) or (velocity is None and momentum):
            return super().sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay)
        s = p.dtype.type
        _sgd(p, g, vel, s(lr), s(momentum), bool(nesterov), s(weight_decay), velocity is not None)


def _window_counts(h, w, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow, dtype):
    """How many real (unpadded) pixels each pooling window covers: (OH, OW, 1)."""
    rows = np.array([min(i * sh - pt + ph, h) - max(i * sh - pt, 0) for i in range(oh)], dtype=dtype)
    cols = np.array([min(j * sw - pl + pw, w) - max(j * sw - pl, 0) for j in range(ow)], dtype=dtype)
    return (rows[:, None] * cols[None, :])[:, :, None]
