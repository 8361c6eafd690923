"""Element-wise and row-wise kernels, jitted: the sum of two arrays, relu and its
backward pass, softmax and the fused softmax cross-entropy; and the one-pass
steps the chunked convolution applies to each chunk while it is in cache (bias
and ReLU on its output; the ReLU's mask and the bias gradient's column sums on
its dy).

Same functions as the NumpyOps methods of the same names (read those first):
one pass over memory where numpy makes several. Memory-bound kernels come with a
serial twin for small arrays (see _jit.Sized).
"""

import math

from numba import njit, prange

from ._jit import JIT, PJIT, Sized


@njit(**PJIT)
def _add(a, b, out):
    # out = a + b (numpy's add runs on one thread)
    p = a.reshape(-1)
    q = b.reshape(-1)
    o = out.reshape(-1)
    for k in prange(p.size):
        o[k] = p[k] + q[k]


@njit(**PJIT)
def _relu(x, out):
    a = x.reshape(-1)
    o = out.reshape(-1)
    zero = 0
    for k in prange(a.size):
        v = a[k]
        # max(v, 0) that keeps NaN, as np.maximum does
        o[k] = v if (v > zero or v != v) else zero


@njit(**PJIT)
def _relu_backward(dy, y, out):
    d = dy.reshape(-1)
    a = y.reshape(-1)
    o = out.reshape(-1)
    for k in prange(d.size):
        o[k] = d[k] if a[k] > 0 else d[k] * 0   # d*0 keeps the reference's NaN/-0 rules


@njit(**JIT)
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


@njit(**JIT)
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


@njit(**JIT)
def bias_relu_rows(out, b, relu):
    # out = out + b (b (F,) added to each row of out (M, F)), then max(., 0) when
    # relu (NaN kept, as _relu): one pass over a chunk of a convolution's output
    m, f = out.shape
    zero = out.dtype.type(0)
    for i in range(m):
        for q in range(f):
            v = out[i, q] + b[q]
            if relu and not (v > zero or v != v):
                v = zero
            out[i, q] = v


@njit(**JIT)
def masked_rows_and_sums(dy, y, out, sums):
    # out = dy where y > 0, else dy * 0 (as _relu_backward), and sums[q] += the
    # column sums of out: one pass over a chunk of the gradient before a ReLU
    m, f = dy.shape
    for i in range(m):
        for q in range(f):
            d = dy[i, q]
            if not y[i, q] > 0:
                d = d * 0
            out[i, q] = d
            sums[q] += d


@njit(**JIT)
def add_column_sums(a, sums):
    # sums[q] += the column sums of a chunk a (M, F)
    m, f = a.shape
    for i in range(m):
        for q in range(f):
            sums[q] += a[i, q]


add = Sized(_add)
relu = Sized(_relu)
relu_backward = Sized(_relu_backward)
softmax_rows = _softmax_rows
sparse_softmax_xent = _sparse_softmax_xent
