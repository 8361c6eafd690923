"""Register-blocked float32 matrix products for the shapes a convolution makes,
on one core: what numpy's `a @ b` computes, faster where OpenBLAS is slow.

A convolution's products are skinny: im2col rows (M x K, K = 9*C = 144..576)
times a kernel matrix with F = 16..64 columns, and the two products of its
backward pass. OpenBLAS packs both operands into its own layout before every
product and, on this project's AVX-512 machine, runs 256-bit kernels; on those
shapes it reaches 75-95 GFLOP/s per core. These kernels skip the packing and
keep a tile of sums in registers:

    C[i0:i0+6, j:j+32] = sum over p of  A[i0:i0+6, p] (one number per row)
                                      * B[p, j:j+32]   (two 16-lane vectors)

Each step p loads two vectors of B and six numbers of A, and does 12 vector
multiply-adds into 12 vector sums that stay in registers (simd.py) until the
tile is done. The six rows share each loaded vector of B, the two vectors share
each number of A; 12 independent sums keep both FMA units busy through their
4-cycle latency. One B panel (K x 32) stays in L1 while every row tile of A
streams past. Measured on one core of an AMD EPYC (Zen 5): (4096 x 288) @
(288 x 32) at 200-228 GFLOP/s (OpenBLAS 89), (4096 x 288) @ (288 x 64) at 129-216
(77). Every column is summed in the same order, so equal columns of b give
bit-equal columns of out.

    matmul(a, b, out)          out = a @ b      (also for a = x.T of a C-contiguous x)
    matmul_tn_add(a, b, out)   out += a.T @ b   (a convolution's dW2 = cols^T dy)

One product here is not a tile, and not on one core: `matmul_few_rows`, for a
with fewer rows than a tile (a Dense layer at batch 1 to 11). Its work is reading
b, each number of which serves only m multiply-adds, so the cores split the
inner dimension K, each streaming its contiguous share of b's rows into partial
sums of the whole (M, N) out, where a one-thread BLAS reads b at one core's
memory bandwidth (W2's 4096 x 256 Dense layer took 0.15-0.40 ms of a batch-1
inference of 0.8-1.2 ms). Only for a b larger than a core's L2 cache
(FEW_ROWS_MIN_BYTES).

Each falls back to numpy (with whatever BLAS threads the caller has set) where
the kernels do not apply: not float32, fewer than 12 rows (matmul), a column
count not a multiple of 16 (matmul_tn_add), a strided operand, or a CPU without
512-bit vectors (simd.fits). kernel_matmul and
kernel_matmul_tn_add are the kernels alone, without checks.
"""

import numpy as np
from numba import njit, prange

from ._jit import JIT, PJIT
from .simd import LANES, fits, fits_narrow, vfma, vload, vsplat_at, vstore, vzero

#: rows of A per register tile (6 rows x 32 columns = 12 of AVX-512's 32 vector
#: registers, plus two for B and one for A's broadcast number)
TILE_ROWS = 6

#: rows of the inner dimension per block in matmul_tn_add: one block of B
#: (256 x 32 floats, 32 KiB) stays in L1 while every tile of C reads it
TN_BLOCK = 256


@njit(**JIT)
def _fma_row(af, i, b0, b1, c0, c1):
    # one row of a tile: (c0, c1) += af[i] * (b0, b1)
    v = vsplat_at(af, i)
    return vfma(v, b0, c0), vfma(v, b1, c1)


@njit(**JIT)
def _matmul(a, b, c):
    """c[:, :N - N % 32] of c (M, N) = a (M, K) @ b (K, N): the panels of 32 columns
    (C-contiguous float32, M a multiple of 6). A last panel of 16 columns is
    _panel16's."""
    m, k = a.shape
    n = b.shape[1]
    af = a.ravel()
    bf = b.ravel()
    cf = c.ravel()
    for j in range(0, n - 31, 32):          # panels of 32 columns
        i = 0
        while i + TILE_ROWS <= m:
            c00 = vzero(); c01 = vzero(); c10 = vzero(); c11 = vzero(); c20 = vzero(); c21 = vzero()  # noqa: E702
            c30 = vzero(); c31 = vzero(); c40 = vzero(); c41 = vzero(); c50 = vzero(); c51 = vzero()  # noqa: E702
            r = i * k
            for p in range(k):
                b0 = vload(bf, p * n + j)
                b1 = vload(bf, p * n + j + 16)
                c00, c01 = _fma_row(af, r + p, b0, b1, c00, c01)
                c10, c11 = _fma_row(af, r + k + p, b0, b1, c10, c11)
                c20, c21 = _fma_row(af, r + 2 * k + p, b0, b1, c20, c21)
                c30, c31 = _fma_row(af, r + 3 * k + p, b0, b1, c30, c31)
                c40, c41 = _fma_row(af, r + 4 * k + p, b0, b1, c40, c41)
                c50, c51 = _fma_row(af, r + 5 * k + p, b0, b1, c50, c51)
            o = i * n + j
            vstore(cf, o, c00); vstore(cf, o + 16, c01); o += n  # noqa: E702
            vstore(cf, o, c10); vstore(cf, o + 16, c11); o += n  # noqa: E702
            vstore(cf, o, c20); vstore(cf, o + 16, c21); o += n  # noqa: E702
            vstore(cf, o, c30); vstore(cf, o + 16, c31); o += n  # noqa: E702
            vstore(cf, o, c40); vstore(cf, o + 16, c41); o += n  # noqa: E702
            vstore(cf, o, c50); vstore(cf, o + 16, c51)  # noqa: E702
            i += TILE_ROWS


@njit(**JIT)
def _panel16(af, bf, cf, m, k, n, j):
    """The 16 columns j:j+16 of c = a @ b (flat arrays; a (m, k), b (k, n), c (m, n);
    m a multiple of 12).

    One vector per row, so a tile of 12 rows keeps 12 sums in flight (the FMA's
    latency times its two units); each step loads one vector of b and 12 numbers of a."""
    i = 0
    while i + 12 <= m:
        s0 = vzero(); s1 = vzero(); s2 = vzero(); s3 = vzero(); s4 = vzero(); s5 = vzero()  # noqa: E702
        s6 = vzero(); s7 = vzero(); s8 = vzero(); s9 = vzero(); s10 = vzero(); s11 = vzero()  # noqa: E702
        r = i * k
        for p in range(k):
            v = vload(bf, p * n + j)
            s0 = vfma(vsplat_at(af, r + p), v, s0)
            s1 = vfma(vsplat_at(af, r + k + p), v, s1)
            s2 = vfma(vsplat_at(af, r + 2 * k + p), v, s2)
            s3 = vfma(vsplat_at(af, r + 3 * k + p), v, s3)
            s4 = vfma(vsplat_at(af, r + 4 * k + p), v, s4)
            s5 = vfma(vsplat_at(af, r + 5 * k + p), v, s5)
            s6 = vfma(vsplat_at(af, r + 6 * k + p), v, s6)
            s7 = vfma(vsplat_at(af, r + 7 * k + p), v, s7)
            s8 = vfma(vsplat_at(af, r + 8 * k + p), v, s8)
            s9 = vfma(vsplat_at(af, r + 9 * k + p), v, s9)
            s10 = vfma(vsplat_at(af, r + 10 * k + p), v, s10)
            s11 = vfma(vsplat_at(af, r + 11 * k + p), v, s11)
        o = i * n + j
        vstore(cf, o, s0); vstore(cf, o + n, s1); vstore(cf, o + 2 * n, s2); vstore(cf, o + 3 * n, s3)  # noqa: E702
        vstore(cf, o + 4 * n, s4); vstore(cf, o + 5 * n, s5); vstore(cf, o + 6 * n, s6)  # noqa: E702
        vstore(cf, o + 7 * n, s7); vstore(cf, o + 8 * n, s8); vstore(cf, o + 9 * n, s9)  # noqa: E702
        vstore(cf, o + 10 * n, s10); vstore(cf, o + 11 * n, s11)  # noqa: E702
        i += 12


@njit(**JIT)
def _matmul_tn_add(a, b, c):
    """c[:, :N - N % 32] of c (K, N) += a (M, K)^T @ b (M, N): the panels of 32
    columns (C-contiguous float32; a last panel of 16 is _panel16_tn_add's).

    The tile is now 6 rows of c (6 columns of a, adjacent in each row of a) x 32
    columns, and the inner dimension is M: step p broadcasts a[p, i:i+6] and loads
    b[p, j:j+32]. M goes in blocks of TN_BLOCK rows so that B's block stays in L1;
    each tile is loaded from c at the start of a block and stored at its end."""
    m, k = a.shape
    n = b.shape[1]
    af = a.ravel()
    bf = b.ravel()
    cf = c.ravel()
    for p0 in range(0, m, TN_BLOCK):
        p1 = min(m, p0 + TN_BLOCK)
        for j in range(0, n - 31, 32):
            i = 0
            while i + TILE_ROWS <= k:
                o = i * n + j
                c00 = vload(cf, o); c01 = vload(cf, o + 16)  # noqa: E702
                c10 = vload(cf, o + n); c11 = vload(cf, o + n + 16)  # noqa: E702
                c20 = vload(cf, o + 2 * n); c21 = vload(cf, o + 2 * n + 16)  # noqa: E702
                c30 = vload(cf, o + 3 * n); c31 = vload(cf, o + 3 * n + 16)  # noqa: E702
                c40 = vload(cf, o + 4 * n); c41 = vload(cf, o + 4 * n + 16)  # noqa: E702
                c50 = vload(cf, o + 5 * n); c51 = vload(cf, o + 5 * n + 16)  # noqa: E702
                for p in range(p0, p1):
                    b0 = vload(bf, p * n + j)
                    b1 = vload(bf, p * n + j + 16)
                    r = p * k + i
                    c00, c01 = _fma_row(af, r, b0, b1, c00, c01)
                    c10, c11 = _fma_row(af, r + 1, b0, b1, c10, c11)
                    c20, c21 = _fma_row(af, r + 2, b0, b1, c20, c21)
                    c30, c31 = _fma_row(af, r + 3, b0, b1, c30, c31)
                    c40, c41 = _fma_row(af, r + 4, b0, b1, c40, c41)
                    c50, c51 = _fma_row(af, r + 5, b0, b1, c50, c51)
                vstore(cf, o, c00); vstore(cf, o + 16, c01); o += n  # noqa: E702
                vstore(cf, o, c10); vstore(cf, o + 16, c11); o += n  # noqa: E702
                vstore(cf, o, c20); vstore(cf, o + 16, c21); o += n  # noqa: E702
                vstore(cf, o, c30); vstore(cf, o + 16, c31); o += n  # noqa: E702
                vstore(cf, o, c40); vstore(cf, o + 16, c41); o += n  # noqa: E702
                vstore(cf, o, c50); vstore(cf, o + 16, c51)  # noqa: E702
                i += TILE_ROWS
            while i < k:                    # the last K % 6 rows of c, one at a time
                o = i * n + j
                c00 = vload(cf, o); c01 = vload(cf, o + 16)  # noqa: E702
                for p in range(p0, p1):
                    c00, c01 = _fma_row(af, p * k + i, vload(bf, p * n + j), vload(bf, p * n + j + 16), c00, c01)
                vstore(cf, o, c00); vstore(cf, o + 16, c01)  # noqa: E702
                i += 1


@njit(**JIT)
def _panel16_tn_add(af, bf, cf, m, k, n, j):
    """The 16 columns j:j+16 of c += a^T @ b (flat arrays; a (m, k), b (m, n),
    c (k, n)): tiles of 12 rows of c, as in _panel16."""
    i = 0
    while i + 12 <= k:
        o = i * n + j
        s0 = vload(cf, o); s1 = vload(cf, o + n); s2 = vload(cf, o + 2 * n); s3 = vload(cf, o + 3 * n)  # noqa: E702
        s4 = vload(cf, o + 4 * n); s5 = vload(cf, o + 5 * n); s6 = vload(cf, o + 6 * n)  # noqa: E702
        s7 = vload(cf, o + 7 * n); s8 = vload(cf, o + 8 * n); s9 = vload(cf, o + 9 * n)  # noqa: E702
        s10 = vload(cf, o + 10 * n); s11 = vload(cf, o + 11 * n)  # noqa: E702
        for p in range(m):
            v = vload(bf, p * n + j)
            r = p * k + i
            s0 = vfma(vsplat_at(af, r), v, s0)
            s1 = vfma(vsplat_at(af, r + 1), v, s1)
            s2 = vfma(vsplat_at(af, r + 2), v, s2)
            s3 = vfma(vsplat_at(af, r + 3), v, s3)
            s4 = vfma(vsplat_at(af, r + 4), v, s4)
            s5 = vfma(vsplat_at(af, r + 5), v, s5)
            s6 = vfma(vsplat_at(af, r + 6), v, s6)
            s7 = vfma(vsplat_at(af, r + 7), v, s7)
            s8 = vfma(vsplat_at(af, r + 8), v, s8)
            s9 = vfma(vsplat_at(af, r + 9), v, s9)
            s10 = vfma(vsplat_at(af, r + 10), v, s10)
            s11 = vfma(vsplat_at(af, r + 11), v, s11)
        vstore(cf, o, s0); vstore(cf, o + n, s1); vstore(cf, o + 2 * n, s2); vstore(cf, o + 3 * n, s3)  # noqa: E702
        vstore(cf, o + 4 * n, s4); vstore(cf, o + 5 * n, s5); vstore(cf, o + 6 * n, s6)  # noqa: E702
        vstore(cf, o + 7 * n, s7); vstore(cf, o + 8 * n, s8); vstore(cf, o + 9 * n, s9)  # noqa: E702
        vstore(cf, o + 10 * n, s10); vstore(cf, o + 11 * n, s11)  # noqa: E702
        i += 12
    while i < k:                            # the last k % 12 rows of c, one at a time
        s0 = vload(cf, i * n + j)
        for p in range(m):
            s0 = vfma(vsplat_at(af, p * k + i), vload(bf, p * n + j), s0)
        vstore(cf, i * n + j, s0)
        i += 1


def kernel_matmul(a, b, out):
    """out (M, N) = a (M, K) @ b (K, N) by the kernels (a, b, out C-contiguous
    float32, N a multiple of 16; no checks): the panels of 32
    columns, then a last one of 16, on the rows that fill whole tiles (a multiple
    of 12); the last M % 12 rows are copied into one more tile of zero-padded rows
    (a row alone would keep only one or two sums in flight). The 16-column kernel
    compiles only where a model needs it (each kernel adds to a clean install's
    first-run compile)."""
    m, k = a.shape
    n = b.shape[1]
    tiled = m - m % 12
    _matmul(a[:tiled], b, out[:tiled])
    if n % 32:
        _panel16(a.ravel(), b.ravel(), out.ravel(), tiled, k, n, n - 16)
    if tiled < m:
        rows = np.zeros((12, k), dtype=a.dtype)
        rows[:m - tiled] = a[tiled:]
        last = np.empty((12, n), dtype=out.dtype)
        kernel_matmul(rows, b, last)
        out[tiled:] = last[:m - tiled]
    return out


def kernel_matmul_tn_add(a, b, out):
    """out (K, N) += a (M, K)^T @ b (M, N) by the kernels alone (as kernel_matmul)."""
    _matmul_tn_add(a, b, out)
    m, k = a.shape
    n = b.shape[1]
    if n % 32:
        _panel16_tn_add(a.ravel(), b.ravel(), out.ravel(), m, k, n, n - 16)
    return out


def matmul(a, b, out):
    """out (M, N) = a (M, K) @ b (K, N) on this thread, and return out. a may be
    C-contiguous or the transpose of a C-contiguous array; b and out are
    C-contiguous (else numpy's BLAS, which reads a transposed b in place: a
    Dense layer's dx = dy @ W^T would otherwise copy all of W). A column count
    that is not a multiple of 16 runs on zero-padded copies of b and out.

    Every column of out is summed in the same order, so equal columns of b give
    bit-equal columns of out (as in ONNX Runtime; OpenBLAS's edge kernels round
    its last columns differently, which a softmax over logits of 1e9 turns from a
    uniform distribution into a one-hot one: ONNX's light SqueezeNet test)."""
    m, k = a.shape
    n = b.shape[1]
    transposed = not a.flags.c_contiguous and a.T.flags.c_contiguous
    if m < 12 or not fits(a.T if transposed else a, b, out):
        return np.matmul(a, b, out=out)
    if n % 16:
        # b with zero columns up to a multiple of 16, into an out as wide
        wide = -(-n // 16) * 16
        padded = np.zeros((k, wide), dtype=b.dtype)
        padded[:, :n] = b
        wide_out = np.empty((m, wide), dtype=out.dtype)
        matmul(a, padded, wide_out)
        out[...] = wide_out[:, :n]
    elif transposed:
        out[...] = 0
        kernel_matmul_tn_add(a.T, b, out)
    else:
        kernel_matmul(a, b, out)
    return out


def matmul_tn_add(a, b, out):
    """out (K, N) += a (M, K)^T @ b (M, N) on this thread (a, b C-contiguous)."""
    if fits(a, b, out) and b.shape[1] % 16 == 0:
        return kernel_matmul_tn_add(a, b, out)
    out += np.matmul(a.T, b)
    return out


#: rows of a below which matmul_few_rows applies (a tile's rows: TILE_ROWS x 2)
FEW_ROWS = 2 * TILE_ROWS

#: the smallest b (bytes) matmul_few_rows takes: one that fits a core's L2 cache is
#: read fast enough by one thread. Measured on whole inferences, one process
#: switching between the two, median of 20: W2's 4096 x 256 Dense layer (4 MiB) at
#: batch 1, 2, 4, 8 1.02-1.06x, 1.33-1.41x, 1.24x, 1.11x; W1's 3136 x 128 (1.6 MiB)
#: 0.86-0.92x, so W1 keeps the one-thread BLAS
FEW_ROWS_MIN_BYTES = 2 << 20


@njit(**PJIT)
def _matmul_few_rows(a, b, parts):
    # parts[t] (M, N) = a[:, k_t] @ b[k_t, :] over share t of the inner dimension
    # (rows k0..k1 of b, contiguous), N a multiple of LANES; the caller adds the shares
    m, k = a.shape
    n = b.shape[1]
    shares = parts.shape[0]
    af = a.reshape(m * k)
    bf = b.reshape(k * n)
    for t in prange(shares):
        acc = parts[t].reshape(m * n)
        acc[:] = 0
        for p in range(t * k // shares, (t + 1) * k // shares):
            row = p * n
            for i in range(m):
                s = vsplat_at(af, i * k + p)
                for c in range(0, n, LANES):
                    vstore(acc, i * n + c, vfma(s, vload(bf, row + c), vload(acc, i * n + c)))


def few_rows_applies(a, b, out):
    """Does matmul_few_rows take out = a @ b? float32, C-contiguous, fewer than
    FEW_ROWS rows in a, a b of at least FEW_ROWS_MIN_BYTES whose column count is a
    multiple of LANES (simd.fits_narrow)."""
    return (a.shape[0] < FEW_ROWS and b.shape[1] % LANES == 0 and b.nbytes >= FEW_ROWS_MIN_BYTES
            and fits_narrow(a, b, out))


def matmul_few_rows(a, b, out, shares):
    """out (M, N) = a (M, K) @ b (K, N) for few rows of a (few_rows_applies), the
    inner dimension split into `shares` contiguous parts (one per core) whose
    partial sums are added at the end."""
    parts = np.empty((shares, *out.shape), dtype=np.float32)
    _matmul_few_rows(a, b, parts)
    np.sum(parts, axis=0, out=out)
    return out
