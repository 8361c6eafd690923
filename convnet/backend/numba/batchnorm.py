"""Batch normalization kernels of the numba backend.

The same three functions as NumpyOps.batchnorm_statistics / batchnorm_normalize /
batchnorm_backward (convnet/backend/numpy_ops.py; read those first), computed in
fewer passes over memory. x is seen as a matrix (M, C): M = N*H*W rows, one
column per channel (channels-last makes that a free reshape).

- Per-channel sums are taken in float64 over chunks of rows, one chunk per task
  in parallel, and the chunks' partial sums are added at the end: numpy's own
  reductions over the leading axes of (M, C) take several strided passes.
- The statistics take two passes (the mean, then the squared deviations from it:
  the one-pass E[x^2] - E[x]^2 loses digits in float32), normalize one pass that
  writes y and xhat together, backward one pass for the two sums and one for dx.
- Arrays below threads.serial_below() elements run the serial twins: a parallel
  launch costs more than it saves there.
"""

import numpy as np
from numba import njit, prange

from . import threads
from ._jit import JIT, PJIT, serial_twin

_CHUNKS = 16        # row chunks for the partial sums (a multiple of any small core count)


@njit(inline="always", **JIT)
def _bounds(m, chunks, k):
    # rows [lo, hi) of chunk k of `chunks` equal chunks of m rows
    step = (m + chunks - 1) // chunks
    return min(m, k * step), min(m, (k + 1) * step)



@njit(**PJIT)
def _column_sums(x, chunks):
    # s[c] = sum_i x[i, c], in float64
    m, c = x.shape
    parts = np.zeros((chunks, c))
    for k in prange(chunks):
        lo, hi = _bounds(m, chunks, k)
        acc = parts[k]
        for i in range(lo, hi):
            for j in range(c):
                acc[j] += x[i, j]
    return parts.sum(axis=0)


@njit(**PJIT)
def _centered_square_sums(x, mean, chunks):
    # s[c] = sum_i (x[i, c] - mean[c])^2, in float64
    m, c = x.shape
    parts = np.zeros((chunks, c))
    for k in prange(chunks):
        lo, hi = _bounds(m, chunks, k)
        acc = parts[k]
        for i in range(lo, hi):
            for j in range(c):
                d = x[i, j] - mean[j]
                acc[j] += d * d
    return parts.sum(axis=0)


@njit(**PJIT)
def _normalize(x, mean, inv_std, gamma, beta, y, xhat):
    # xhat = (x - mean) * inv_std;  y = gamma * xhat + beta
    m, c = x.shape
    for i in prange(m):
        for j in range(c):
            h = (x[i, j] - mean[j]) * inv_std[j]
            xhat[i, j] = h
            y[i, j] = h * gamma[j] + beta[j]


@njit(**PJIT)
def _grad_sums(dy, xhat, chunks):
    # (sum_i dy[i, c], sum_i dy[i, c] * xhat[i, c]), in float64
    m, c = dy.shape
    parts = np.zeros((chunks, 2, c))
    for k in prange(chunks):
        lo, hi = _bounds(m, chunks, k)
        acc = parts[k]
        for i in range(lo, hi):
            for j in range(c):
                g = dy[i, j]
                acc[0, j] += g
                acc[1, j] += g * xhat[i, j]
    return parts.sum(axis=0)


@njit(**PJIT)
def _input_grad(dy, xhat, scale, mean_dy, mean_dy_xhat, dx):
    # dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)),  scale = gamma * inv_std
    m, c = dy.shape
    for i in prange(m):
        for j in range(c):
            dx[i, j] = scale[j] * (dy[i, j] - mean_dy[j] - xhat[i, j] * mean_dy_xhat[j])


# Module-level kernels, each with its serial twin under a name of its own: Numba's
# disk cache keys a compilation by the function's qualified name and line, so the
# two must not share them (closures made twice from one factory did: a parallel
# call could load the serial build, and each process compiled them again).
_PARALLEL = {name: kernel for name, kernel in (("column_sums", _column_sums),
                                               ("centered_square_sums", _centered_square_sums),
                                               ("normalize", _normalize), ("grad_sums", _grad_sums),
                                               ("input_grad", _input_grad))}
_SERIAL = {name: serial_twin(kernel) for name, kernel in _PARALLEL.items()}


def _kernels(size):
    return _SERIAL if size < threads.serial_below() else _PARALLEL


def _as_rows(a):
    """(..., C) as a C-contiguous (M, C) matrix (a view when it already is contiguous)."""
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


class BatchNormKernels:
    """The NumbaOps methods for batch normalization (mixed into NumbaOps)."""

    def batchnorm_statistics(self, x):
        """Same as NumpyOps.batchnorm_statistics: per-channel mean and biased variance."""
        if x.dtype not in (np.float32, np.float64) or x.ndim < 2:
            return super().batchnorm_statistics(x)
        rows = _as_rows(x)
        k = _kernels(rows.size)
        m = rows.shape[0]
        mean = k["column_sums"](rows, _CHUNKS) / m
        var = k["centered_square_sums"](rows, mean.astype(x.dtype), _CHUNKS) / m
        return mean.astype(x.dtype), var.astype(x.dtype)

    def batchnorm_normalize(self, x, mean, var, gamma, beta, epsilon):
        """Same as NumpyOps.batchnorm_normalize: (y, xhat, inv_std)."""
        if x.dtype not in (np.float32, np.float64) or x.ndim < 2:
            return super().batchnorm_normalize(x, mean, var, gamma, beta, epsilon)
        dt = x.dtype
        inv_std = (1 / np.sqrt(np.asarray(var, dt) + dt.type(epsilon))).astype(dt)
        rows = _as_rows(x)
        y = np.empty_like(rows)
        xhat = np.empty_like(rows)
        _kernels(rows.size)["normalize"](rows, np.ascontiguousarray(mean, dt), inv_std,
                                         np.ascontiguousarray(gamma, dt), np.ascontiguousarray(beta, dt),
                                         y, xhat)
        return y.reshape(x.shape), xhat.reshape(x.shape), inv_std

    def batchnorm_backward(self, dy, xhat, inv_std, gamma, training, need_dx=True):
        """Same as NumpyOps.batchnorm_backward: (dx, dgamma, dbeta)."""
        if dy.dtype not in (np.float32, np.float64) or dy.dtype != xhat.dtype or dy.ndim < 2:
            return super().batchnorm_backward(dy, xhat, inv_std, gamma, training, need_dx)
        dt = dy.dtype
        rows, xrows = _as_rows(dy), _as_rows(xhat)
        k = _kernels(rows.size)
        sums = k["grad_sums"](rows, xrows, _CHUNKS)
        dbeta, dgamma = sums[0].astype(dt), sums[1].astype(dt)
        if not need_dx:
            return None, dgamma, dbeta
        scale = (np.asarray(gamma, dt) * np.asarray(inv_std, dt)).astype(dt)
        if not training:
            return dy * scale, dgamma, dbeta
        m = rows.shape[0]
        dx = np.empty_like(rows)
        k["input_grad"](rows, xrows, scale, (sums[0] / m).astype(dt), (sums[1] / m).astype(dt), dx)
        return dx.reshape(dy.shape), dgamma, dbeta
