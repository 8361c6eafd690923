"""The convolution algorithms of the numba backend, and the one place that picks one.

Each computes exactly what NumpyOps.conv2d_forward / conv2d_backward compute
(im2col + GEMM, spelled out there), with W2 the kernel matrix (kh*kw*C, F) and dy
the gradient dL/dy as the (N*OH*OW, F) matrix:

    y = im2col(x) @ W2 + b;   dW2 = im2col(x)^T @ dy;   db = sum of dy's rows;
    dx = col2im(dy @ W2^T)

- "gemm-chunks": im2col + GEMM a chunk of images at a time. Each chunk's im2col
  rows go to a cache-sized buffer and are multiplied at once (gemm.py's register
  tiles for float32 on AVX-512, else numpy's BLAS), so the
  full im2col matrix never exists and nothing is kept for backward (backward
  recomputes the chunks from x). With workers (workers.CoreJobs) the batch is
  split into one job per core, each with a one-thread BLAS; a batch too small to
  split, or a convolution too small to pay for the hand-off (_worth_jobs), runs
  the parallel kernels, and its products split themselves by rows
  (workers.matmul).
- "phases": direct convolution on the input split into stride phases
  (phases.py), for small convolutions (few filters or a short window), where a
  GEMM is memory-bound. Training keeps the split (about the size of x) for dW2.
  dx, when asked for, is itself a small convolution where the stride is 1 and x
  has at least 4 channels: the full correlation of dy with the kernel flipped in
  space and its channel axes swapped (phases_input_grad), run on phases too;
  otherwise it comes from the chunked dy @ W2^T and col2im as above.
- "tiles": for a stride-1 convolution of 32 float32 filters on a CPU with
  512-bit vectors, y and dx are direct convolutions in register tiles
  (phases_tiles.py) on the zero-padded pixels of x and of dy (phases.pixel_layout),
  and dW2 and db come from gemm-chunks. With 32 filters each im2col row of K
  numbers serves only two vectors of sums, so unfolding it costs about as much as
  the products (measured on W5's 32 -> 32 layer, 16x16, forward + backward with
  the ReLU: 1.68 ms instead of 2.31 at batch 32, 7.0 instead of 7.2 at batch 128;
  with 64 filters the unfolding pays for itself and gemm-chunks stays faster at
  batch 128). An inference's forward pass of up to TILES_INFERENCE_BATCH images
  runs "tiles" for 64 filters too, where a batch too small to split among the
  cores leaves the chunked products short of work.
- "pixel-rows": for at most eight float32 filters, at any stride (W3's and W4's
  layers), a direct convolution on x's own pixels (pixel_rows.py), one output
  pixel's filters as one 8-lane vector, so nothing is unfolded or split; dW2 and
  db from its weight-gradient kernel on the same pixels (x itself is all that is
  kept, or its zero-padded copy), dx as for "phases".
- "im2col-gemm": the reference (NumpyOps), for dtypes the kernels are not
  compiled for (float16, ints).

`choose` is the only place that decides.
"""

import functools

import numpy as np

from . import elementwise, gemm, im2col, phases, phases_tiles, pixel_rows, threads, workers
from ._jit import JIT_DTYPES, contig

GEMM_CHUNKS = "gemm-chunks"
PHASES = "phases"
PIXEL_ROWS = "pixel-rows"
TILES = "tiles"
REFERENCE = "im2col-gemm"

#: the filter count of "tiles" (two of the tiles' 16-lane vectors). On the narrow
#: tiles (phases_tiles.narrow), forward + backward with the ReLU at batch 32, tiles
#: against gemm-chunks: 32 -> 32 at 16x16 5.5 ms against 7.2, at 32x32 21.0 against
#: 23.9; with 64 filters no better (8x8 5.8 against 5.1, 16x16 18.5 against 19.3)
TILES_FILTERS = 32

#: the largest inference batch whose forward pass runs "tiles" for 64 filters too
#: (tiles against gemm-chunks, forward with the ReLU: W1's 32 -> 64 layer at 14x14
#: 0.36-0.90 of the time at batch 1 to 16, W2's 64 -> 64 at 16x16 0.44-0.96; at
#: batch 32 1.05-1.11)
TILES_INFERENCE_BATCH = 16
TILES_INFERENCE_FILTERS = 64


@functools.lru_cache(maxsize=1024)
def choose(W2_shape, dtypes, taps, strides=(1, 1), inference_batch=None):
    """The algorithm for a convolution with kernel matrix shape (K, F), K = taps * C
    (taps = kh*kw), strides (sh, sw), on arrays of the given dtypes (a tuple):
    "pixel-rows" for at most eight float32 filters where the CPU has 256-bit FMA
    (pixel_rows.applies), "phases" for other small convolutions (phases.is_small)
    when all dtypes agree,
    "tiles" for a stride-1 window larger than 1x1 with 32 float32 filters where
    the tiles run (phases.pixel_layout), or TILES_INFERENCE_FILTERS in an
    inference's forward pass of inference_batch <= TILES_INFERENCE_BATCH images
    (None: a training step), "gemm-chunks" otherwise, and
    "im2col-gemm" (the reference) for dtypes the kernels are not compiled for.
    Cached: a batch-1 convolution takes ~25 us, so the choice must cost next to
    nothing."""
    dtypes = [np.dtype(d) for d in dtypes]
    if not all(d in JIT_DTYPES for d in dtypes):
        return REFERENCE
    k, f = W2_shape
    same = len(set(dtypes)) == 1
    if pixel_rows.applies(f, dtypes):
        return PIXEL_ROWS
    if phases.is_small(k, f, taps) and same:
        return PHASES
    small_inference = inference_batch is not None and inference_batch <= TILES_INFERENCE_BATCH
    tiles_filters = f == TILES_FILTERS or (small_inference and f == TILES_INFERENCE_FILTERS)
    if (tiles_filters and taps > 1 and same
            and phases.pixel_layout(dtypes[0], f, strides[0], strides[1], kept=False)):
        return TILES
    return GEMM_CHUNKS


def tiles_weight_grad_direct():
    """Does "tiles" take dW2 and db from the direct weight-gradient tile on the split
    its forward kept, rather than from the gemm chunks? On the narrow tiles
    (phases_tiles.narrow)."""
    return phases_tiles.narrow()


def _chunk_images(n, rows_per_image, k, itemsize, chunk_bytes, serial):
    # images per chunk: chunk_bytes of im2col rows, shared out among the workers
    # when each job runs on its own core
    budget = chunk_bytes // (threads.num_threads() if serial else 1)
    per_image = max(rows_per_image * k * itemsize, 1)
    return max(1, min(n, budget // per_image))


def _worth_jobs(jobs_per_core, n, rows, k, f):
    """Split a convolution of n images (rows output pixels each, K x F kernel
    matrix) into one job per core? When asked to (jobs_per_core) and it has at
    least workers.SPLIT_FLOPS multiply-adds' worth of work: below, the hand-off to
    the pool's threads costs more than the second core saves, and one job on the
    calling thread with the parallel kernels is faster (measured on W5's 1x1
    stride-2 shortcuts at batch 32, 8.4 MFLOP: forward 0.26 -> 0.13 ms and 0.26 ->
    0.08, backward 0.51 -> 0.31 and 0.35 -> 0.18; a 3x3 32 -> 32 layer of 38 MFLOP
    is even forward and faster as jobs backward)."""
    return jobs_per_core and 2 * n * rows * k * f >= workers.SPLIT_FLOPS


def _gemm(serial):
    # inside a job of its own core: the one-core product (gemm.matmul); else the
    # product that splits itself into jobs (workers.matmul)
    return gemm.matmul if serial else workers.matmul


def gemm_chunks_forward(x, W2, b, kh, kw, sh, sw, pt, pl, oh, ow, chunk_bytes, jobs_per_core, relu=False):
    """y (N*OH*OW, F) = im2col(x) @ W2 + b, a chunk of images at a time, through
    max(., 0) when relu (each chunk while it is in cache)."""
    n = x.shape[0]
    k, f = W2.shape
    rows = oh * ow
    y = np.empty((n * rows, f), dtype=np.result_type(x, W2))
    bias = contig(b).astype(y.dtype, copy=False) if b is not None else np.zeros(f, dtype=y.dtype)

    def forward_images(s0, e0, serial):
        # y rows of images [s0, e0): chunk by chunk, unfold and multiply
        step = _chunk_images(e0 - s0, rows, k, x.itemsize, chunk_bytes, serial)
        product = _gemm(serial)
        buf = np.empty((step * rows, k), dtype=x.dtype)
        for s in range(s0, e0, step):
            e = min(e0, s + step)
            cols = buf[:(e - s) * rows]
            im2col.im2col(x[s:e], kh, kw, sh, sw, pt, pl, oh, ow, cols, serial)
            out = y[s * rows:e * rows]
            product(cols, W2, out)
            if b is not None or relu:       # one pass over the chunk, while it is in cache
                elementwise.bias_relu_rows(out, bias, relu)

    workers.over_batch(n, forward_images, _worth_jobs(jobs_per_core, n, rows, k, f))
    return y


def gemm_chunks_backward(dy, x, W2, kh, kw, sh, sw, pt, pl, oh, ow, need_dx, need_dW2,
                         chunk_bytes, jobs_per_core, relu_output=None):
    """(dx or None, dW2 or None, db or None): each chunk's im2col rows are recomputed
    into a cache-sized buffer and used for its share of dW2 = cols^T dy, and its
    dcols = dy @ W2^T is folded back by col2im while still in cache. db, the
    column sums of dy, is summed chunk by chunk too (with dW2: need_dW2 asks for
    the parameters' gradients, and a dx-only call skips it). With relu_output (the
    forward's y after its ReLU, (N*OH*OW, F)), dy is the gradient after that ReLU:
    each chunk of dy is masked (NumpyOps.relu_backward) as it is first read."""
    n, h, w, c = x.shape
    k, f = W2.shape
    rows = oh * ow
    dx = np.empty((n, h, w, c), dtype=dy.dtype) if need_dx else None

    def backward_images(s0, e0, serial):
        # dx rows of images [s0, e0), and their shares of dW2 and db
        step = _chunk_images(e0 - s0, rows, k, x.itemsize, chunk_bytes, serial)
        buf = np.empty((step * rows, k), dtype=x.dtype) if need_dW2 else None
        dbuf = np.empty((step * rows, k), dtype=dy.dtype) if need_dx else None
        mbuf = np.empty((step * rows, f), dtype=dy.dtype) if relu_output is not None else None
        share = np.zeros((k, f), dtype=dy.dtype) if need_dW2 else None
        part = np.empty((k, f), dtype=dy.dtype) if need_dW2 and not serial else None
        W2T = np.ascontiguousarray(W2.T) if need_dx else None
        bias_share = np.zeros(f, dtype=dy.dtype)
        product = _gemm(serial)
        for s in range(s0, e0, step):
            e = min(e0, s + step)
            d = dy[s * rows:e * rows]
            if relu_output is not None:
                masked = mbuf[:(e - s) * rows]
                elementwise.masked_rows_and_sums(d, relu_output[s * rows:e * rows], masked, bias_share)
                d = masked
            elif need_dW2:
                elementwise.add_column_sums(d, bias_share)
            if need_dW2:
                cols = buf[:(e - s) * rows]
                im2col.im2col(x[s:e], kh, kw, sh, sw, pt, pl, oh, ow, cols, serial)
                if serial:
                    gemm.matmul_tn_add(cols, d, share)
                else:
                    workers.matmul(cols.T, d, part)
                    share += part
            if need_dx:
                dcols = dbuf[:(e - s) * rows]
                product(d, W2T, dcols)
                im2col.col2im(dcols, e - s, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, dx[s:e], serial)
        return share, bias_share

    shares = workers.over_batch(n, backward_images, _worth_jobs(jobs_per_core, n, rows, k, f))
    if not need_dW2:
        return dx, None, None
    if len(shares) == 1:
        return (dx, *shares[0])
    return dx, np.sum([sh[0] for sh in shares], axis=0), np.sum([sh[1] for sh in shares], axis=0)


def phases_forward(x, W2, b, kh, kw, sh, sw, pt, pl, oh, ow, training, relu=False):
    """(y (N*OH*OW, F), xq or None): the direct convolution on stride phases, through
    max(., 0) when relu; xq, the split input, is kept for dW2 when training."""
    n, _, _, c = x.shape
    f = W2.shape[1]
    bias = contig(b).astype(x.dtype, copy=False) if b is not None else np.zeros(f, dtype=x.dtype)
    xq = phases.split(x, kh, kw, sh, sw, pt, pl, oh, ow, phases.pixel_layout(x.dtype, f, sh, sw, kept=training))
    y = np.empty((n * oh * ow, f), dtype=x.dtype)
    phases.forward(xq, W2, bias, c, kh, kw, sh, sw, oh, ow, y, relu)
    return y, (xq if training else None)


def pixel_rows_forward(x, W2, b, kh, kw, sh, sw, pt, pl, oh, ow, training, relu=False):
    """(y (N*OH*OW, F), xp or None): the direct convolution on x's pixels, through
    max(., 0) when relu; xp, x zero-padded, is kept for dW2 when training and it
    is a copy (an unpadded x is the layer's own input, kept anyway)."""
    xp = pixel_rows.padded_input(x, kh, kw, sh, sw, pt, pl, oh, ow)
    y = pixel_rows.forward(xp, W2, b, kh, kw, sh, sw, oh, ow, relu)
    return y, (xp if training and xp is not x else None)


def pixel_rows_weight_grad(dy, x, saved, kh, kw, sh, sw, pt, pl, oh, ow, relu_output=None):
    """(dW2 (K, F), db (F,)) from x's padded pixels (kept by pixel_rows_forward, else
    x itself or padded again), dy masked by relu_output when given."""
    hp, wp = (oh - 1) * sh + kh, (ow - 1) * sw + kw
    if saved is not None and saved.shape == (x.shape[0], hp, wp, x.shape[3]):
        xp = saved
    else:
        xp = pixel_rows.padded_input(x, kh, kw, sh, sw, pt, pl, oh, ow)
    return pixel_rows.weight_grad(xp, dy, kh, kw, sh, sw, oh, ow, relu_output)


def pixel_rows_input_grad_applies(x_shape):
    """Does pixel_rows_input_grad take dx? For x of at most 8 channels."""
    return pixel_rows.input_grad_applies(x_shape[-1])


def pixel_rows_input_grad(dy, W2, x_shape, kh, kw, sh, sw, pt, pl, oh, ow):
    """dx (N, H, W, C) of a pixel-rows convolution, at any stride: each pixel of x
    gathers its gradient from the windows that cover it (pixel_rows.input_grad)."""
    return pixel_rows.input_grad(dy, W2, x_shape, kh, kw, sh, sw, pt, pl, oh, ow)


def phases_input_grad_applies(x_shape, kh, kw, sh, sw, pt, pl):
    """Does phases_input_grad compute this convolution's dx? Stride 1, padding
    no wider than the window, and at least 4 channels in x (the dx convolution's
    filters: the phases kernel works on groups of 4). Measured at batch 32: W4's
    42x42x5 -> 3-filter layer 0.64 ms instead of 3.4 ms; 16 -> 8 channels 1.9 ms
    instead of 3.3; 16 -> 16 the same; a 1-channel input 1.5x slower."""
    return sh == sw == 1 and x_shape[-1] >= 4 and pt <= kh - 1 and pl <= kw - 1


def phases_input_grad(dy, W2, x_shape, kh, kw, pt, pl, oh, ow):
    """dx (N, H, W, C) of a stride-1 convolution, as a convolution of dy (N*OH*OW, F).

    Each input pixel collects W2[(ty, tx, ch), f] * dy[(i, j), f] from the outputs
    (i, j) = (yy + pt - ty, xx + pl - tx) whose window covers it, which is the
    correlation of dy, zero-padded by kh-1-pt rows on top and kw-1-pl columns on
    the left, with the kernel flipped in space and its channel axes swapped:

        Wf[(kh-1-ty, kw-1-tx, f), ch] = W2[(ty, tx, ch), f]

    so dy takes the place of x (F channels) and dx that of y (C filters)."""
    n, h, w, c = x_shape
    f = W2.shape[1]
    flipped = np.ascontiguousarray(W2.reshape(kh, kw, c, f)[::-1, ::-1].transpose(0, 1, 3, 2).reshape(kh * kw * f, c))
    dx, _ = phases_forward(dy.reshape(n, oh, ow, f), flipped, None, kh, kw, 1, 1, kh - 1 - pt, kw - 1 - pl,
                           h, w, training=False)
    return dx.reshape(n, h, w, c)


def phases_weight_grad(dy, x, saved, W2, kh, kw, sh, sw, pt, pl, oh, ow, relu_output=None):
    """(dW2 (K, F), db (F,)) from the split input (kept by phases_forward, else split
    again): the direct kernel sums db in the same pass over dy, which it masks by
    relu_output when given (dy is then the gradient after the forward's ReLU)."""
    n, _, _, c = x.shape
    pixels = phases.pixel_layout(dy.dtype, W2.shape[1], sh, sw, kept=True)
    xq = saved if saved is not None and saved.shape == phases.split_shape(n, c, kh, kw, sh, sw, oh, ow, pixels) \
        else phases.split(x.astype(dy.dtype, copy=False), kh, kw, sh, sw, pt, pl, oh, ow, pixels)
    return phases.weight_grad(xq.astype(dy.dtype, copy=False), dy, c, kh, kw, sh, sw, oh, ow, W2.shape[0],
                              relu_output)
