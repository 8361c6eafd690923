"""The phases forward for 16 filters in register tiles: phases.py's sums, with the
16 filters of an output position as one 512-bit vector (simd.py).

phases._forward vectorizes over positions and keeps its sums in a block array in
L1, so every multiply-add also loads and stores a sum. With 16 filters, one
position's sums fill exactly one vector register, and a tile of 12 consecutive
flat positions o0..o0+11 keeps 12 of them in registers through all K = kh*kw*C
taps:

    s[q] = bias + sum over taps t of  xq[b, plane(t), o0 + q + offset(t)] * W2[t, 0:16]
                                      (one number, broadcast)      (one vector)

Each tap loads one vector of W2 and 12 numbers of xq (a contiguous run of the
tap's plane) for 12 vector multiply-adds. The flat positions run over the phase
planes' rows of wq columns, as in phases.py: positions with j >= ow are computed
and not stored. Used by phases.forward for float32 with 16 filters where the CPU
has 512-bit vectors; its answer is phases._forward's (the tests hold them to the
NumpyOps reference).
"""

from numba import njit, prange

from ._jit import JIT, PJIT, serial_twin
from .simd import has_512bit_vectors, vfma, vload, vrelu, vsplat_at, vstore

FILTERS = 16

#: flat positions per register tile (12 sums in flight: the FMA's latency times its
#: two units, with registers left for the broadcast and the vector of W2)
TILE = 12

#: tiles per parallel job (96 positions: enough work per job, enough jobs per image)
TILES_PER_JOB = 8


@njit(**JIT)
def _store(yf, s, o, row0, ow, wq, relu):
    # position o of the image's flat plane is output pixel (i, j) = divmod(o, wq);
    # columns j >= ow are the planes' padding, computed and dropped
    i = o // wq
    j = o - i * wq
    if j < ow:
        vstore(yf, ((row0 + i) * ow + j) * FILTERS, vrelu(s) if relu else s)


@njit(**PJIT)
def _forward16(xq, W2, bias, tap_plane, tap_offset, oh, ow, wq, relu, y):
    # xq (N, planes, plane_size), W2 (K, 16), bias (16,), y (N*OH*OW, 16); all
    # C-contiguous float32
    n, planes, plane_size = xq.shape
    k_count = W2.shape[0]
    positions = oh * wq
    full = positions // TILE                     # full tiles per image
    jobs = (full + TILES_PER_JOB - 1) // TILES_PER_JOB
    xf = xq.ravel()
    wf = W2.ravel()
    yf = y.ravel()
    for g in prange(n * jobs):
        b = g // jobs
        first = (g - b * jobs) * TILES_PER_JOB
        image = b * planes * plane_size
        for tile in range(first, min(full, first + TILES_PER_JOB)):
            o0 = tile * TILE
            s0 = vload(bias, 0)
            s1 = s0; s2 = s0; s3 = s0; s4 = s0; s5 = s0  # noqa: E702
            s6 = s0; s7 = s0; s8 = s0; s9 = s0; s10 = s0; s11 = s0  # noqa: E702
            for t in range(k_count):
                r = image + tap_plane[t] * plane_size + tap_offset[t] + o0
                v = vload(wf, t * FILTERS)
                s0 = vfma(vsplat_at(xf, r), v, s0)
                s1 = vfma(vsplat_at(xf, r + 1), v, s1)
                s2 = vfma(vsplat_at(xf, r + 2), v, s2)
                s3 = vfma(vsplat_at(xf, r + 3), v, s3)
                s4 = vfma(vsplat_at(xf, r + 4), v, s4)
                s5 = vfma(vsplat_at(xf, r + 5), v, s5)
                s6 = vfma(vsplat_at(xf, r + 6), v, s6)
                s7 = vfma(vsplat_at(xf, r + 7), v, s7)
                s8 = vfma(vsplat_at(xf, r + 8), v, s8)
                s9 = vfma(vsplat_at(xf, r + 9), v, s9)
                s10 = vfma(vsplat_at(xf, r + 10), v, s10)
                s11 = vfma(vsplat_at(xf, r + 11), v, s11)
            row0 = b * oh
            _store(yf, s0, o0, row0, ow, wq, relu)
            _store(yf, s1, o0 + 1, row0, ow, wq, relu)
            _store(yf, s2, o0 + 2, row0, ow, wq, relu)
            _store(yf, s3, o0 + 3, row0, ow, wq, relu)
            _store(yf, s4, o0 + 4, row0, ow, wq, relu)
            _store(yf, s5, o0 + 5, row0, ow, wq, relu)
            _store(yf, s6, o0 + 6, row0, ow, wq, relu)
            _store(yf, s7, o0 + 7, row0, ow, wq, relu)
            _store(yf, s8, o0 + 8, row0, ow, wq, relu)
            _store(yf, s9, o0 + 9, row0, ow, wq, relu)
            _store(yf, s10, o0 + 10, row0, ow, wq, relu)
            _store(yf, s11, o0 + 11, row0, ow, wq, relu)
    # the last positions % 12 of each image, one position at a time (a full tile
    # there could read past the last plane)
    for b in prange(n):
        image = b * planes * plane_size
        for o in range(full * TILE, positions):
            s = vload(bias, 0)
            for t in range(k_count):
                s = vfma(vsplat_at(xf, image + tap_plane[t] * plane_size + tap_offset[t] + o),
                         vload(wf, t * FILTERS), s)
            _store(yf, s, o, b * oh, ow, wq, relu)


_forward16_serial = serial_twin(_forward16)


def applies(xq, W2, bias, y):
    """Does forward16 compute this call of phases.forward? float32 throughout, 16
    filters, contiguous arrays, and a CPU with 512-bit vectors."""
    arrays = (xq, W2, bias, y)
    return (W2.shape[1] == FILTERS and all(a.dtype.char == "f" and a.flags.c_contiguous for a in arrays)
            and has_512bit_vectors())


def forward16(xq, W2, bias, tap_plane, tap_offset, oh, ow, wq, relu, y, serial):
    """y (N*OH*OW, 16) = phases.forward's convolution for W2 (K, 16), written into y."""
    (_forward16_serial if serial else _forward16)(xq, W2, bias, tap_plane, tap_offset, oh, ow, wq, relu, y)
