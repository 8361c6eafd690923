"""Batch normalization kernels of the numba backend.

The same three functions as NumpyOps.batchnorm_statistics / batchnorm_normalize /
batchnorm_backward (convnet/backend/numpy_ops.py; read those first), computed in
fewer passes over memory. x is seen as a matrix (M, C): M = N*H*W rows, one
column per channel (channels-last makes that a free reshape).

- Per-channel sums are taken in float64 over chunks of rows, one chunk per task
  in parallel, and the chunks' partial sums are added at the end: numpy's own
  reductions over the leading axes of (M, C) take several strided passes.
- The statistics take one pass, over the deviations d = x - s from a shift s
  per channel (the channel's value in the first row):
      mean = s + sum(d) / M,   var = sum(d^2) / M - (sum(d) / M)^2
  which is exact algebra; with s inside the data, |mean - s| is of the order of
  the spread, so the subtraction loses no more than a digit or two of float64
  (the plain E[x^2] - E[x]^2 loses every digit when |mean| >> std).
- Normalize writes only y. The backward pass gets x and the mean instead of
  xhat (batchnorm_normalize's `saved`), and recomputes xhat = (x - mean) * inv_std
  as it reads them, with the same operations, so xhat is bit for bit the one the
  forward pass used: one array less written per forward pass, and no more read
  back. Backward takes one pass for the two sums and one for dx.
- For float32 with a multiple of 16 channels on a CPU with 512-bit vectors, or
  AVX2 with FMA (simd.fits_narrow), both kernels of sums are one (_pair_sums16)
  that holds a row's channels as vectors (simd.py) whose sums stay in registers,
  two rows per step; each block of VECTOR_BLOCK rows is summed in float32 and
  then added into the float64 sums (the scalar kernels load and store their
  float64 sums in memory for every element: measured on W5's
  first stage at batch 32, (32768, 16) rows, the statistics' sums take 0.046 ms
  instead of 0.114 and the gradient's 0.049 instead of 0.174). A block's float32
  sum adds no more rounding than numpy's own float32 sums.
- Arrays below threads.serial_below() elements run the serial twins: a parallel
  launch costs more than it saves there.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from . import threads
from ._jit import JIT, PJIT, serial_twin
from .simd import LANES, fits_narrow, vadd, vfma, vload, vmul, vstore, vsub, vzero

_CHUNKS = 16        # row chunks for the partial sums (a multiple of any small core count)

#: rows whose sums the vector kernels add in float32 before the float64 sums take them
VECTOR_BLOCK = 128


@njit(inline="always", **JIT)
def _bounds(m, chunks, k):
    # rows [lo, hi) of chunk k of `chunks` equal chunks of m rows
    step = (m + chunks - 1) // chunks
    return min(m, k * step), min(m, (k + 1) * step)



@njit(**PJIT)
def _shifted_sums(x, shift, chunks):
    # (sum_i d[i, c], sum_i d[i, c]^2) with d = x - shift, in float64
    m, c = x.shape
    parts = np.zeros((chunks, 2, c))
    for k in prange(chunks):
        lo, hi = _bounds(m, chunks, k)
        acc = parts[k]
        for i in range(lo, hi):
            for j in range(c):
                d = np.float64(x[i, j]) - shift[j]
                acc[0, j] += d
                acc[1, j] += d * d
    return parts.sum(axis=0)


@njit(**PJIT)
def _normalize(x, mean, inv_std, gamma, beta, y):
    # y = gamma * xhat + beta,  xhat = (x - mean) * inv_std
    m, c = x.shape
    for i in prange(m):
        for j in range(c):
            h = (x[i, j] - mean[j]) * inv_std[j]
            y[i, j] = h * gamma[j] + beta[j]


@njit(**PJIT)
def _grad_sums(dy, x, mean, inv_std, chunks):
    # (sum_i dy[i, c], sum_i dy[i, c] * xhat[i, c]), in float64, xhat recomputed
    # exactly as _normalize computed it
    m, c = dy.shape
    parts = np.zeros((chunks, 2, c))
    for k in prange(chunks):
        lo, hi = _bounds(m, chunks, k)
        acc = parts[k]
        for i in range(lo, hi):
            for j in range(c):
                g = dy[i, j]
                h = (x[i, j] - mean[j]) * inv_std[j]
                acc[0, j] += g
                acc[1, j] += g * h
    return parts.sum(axis=0)


@njit(**PJIT)
def _input_grad(dy, x, mean, inv_std, scale, mean_dy, mean_dy_xhat, dx):
    # dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)),  scale = gamma * inv_std
    m, c = dy.shape
    for i in prange(m):
        for j in range(c):
            h = (x[i, j] - mean[j]) * inv_std[j]
            dx[i, j] = scale[j] * (dy[i, j] - mean_dy[j] - h * mean_dy_xhat[j])


@njit(**JIT)
def _into_float64(acc, g, block, a0, a1, q0, q1):
    # acc[0, g:g + 16] += a0 + a1 and acc[1, g:g + 16] += q0 + q1, in float64
    vstore(block, 0, vadd(a0, a1))
    vstore(block, LANES, vadd(q0, q1))
    for j in range(LANES):
        acc[0, g + j] += block[j]
        acc[1, g + j] += block[LANES + j]


@njit(**PJIT)
def _pair_sums16(u, u_shift, u_scale, x, x_shift, x_scale, chunks):
    # (sum_i a[i, c], sum_i a[i, c] * h[i, c]) in float64, with a = (u - u_shift) * u_scale
    # and h = (x - x_shift) * x_scale, for float32 (M, C), C a multiple of 16: 16
    # channels at a time, two rows per step, four vector sums in registers. Both
    # kernels of sums are this one:
    #   statistics: u = x, both shifts s, both scales 1  ->  sum(d), sum(d^2)
    #   gradient:   u = dy, shift 0, scale 1; x's mean and inv_std  ->  sum(dy), sum(dy * xhat)
    # (xhat rounded as _normalize rounds it: a subtraction, then a product)
    m, c = x.shape
    uf = u.ravel()
    xf = x.ravel()
    parts = np.zeros((chunks, 2, c))
    for k in prange(chunks):
        lo, hi = _bounds(m, chunks, k)
        acc = parts[k]
        block = np.empty(2 * LANES, dtype=np.float32)
        for g in range(0, c, LANES):
            us, ur = vload(u_shift, g), vload(u_scale, g)
            xs, xr = vload(x_shift, g), vload(x_scale, g)
            for b0 in range(lo, hi, VECTOR_BLOCK):
                b1 = min(hi, b0 + VECTOR_BLOCK)
                a0 = vzero(); a1 = vzero(); q0 = vzero(); q1 = vzero()  # noqa: E702
                for i in range(b0, b1 - 1, 2):
                    e0 = vmul(vsub(vload(uf, i * c + g), us), ur)
                    e1 = vmul(vsub(vload(uf, (i + 1) * c + g), us), ur)
                    h0 = vmul(vsub(vload(xf, i * c + g), xs), xr)
                    h1 = vmul(vsub(vload(xf, (i + 1) * c + g), xs), xr)
                    a0 = vadd(a0, e0); q0 = vfma(e0, h0, q0)  # noqa: E702
                    a1 = vadd(a1, e1); q1 = vfma(e1, h1, q1)  # noqa: E702
                if (b1 - b0) % 2:
                    e0 = vmul(vsub(vload(uf, (b1 - 1) * c + g), us), ur)
                    h0 = vmul(vsub(vload(xf, (b1 - 1) * c + g), xs), xr)
                    a0 = vadd(a0, e0); q0 = vfma(e0, h0, q0)  # noqa: E702
                _into_float64(acc, g, block, a0, a1, q0, q1)
    return parts.sum(axis=0)


# Module-level kernels, each with its serial twin under a name of its own: Numba's
# disk cache keys a compilation by the function's qualified name and line, so the
# two must not share them (closures made twice from one factory did: a parallel
# call could load the serial build, and each process compiled them again).
_PARALLEL = {name: kernel for name, kernel in (("shifted_sums", _shifted_sums), ("normalize", _normalize),
                                               ("grad_sums", _grad_sums), ("input_grad", _input_grad),
                                               ("pair_sums16", _pair_sums16))}
_SERIAL = {name: serial_twin(kernel) for name, kernel in _PARALLEL.items()}


def _kernels(size):
    return _SERIAL if size < threads.serial_below() else _PARALLEL


def _vectors_fit(*rows):
    """Do the vector kernels of sums take these (M, C) arrays? float32, C a
    multiple of 16, and simd.fits_narrow (four sums in flight fit AVX2's registers
    too: W5's (32768, 16) rows there, statistics + normalize + backward 0.76 ->
    0.49 ms)."""
    return rows[0].shape[1] % LANES == 0 and fits_narrow(*rows)


def _as_rows(a):
    """(..., C) as a C-contiguous (M, C) matrix (a view when it already is contiguous)."""
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


class NormalizedInput(NamedTuple):
    """batchnorm_normalize's `saved` on this backend: x as (M, C) rows and the
    mean it was normalized with (C,), from which backward recomputes xhat."""
    rows: np.ndarray
    mean: np.ndarray


class BatchNormKernels:
    """The NumbaOps methods for batch normalization (mixed into NumbaOps)."""

    def batchnorm_statistics(self, x):
        """Same as NumpyOps.batchnorm_statistics: per-channel mean and biased variance."""
        if x.dtype not in (np.float32, np.float64) or x.ndim < 2 or x.size == 0:
            return super().batchnorm_statistics(x)
        rows = _as_rows(x)
        m = rows.shape[0]
        shift = rows[0].astype(np.float64)
        if _vectors_fit(rows):      # the shift in float32: the same number
            s32, ones = np.array(rows[0]), np.ones(rows.shape[1], dtype=np.float32)
            sums = _kernels(rows.size)["pair_sums16"](rows, s32, ones, rows, s32, ones, _CHUNKS)
        else:
            sums = _kernels(rows.size)["shifted_sums"](rows, shift, _CHUNKS)
        mean_d = sums[0] / m
        var = np.maximum(sums[1] / m - mean_d * mean_d, 0.0)
        return (shift + mean_d).astype(x.dtype), var.astype(x.dtype)

    def batchnorm_normalize(self, x, mean, var, gamma, beta, epsilon):
        """Same as NumpyOps.batchnorm_normalize: (y, saved, inv_std), saved a
        NormalizedInput (x's rows and the mean) instead of xhat."""
        if x.dtype not in (np.float32, np.float64) or x.ndim < 2:
            return super().batchnorm_normalize(x, mean, var, gamma, beta, epsilon)
        dt = x.dtype
        inv_std = (1 / np.sqrt(np.asarray(var, dt) + dt.type(epsilon))).astype(dt)
        rows = _as_rows(x)
        # a copy: backward must see this mean even if it is the moving mean, which
        # a later training step updates in place
        mean = np.array(mean, dtype=dt)
        y = np.empty_like(rows)
        _kernels(rows.size)["normalize"](rows, mean, inv_std, np.ascontiguousarray(gamma, dt),
                                         np.ascontiguousarray(beta, dt), y)
        return y.reshape(x.shape), NormalizedInput(rows, mean), inv_std

    def batchnorm_backward(self, dy, saved, inv_std, gamma, training, need_dx=True):
        """Same as NumpyOps.batchnorm_backward: (dx, dgamma, dbeta), from the
        NormalizedInput that batchnorm_normalize saved."""
        if not isinstance(saved, NormalizedInput):      # normalize fell back to the reference
            return super().batchnorm_backward(dy, saved, inv_std, gamma, training, need_dx)
        x, mean = saved
        dt = x.dtype
        if dy.dtype != dt:
            xhat = ((x - mean) * inv_std).reshape(dy.shape)
            return super().batchnorm_backward(dy, xhat, inv_std, gamma, training, need_dx)
        rows = _as_rows(dy)
        inv_std = np.ascontiguousarray(inv_std, dt)
        k = _kernels(rows.size)
        if _vectors_fit(rows, x, mean, inv_std):
            c = rows.shape[1]
            sums = k["pair_sums16"](rows, np.zeros(c, dt), np.ones(c, dt), x, mean, inv_std, _CHUNKS)
        else:
            sums = k["grad_sums"](rows, x, mean, inv_std, _CHUNKS)
        dbeta, dgamma = sums[0].astype(dt), sums[1].astype(dt)
        if not need_dx:
            return None, dgamma, dbeta
        scale = (np.asarray(gamma, dt) * inv_std).astype(dt)
        if not training:
            return dy * scale, dgamma, dbeta
        m = rows.shape[0]
        dx = np.empty_like(rows)
        k["input_grad"](rows, x, mean, inv_std, scale, (sums[0] / m).astype(dt), (sums[1] / m).astype(dt), dx)
        return dx.reshape(dy.shape), dgamma, dbeta
