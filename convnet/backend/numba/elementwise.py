"""Element-wise and row-wise kernels, jitted: the sum of two arrays, relu and its
backward pass, the column sums behind a bias gradient, softmax and the fused
softmax cross-entropy.

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


@njit(**PJIT)
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


add = Sized(_add)
relu = Sized(_relu)
relu_backward = Sized(_relu_backward)
column_sums = Sized(_column_sums)
softmax_rows = _softmax_rows
sparse_softmax_xent = _sparse_softmax_xent
