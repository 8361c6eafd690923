"""The phases kernels in register tiles: phases.py's sums, with the filters of an
output position as 512-bit vectors (simd.py).

phases._forward vectorizes over positions and keeps its sums in a block array in
L1, so every multiply-add also loads and stores a sum. With 16 filters, one
position's sums fill exactly one vector register, and a tile of 12 consecutive
flat positions o0..o0+11 keeps 12 of them in registers through all K = kh*kw*C
taps:

    s[q] = bias + sum over taps t of  xs[b, tap_start[t] + (o0 + q)*step] * W2[t, 0:16]
                                      (one number, broadcast)            (one vector)

where xs is an image of the split flattened and (tap_start, step) say where a
tap's numbers lie in it (phases.tap_starts): in the phase planes at
plane(t)*hq*wq + offset(t) with step 1 (a contiguous run of the tap's plane), in
the padded pixels (stride 1) at offset(t)*C + ch(t) with step C. Each tap loads
one vector of W2 and 12 numbers of xs for 12 vector multiply-adds. With a
multiple of 32 filters a tile is 6 positions x 32 filters (two vectors each, 12
sums again). The weight gradient turns the tile around: 12 taps x 16 filters, or
6 taps x 32 filters, of sums while the block's positions stream past. The flat
positions run over the phase planes' rows of wq columns, as in phases.py:
positions with j >= ow are computed and not stored.
Used by phases.forward and phases.weight_grad for float32 where the CPU has
512-bit vectors (`forward_applies`, `weight_grad_applies`); the answers are
phases._forward's and phases._weight_grad's (the tests hold them to the NumpyOps
reference). Where the vectors are 256 bits (AVX2 with FMA: `narrow`), each
16-lane value takes two of the 16 registers, and the narrow tiles run instead: 6
positions x 16 filters for the forward, 6 taps x 16 filters for the weight
gradient, for any multiple of 16 filters (a group of 16 at a time; measured on a
Zen 3 VM: W5's 16 -> 16 layers 32 -> 60 GF/s forward and backward, W5's
training 1.3x).
"""

import numpy as np
from numba import njit, prange

from ._jit import JIT, PJIT, serial_twin
from .simd import fits_narrow, has_256bit_fma, has_512bit_vectors, vfma, vload, vrelu, vsplat_at, vstore

FILTERS = 16

#: flat positions per register tile (12 sums in flight: the FMA's latency times its
#: two units, with registers left for the broadcast and the vector of W2)
TILE = 12

#: positions per tile of 32 filters (two vectors each: 12 sums again)
TILE32 = 6

#: tiles per parallel job (96 positions: enough work per job, enough jobs per image)
TILES_PER_JOB = 8

#: positions (or taps) per narrow tile, where a 16-lane vector is two registers
TILE_NARROW = 6


@njit(**JIT)
def _store(yf, s, o, row0, oh, ow, wq, relu):
    # position o of the image's flat plane is output pixel (i, j) = divmod(o, wq);
    # columns j >= ow are the planes' padding, computed and dropped, and so are rows
    # i >= oh (only in an image of fewer positions than a tile: see `forward`)
    i = o // wq
    j = o - i * wq
    if j < ow and i < oh:
        vstore(yf, ((row0 + i) * ow + j) * FILTERS, vrelu(s) if relu else s)


@njit(**PJIT)
def _forward16(xs, W2, bias, tap_start, step, oh, ow, wq, relu, y):
    # xs (N, image_size) the split input, W2 (K, 16), bias (16,), y (N*OH*OW, 16);
    # all C-contiguous float32. Tap t of flat position o is xs[b, tap_start[t] + o*step].
    n, image_size = xs.shape
    k_count = W2.shape[0]
    positions = oh * wq
    full = positions // TILE                     # full tiles per image
    tiles = -(-positions // TILE)                # and a partial last one
    jobs = max(1, (full + TILES_PER_JOB - 1) // TILES_PER_JOB)
    xf = xs.ravel()
    wf = W2.ravel()
    yf = y.ravel()
    for g in prange(n * jobs):
        b = g // jobs
        job = g - b * jobs
        first = job * TILES_PER_JOB
        image = b * image_size
        # an image's last job also takes its partial last tile, moved back to end at
        # the last position: it overlaps the full tile before it (this job's too) and
        # stores those positions again, the same sums (one tile body serves all: a
        # loop of its own for the last positions cost 0.45 s of a cold compile)
        end = tiles if job == jobs - 1 else first + TILES_PER_JOB
        for tile in range(first, end):
            o0 = max(0, min(tile * TILE, positions - TILE))
            s0 = vload(bias, 0)
            s1 = s0; s2 = s0; s3 = s0; s4 = s0; s5 = s0  # noqa: E702
            s6 = s0; s7 = s0; s8 = s0; s9 = s0; s10 = s0; s11 = s0  # noqa: E702
            for t in range(k_count):
                r = image + tap_start[t] + o0 * step
                v = vload(wf, t * FILTERS)
                s0 = vfma(vsplat_at(xf, r), v, s0)
                s1 = vfma(vsplat_at(xf, r + step), v, s1)
                s2 = vfma(vsplat_at(xf, r + 2 * step), v, s2)
                s3 = vfma(vsplat_at(xf, r + 3 * step), v, s3)
                s4 = vfma(vsplat_at(xf, r + 4 * step), v, s4)
                s5 = vfma(vsplat_at(xf, r + 5 * step), v, s5)
                s6 = vfma(vsplat_at(xf, r + 6 * step), v, s6)
                s7 = vfma(vsplat_at(xf, r + 7 * step), v, s7)
                s8 = vfma(vsplat_at(xf, r + 8 * step), v, s8)
                s9 = vfma(vsplat_at(xf, r + 9 * step), v, s9)
                s10 = vfma(vsplat_at(xf, r + 10 * step), v, s10)
                s11 = vfma(vsplat_at(xf, r + 11 * step), v, s11)
            row0 = b * oh
            _store(yf, s0, o0, row0, oh, ow, wq, relu)
            _store(yf, s1, o0 + 1, row0, oh, ow, wq, relu)
            _store(yf, s2, o0 + 2, row0, oh, ow, wq, relu)
            _store(yf, s3, o0 + 3, row0, oh, ow, wq, relu)
            _store(yf, s4, o0 + 4, row0, oh, ow, wq, relu)
            _store(yf, s5, o0 + 5, row0, oh, ow, wq, relu)
            _store(yf, s6, o0 + 6, row0, oh, ow, wq, relu)
            _store(yf, s7, o0 + 7, row0, oh, ow, wq, relu)
            _store(yf, s8, o0 + 8, row0, oh, ow, wq, relu)
            _store(yf, s9, o0 + 9, row0, oh, ow, wq, relu)
            _store(yf, s10, o0 + 10, row0, oh, ow, wq, relu)
            _store(yf, s11, o0 + 11, row0, oh, ow, wq, relu)


@njit(inline="always", **JIT)
def _gather(dy, relu_output, dq, src0, rows, ow, wq, masked, bsum, f_count):
    # dq[(r*wq + j)*F : (r*wq + j + 1)*F] = dy[src0 + r*ow + j, :] for the block's
    # rows r (pixel-major, as the tiles read it; dq flat, F = f_count), zero at the
    # dropped positions j >= ow; when masked, the
    # gradient before the ReLU whose output was relu_output (0 where it is <= 0, as
    # phases._gather_block). bsum += the block's rows (db). Inlined into its two
    # callers with f_count a constant there, so the filter loops have a fixed length
    # (with f_count read from dq's shape at run time, the 16-filter kernel ran slower).
    zero = dq.dtype.type(0)
    for r in range(rows):
        dst = r * wq
        src = src0 + r * ow
        for j in range(ow):
            for f in range(f_count):
                d = dy[src + j, f]
                if masked and not relu_output[src + j, f] > zero:
                    d = zero
                dq[(dst + j) * f_count + f] = d
                bsum[f] += d
        for j in range(ow, wq):
            for f in range(f_count):
                dq[(dst + j) * f_count + f] = zero


@njit(**PJIT)
def _weight_grad16(xs, dy, relu_output, masked, tap_start, step, oh, ow, wq, rows_per_block, parts,
                   bias_parts, scratch):
    # phases._weight_grad's sums for 16 filters: parts[t] = thread t's share of
    # dW2[tap, :] = sum over positions o of xs[b, tap_start[tap] + o*step] * dy[o, :],
    # in tiles of 12 taps whose 12 vectors of sums stay in registers while the
    # block's positions stream past (one vector of dy and 12 numbers of xs each).
    # `weight_grad` pads the taps to a multiple of 12 (K, below, counts them) and
    # hands parts (P, K*16) and bias_parts (P, 16) zeroed, and scratch (P,
    # rows_per_block*wq*16) for each part's gathered block of dy: a loop for the
    # taps left over, or an array made or zeroed inside the parallel loop, each
    # cost a few tenths of a second of a cold compile.
    n, image_size = xs.shape
    nparts = parts.shape[0]
    k_count = parts.shape[1] // FILTERS
    nblocks = (oh + rows_per_block - 1) // rows_per_block
    jobs = n * nblocks
    xf = xs.ravel()
    for part in prange(nparts):
        dqf = scratch[part]
        af = parts[part]
        bsum = bias_parts[part]
        for g in range(part * jobs // nparts, (part + 1) * jobs // nparts):
            b = g // nblocks
            i0 = (g - b * nblocks) * rows_per_block
            i1 = min(oh, i0 + rows_per_block)
            length = (i1 - i0) * wq
            _gather(dy, relu_output, dqf, (b * oh + i0) * ow, i1 - i0, ow, wq, masked, bsum, FILTERS)
            start = b * image_size + i0 * wq * step
            for t in range(0, k_count, TILE):
                r0 = start + tap_start[t]
                r1 = start + tap_start[t + 1]
                r2 = start + tap_start[t + 2]
                r3 = start + tap_start[t + 3]
                r4 = start + tap_start[t + 4]
                r5 = start + tap_start[t + 5]
                r6 = start + tap_start[t + 6]
                r7 = start + tap_start[t + 7]
                r8 = start + tap_start[t + 8]
                r9 = start + tap_start[t + 9]
                r10 = start + tap_start[t + 10]
                r11 = start + tap_start[t + 11]
                o = t * FILTERS
                s0 = vload(af, o); s1 = vload(af, o + 16); s2 = vload(af, o + 32); s3 = vload(af, o + 48)  # noqa: E702
                s4 = vload(af, o + 64); s5 = vload(af, o + 80); s6 = vload(af, o + 96)  # noqa: E702
                s7 = vload(af, o + 112); s8 = vload(af, o + 128); s9 = vload(af, o + 144)  # noqa: E702
                s10 = vload(af, o + 160); s11 = vload(af, o + 176)  # noqa: E702
                for p in range(length):
                    v = vload(dqf, p * FILTERS)
                    a = p * step
                    s0 = vfma(vsplat_at(xf, r0 + a), v, s0)
                    s1 = vfma(vsplat_at(xf, r1 + a), v, s1)
                    s2 = vfma(vsplat_at(xf, r2 + a), v, s2)
                    s3 = vfma(vsplat_at(xf, r3 + a), v, s3)
                    s4 = vfma(vsplat_at(xf, r4 + a), v, s4)
                    s5 = vfma(vsplat_at(xf, r5 + a), v, s5)
                    s6 = vfma(vsplat_at(xf, r6 + a), v, s6)
                    s7 = vfma(vsplat_at(xf, r7 + a), v, s7)
                    s8 = vfma(vsplat_at(xf, r8 + a), v, s8)
                    s9 = vfma(vsplat_at(xf, r9 + a), v, s9)
                    s10 = vfma(vsplat_at(xf, r10 + a), v, s10)
                    s11 = vfma(vsplat_at(xf, r11 + a), v, s11)
                vstore(af, o, s0); vstore(af, o + 16, s1); vstore(af, o + 32, s2); vstore(af, o + 48, s3)  # noqa: E702
                vstore(af, o + 64, s4); vstore(af, o + 80, s5); vstore(af, o + 96, s6)  # noqa: E702
                vstore(af, o + 112, s7); vstore(af, o + 128, s8); vstore(af, o + 144, s9)  # noqa: E702
                vstore(af, o + 160, s10); vstore(af, o + 176, s11)  # noqa: E702



@njit(**JIT)
def _store2(yf, s0, s1, o, row0, oh, ow, wq, f_count, g, relu):
    # as _store, for filters g..g+31 of an output pixel with f_count filters
    i = o // wq
    j = o - i * wq
    if j < ow and i < oh:
        at = ((row0 + i) * ow + j) * f_count + g
        vstore(yf, at, vrelu(s0) if relu else s0)
        vstore(yf, at + 16, vrelu(s1) if relu else s1)


@njit(**JIT)
def _row2(xf, r, v0, v1, s0, s1):
    # one position of a 6 x 32 tile: (s0, s1) += xf[r] * (v0, v1)
    a = vsplat_at(xf, r)
    return vfma(a, v0, s0), vfma(a, v1, s1)


@njit(**PJIT)
def _forward32(xs, W2, bias, tap_start, step, oh, ow, wq, relu, y):
    # as _forward16 for a multiple of 32 filters: tiles of 6 positions x 32 filters
    # (two vectors per position, 12 sums), one group of 32 filters after the other;
    # each tap loads two vectors of W2 and 6 numbers of xq for 12 multiply-adds
    n, image_size = xs.shape
    k_count, f_count = W2.shape
    positions = oh * wq
    full = positions // TILE32
    tiles = -(-positions // TILE32)
    jobs = max(1, (full + TILES_PER_JOB - 1) // TILES_PER_JOB)
    xf = xs.ravel()
    wf = W2.ravel()
    yf = y.ravel()
    for g_job in prange(n * jobs):
        b = g_job // jobs
        job = g_job - b * jobs
        first = job * TILES_PER_JOB
        image = b * image_size
        row0 = b * oh
        end = tiles if job == jobs - 1 else first + TILES_PER_JOB   # as in _forward16
        for tile in range(first, end):
            o0 = max(0, min(tile * TILE32, positions - TILE32))
            for g in range(0, f_count, 32):
                s00 = vload(bias, g); s01 = vload(bias, g + 16)  # noqa: E702
                s10 = s00; s11 = s01; s20 = s00; s21 = s01; s30 = s00; s31 = s01  # noqa: E702
                s40 = s00; s41 = s01; s50 = s00; s51 = s01  # noqa: E702
                for t in range(k_count):
                    r = image + tap_start[t] + o0 * step
                    v0 = vload(wf, t * f_count + g)
                    v1 = vload(wf, t * f_count + g + 16)
                    s00, s01 = _row2(xf, r, v0, v1, s00, s01)
                    s10, s11 = _row2(xf, r + step, v0, v1, s10, s11)
                    s20, s21 = _row2(xf, r + 2 * step, v0, v1, s20, s21)
                    s30, s31 = _row2(xf, r + 3 * step, v0, v1, s30, s31)
                    s40, s41 = _row2(xf, r + 4 * step, v0, v1, s40, s41)
                    s50, s51 = _row2(xf, r + 5 * step, v0, v1, s50, s51)
                _store2(yf, s00, s01, o0, row0, oh, ow, wq, f_count, g, relu)
                _store2(yf, s10, s11, o0 + 1, row0, oh, ow, wq, f_count, g, relu)
                _store2(yf, s20, s21, o0 + 2, row0, oh, ow, wq, f_count, g, relu)
                _store2(yf, s30, s31, o0 + 3, row0, oh, ow, wq, f_count, g, relu)
                _store2(yf, s40, s41, o0 + 4, row0, oh, ow, wq, f_count, g, relu)
                _store2(yf, s50, s51, o0 + 5, row0, oh, ow, wq, f_count, g, relu)


@njit(**JIT)
def _tap2(xf, r, v0, v1, s0, s1):
    # one tap of a 6-tap x 32-filter tile: (s0, s1) += xf[r] * (v0, v1)
    a = vsplat_at(xf, r)
    return vfma(a, v0, s0), vfma(a, v1, s1)


@njit(**PJIT)
def _weight_grad32(xs, dy, relu_output, masked, tap_start, step, oh, ow, wq, rows_per_block, parts,
                   bias_parts, scratch):
    # _weight_grad16 for 32 filters: tiles of 6 taps x 32 filters (two vectors per
    # tap, 12 sums) while the block's positions stream past, each position two
    # vectors of dy and 6 numbers of xs for 12 multiply-adds; the taps padded to a
    # multiple of 6
    n, image_size = xs.shape
    nparts = parts.shape[0]
    k_count = parts.shape[1] // 32
    nblocks = (oh + rows_per_block - 1) // rows_per_block
    jobs = n * nblocks
    xf = xs.ravel()
    for part in prange(nparts):
        dqf = scratch[part]
        af = parts[part]
        bsum = bias_parts[part]
        for g in range(part * jobs // nparts, (part + 1) * jobs // nparts):
            b = g // nblocks
            i0 = (g - b * nblocks) * rows_per_block
            i1 = min(oh, i0 + rows_per_block)
            length = (i1 - i0) * wq
            _gather(dy, relu_output, dqf, (b * oh + i0) * ow, i1 - i0, ow, wq, masked, bsum, 32)
            start = b * image_size + i0 * wq * step
            for t in range(0, k_count, TILE32):
                r0 = start + tap_start[t]
                r1 = start + tap_start[t + 1]
                r2 = start + tap_start[t + 2]
                r3 = start + tap_start[t + 3]
                r4 = start + tap_start[t + 4]
                r5 = start + tap_start[t + 5]
                o = t * 32
                s00 = vload(af, o); s01 = vload(af, o + 16); s10 = vload(af, o + 32); s11 = vload(af, o + 48)  # noqa: E702
                s20 = vload(af, o + 64); s21 = vload(af, o + 80); s30 = vload(af, o + 96)  # noqa: E702
                s31 = vload(af, o + 112); s40 = vload(af, o + 128); s41 = vload(af, o + 144)  # noqa: E702
                s50 = vload(af, o + 160); s51 = vload(af, o + 176)  # noqa: E702
                for p in range(length):
                    v0 = vload(dqf, p * 32)
                    v1 = vload(dqf, p * 32 + 16)
                    a = p * step
                    s00, s01 = _tap2(xf, r0 + a, v0, v1, s00, s01)
                    s10, s11 = _tap2(xf, r1 + a, v0, v1, s10, s11)
                    s20, s21 = _tap2(xf, r2 + a, v0, v1, s20, s21)
                    s30, s31 = _tap2(xf, r3 + a, v0, v1, s30, s31)
                    s40, s41 = _tap2(xf, r4 + a, v0, v1, s40, s41)
                    s50, s51 = _tap2(xf, r5 + a, v0, v1, s50, s51)
                vstore(af, o, s00); vstore(af, o + 16, s01); vstore(af, o + 32, s10); vstore(af, o + 48, s11)  # noqa: E702
                vstore(af, o + 64, s20); vstore(af, o + 80, s21); vstore(af, o + 96, s30)  # noqa: E702
                vstore(af, o + 112, s31); vstore(af, o + 128, s40); vstore(af, o + 144, s41)  # noqa: E702
                vstore(af, o + 160, s50); vstore(af, o + 176, s51)  # noqa: E702



# ------------------------------------------------------------ narrow tiles
# Where the CPU has 256-bit vectors and no 512-bit ones (AVX2 with FMA: 16 vector
# registers), each 16-lane value is two registers, and a tile of 12 sums would take
# 24 of them: LLVM spills sums to memory in the inner loop. The narrow tiles keep 6
# sums (12 registers), plus the vector of W2 or dy (2) and the broadcast number (1):
# 6 positions x 16 filters, or 6 taps x 16 filters for the weight gradient, the
# shape of the classic AVX2 matrix-product kernel (6 rows x 16 columns).

@njit(inline="always", **JIT)
def _six(xf, r, step, v, s0, s1, s2, s3, s4, s5):
    # s_q += xf[r + q*step] * v, q = 0..5: one tap of a tile of 6 positions
    return (vfma(vsplat_at(xf, r), v, s0), vfma(vsplat_at(xf, r + step), v, s1),
            vfma(vsplat_at(xf, r + 2 * step), v, s2), vfma(vsplat_at(xf, r + 3 * step), v, s3),
            vfma(vsplat_at(xf, r + 4 * step), v, s4), vfma(vsplat_at(xf, r + 5 * step), v, s5))


@njit(inline="always", **JIT)
def _store_at(yf, s, o, row0, oh, ow, wq, f_count, g, relu):
    # as _store, for filters g..g+15 of an output pixel with f_count filters
    i = o // wq
    j = o - i * wq
    if j < ow and i < oh:
        vstore(yf, ((row0 + i) * ow + j) * f_count + g, vrelu(s) if relu else s)


@njit(**PJIT)
def _forward_narrow(xs, W2, bias, tap_start, step, oh, ow, wq, relu, y):
    # _forward16 in tiles of TILE_NARROW = 6 positions x 16 filters (6 sums in
    # registers through all K taps; each tap loads one vector of W2 and 6 numbers of
    # xs), for a multiple of 16 filters: one group of 16 after the other (the tile's
    # numbers of xs are in L1 again for the next group)
    n, image_size = xs.shape
    k_count, f_count = W2.shape
    positions = oh * wq
    full = positions // TILE_NARROW
    tiles = -(-positions // TILE_NARROW)
    per_job = 2 * TILES_PER_JOB             # the same 96 positions per job as _forward16
    jobs = max(1, (full + per_job - 1) // per_job)
    xf = xs.ravel()
    wf = W2.ravel()
    yf = y.ravel()
    for g_job in prange(n * jobs):
        b = g_job // jobs
        job = g_job - b * jobs
        first = job * per_job
        image = b * image_size
        row0 = b * oh
        end = tiles if job == jobs - 1 else first + per_job   # as in _forward16
        for tile in range(first, end):
            o0 = max(0, min(tile * TILE_NARROW, positions - TILE_NARROW))
            for g in range(0, f_count, FILTERS):
                s0 = vload(bias, g)
                s1 = s0; s2 = s0; s3 = s0; s4 = s0; s5 = s0  # noqa: E702
                for t in range(k_count):
                    s0, s1, s2, s3, s4, s5 = _six(xf, image + tap_start[t] + o0 * step, step,
                                                  vload(wf, t * f_count + g), s0, s1, s2, s3, s4, s5)
                _store_at(yf, s0, o0, row0, oh, ow, wq, f_count, g, relu)
                _store_at(yf, s1, o0 + 1, row0, oh, ow, wq, f_count, g, relu)
                _store_at(yf, s2, o0 + 2, row0, oh, ow, wq, f_count, g, relu)
                _store_at(yf, s3, o0 + 3, row0, oh, ow, wq, f_count, g, relu)
                _store_at(yf, s4, o0 + 4, row0, oh, ow, wq, f_count, g, relu)
                _store_at(yf, s5, o0 + 5, row0, oh, ow, wq, f_count, g, relu)


@njit(**PJIT)
def _weight_grad_narrow(xs, dy, relu_output, masked, tap_start, step, oh, ow, wq, rows_per_block, parts,
                        bias_parts, scratch):
    # _weight_grad16 in tiles of 6 taps x 16 filters, for a multiple of 16 filters
    # (one group of 16 after the other): 6 vectors of sums stay in registers while
    # the block's positions stream past (one vector of dy and 6 numbers of xs each);
    # the taps padded to a multiple of 6
    n, image_size = xs.shape
    nparts = parts.shape[0]
    f_count = bias_parts.shape[1]
    k_count = parts.shape[1] // f_count
    nblocks = (oh + rows_per_block - 1) // rows_per_block
    jobs = n * nblocks
    xf = xs.ravel()
    for part in prange(nparts):
        dqf = scratch[part]
        af = parts[part]
        bsum = bias_parts[part]
        for g in range(part * jobs // nparts, (part + 1) * jobs // nparts):
            b = g // nblocks
            i0 = (g - b * nblocks) * rows_per_block
            i1 = min(oh, i0 + rows_per_block)
            length = (i1 - i0) * wq
            _gather(dy, relu_output, dqf, (b * oh + i0) * ow, i1 - i0, ow, wq, masked, bsum, f_count)
            start = b * image_size + i0 * wq * step
            for t in range(0, k_count, TILE_NARROW):
                r0 = start + tap_start[t]
                r1 = start + tap_start[t + 1]
                r2 = start + tap_start[t + 2]
                r3 = start + tap_start[t + 3]
                r4 = start + tap_start[t + 4]
                r5 = start + tap_start[t + 5]
                for h in range(0, f_count, FILTERS):
                    o = t * f_count + h
                    s0 = vload(af, o); s1 = vload(af, o + f_count); s2 = vload(af, o + 2 * f_count)  # noqa: E702
                    s3 = vload(af, o + 3 * f_count); s4 = vload(af, o + 4 * f_count)  # noqa: E702
                    s5 = vload(af, o + 5 * f_count)
                    for p in range(length):
                        v = vload(dqf, p * f_count + h)
                        a = p * step
                        s0 = vfma(vsplat_at(xf, r0 + a), v, s0)
                        s1 = vfma(vsplat_at(xf, r1 + a), v, s1)
                        s2 = vfma(vsplat_at(xf, r2 + a), v, s2)
                        s3 = vfma(vsplat_at(xf, r3 + a), v, s3)
                        s4 = vfma(vsplat_at(xf, r4 + a), v, s4)
                        s5 = vfma(vsplat_at(xf, r5 + a), v, s5)
                    vstore(af, o, s0); vstore(af, o + f_count, s1); vstore(af, o + 2 * f_count, s2)  # noqa: E702
                    vstore(af, o + 3 * f_count, s3); vstore(af, o + 4 * f_count, s4)  # noqa: E702
                    vstore(af, o + 5 * f_count, s5)



_forward16_serial = serial_twin(_forward16)
_forward32_serial = serial_twin(_forward32)
_weight_grad16_serial = serial_twin(_weight_grad16)
_weight_grad32_serial = serial_twin(_weight_grad32)
_forward_narrow_serial = serial_twin(_forward_narrow)
_weight_grad_narrow_serial = serial_twin(_weight_grad_narrow)


def narrow():
    """Does this CPU run the narrow tiles (AVX2 and FMA, no 512-bit vectors), for
    any multiple of 16 filters, instead of the 12-sum ones?"""
    return has_256bit_fma() and not has_512bit_vectors()


def _forward_takes(f):
    # the filter counts of the forward tiles on this CPU: 16 or a multiple of 32
    # with 512-bit vectors, a multiple of 16 on the narrow tiles, none without either
    if narrow():
        return f % FILTERS == 0
    return has_512bit_vectors() and (f == FILTERS or f % 32 == 0)


def _weight_grad_takes(f):
    # the same for the weight-gradient tiles: 16 or 32, a multiple of 16 on the narrow tiles
    if narrow():
        return f % FILTERS == 0
    return has_512bit_vectors() and f in (FILTERS, 32)


def reads_pixels(f, kept):
    """Do the tiles take every kernel of a stride-1 float32 convolution of f filters
    that reads the split (the forward, and when kept, the weight gradient too)?
    phases.pixel_layout asks: only the tiles read padded pixels."""
    return _forward_takes(f) and (not kept or _weight_grad_takes(f))


def forward_applies(xs, W2, bias, y):
    """Does `forward` compute this call of phases.forward? 16 filters or a multiple
    of 32 where the CPU has 512-bit vectors, a multiple of 16 on the narrow tiles;
    float32 C-contiguous arrays (simd.fits_narrow)."""
    return _forward_takes(W2.shape[1]) and fits_narrow(xs, W2, bias, y)


def weight_grad_applies(xs, dy, relu_output):
    """Does `weight_grad` compute this call of phases.weight_grad? 16 or 32
    filters where the CPU has 512-bit vectors, a multiple of 16 on the narrow
    tiles; float32 C-contiguous arrays (simd.fits_narrow)."""
    return _weight_grad_takes(dy.shape[1]) and fits_narrow(xs, dy, relu_output)


def _forward_tile(f):
    # positions per forward tile on this CPU for f filters
    if narrow():
        return TILE_NARROW
    return TILE if f == FILTERS else TILE32


def _weight_grad_tile(f):
    # taps per weight-gradient tile on this CPU for f filters
    if narrow():
        return TILE_NARROW
    return TILE if f == FILTERS else TILE32


def forward(xs, W2, bias, tap_start, step, oh, ow, wq, relu, y, serial):
    """y (N*OH*OW, F) = phases.forward's convolution for W2 (K, F), F 16 or a
    multiple of 32 (on the narrow tiles a multiple of 16), written into y. xs
    (N, image_size) is the split input in either of phases.py's layouts, tap t of
    flat position o at xs[b, tap_start[t] + o*step]."""
    tile = _forward_tile(W2.shape[1])
    if oh * wq < tile:
        # an image of fewer flat positions than one tile: the tile reads past the
        # last one, so each image gets that many more numbers (zeros; a copy of a
        # small input); the stores drop the positions past the last
        xs = np.concatenate([xs, np.zeros((xs.shape[0], tile * step), dtype=xs.dtype)], axis=1)
    if narrow():
        kernel = _forward_narrow_serial if serial else _forward_narrow
    elif W2.shape[1] == FILTERS:
        kernel = _forward16_serial if serial else _forward16
    else:
        kernel = _forward32_serial if serial else _forward32
    kernel(xs, W2, bias, tap_start, step, oh, ow, wq, relu, y)


def weight_grad(xs, dy, relu_output, masked, tap_start, step, oh, ow, wq, rows_per_block, parts,
                bias_parts, serial):
    """phases.weight_grad's parts (P, K, F) and bias_parts (P, F), F 16 or 32 (on
    the narrow tiles a multiple of 16), filled in; xs, tap_start and step as in `forward`."""
    nparts, k_count, f_count = parts.shape
    # whole tiles of taps: the last tile's missing taps repeat tap 0, and their sums
    # are dropped
    tile = _weight_grad_tile(f_count)
    k_tiles = -(-k_count // tile) * tile
    if k_tiles > k_count:
        tap_start = np.concatenate([tap_start, np.repeat(tap_start[:1], k_tiles - k_count)])
    sums = np.zeros((nparts, k_tiles * f_count), dtype=parts.dtype)
    bias_parts[:] = 0
    scratch = np.empty((nparts, rows_per_block * wq * f_count), dtype=parts.dtype)
    if narrow():
        kernel = _weight_grad_narrow_serial if serial else _weight_grad_narrow
    elif f_count == FILTERS:
        kernel = _weight_grad16_serial if serial else _weight_grad16
    else:
        kernel = _weight_grad32_serial if serial else _weight_grad32
    kernel(xs, dy, relu_output, masked, tap_start, step, oh, ow, wq, rows_per_block, sums, bias_parts, scratch)
    parts[:] = sums.reshape(nparts, k_tiles, f_count)[:, :k_count]
