"""NumbaOps: NumpyOps with the hot kernel pairs jitted for the CPU by Numba.

Each method computes the same function as the NumpyOps method of the same name
(the readable reference; read that first) and says so. The kernels live in one
module per family beside this one; this class only checks its inputs, picks the
kernel and allocates the outputs. tests/test_backend_numba.py checks every
override against the reference in float32 and float64 over a grid of shapes.
Inputs the kernels are not compiled for (float16, ints) take the reference path.
"""

import numpy as np

from ..numpy_ops import NumpyOps, output_size
from . import conv, elementwise, im2col, optimizers, pooling, workers
from ._jit import contig, jittable
from .batchnorm import BatchNormKernels


class NumbaOps(BatchNormKernels, NumpyOps):
    """NumpyOps with the hot kernels jitted by Numba (parallel over the batch)."""

    name = "numba"

    #: bytes of im2col matrix per chunk of "gemm-chunks" (split among the jobs when
    #: there is one job per core): small enough that a job's chunk, its dcols and
    #: its GEMM output stay near the core, large enough to amortize the calls. With
    #: the register-tiled products (gemm.py), measured on 2 cores (AMD EPYC, 1 MiB L2
    #: each): 4 MiB against 8, forward the same, backward 0.75-0.90 of the time
    #: (W2's 32 -> 32 at batch 128: 6.1 ms against 7.1-10.1); 2 MiB no better
    conv_chunk_bytes = 4 << 20
    #: whether "gemm-chunks" may run as one job per core (see workers.CoreJobs)
    conv_jobs_per_core = True

    def __init__(self):
        from ._jit import announce_compilation
        announce_compilation()

    # ------------------------------------------------------------------ arrays
    def matmul(self, a, b):
        """Same as NumpyOps.matmul: a @ b; 2-D float products run with a one-thread
        BLAS, large ones as one job per core (workers.matmul explains why)."""
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] * a.shape[1] * b.shape[1] <= workers.BLAS_SINGLE_THREAD_MNK \
                or a.dtype != b.dtype or not jittable(a) or a.shape[1] != b.shape[0]:
            return a @ b        # small: OpenBLAS runs it on this thread anyway
        return workers.matmul(a, b)

    # ------------------------------------------------------------------ im2col
    def im2col(self, x, kh, kw, sh, sw, pads):
        """Same as NumpyOps.im2col: x (N, H, W, C) -> cols (N*OH*OW, kh*kw*C),
        rows (n, i, j), columns (ty, tx, c); taps outside the image read zero."""
        if not jittable(x):
            return super().im2col(x, kh, kw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        x = contig(x)
        if kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == pb == pl == pr == 0:
            return x.reshape(n * h * w, c)      # a 1x1 convolution needs no unfolding
        cols = np.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
        im2col.im2col(x, kh, kw, sh, sw, pt, pl, oh, ow, cols)
        return cols

    def col2im(self, cols, x_shape, kh, kw, sh, sw, pads):
        """Same as NumpyOps.col2im (the adjoint of im2col): cols (N*OH*OW, kh*kw*C)
        -> dx (N, H, W, C), each pixel the sum of the entries of the windows that
        cover it, added in the reference's (ty, tx) order."""
        if not jittable(cols):
            return super().col2im(cols, x_shape, kh, kw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        oh = output_size(h, kh, sh, pt, pb)
        ow = output_size(w, kw, sw, pl, pr)
        cols = contig(cols).reshape(n * oh * ow, kh * kw * c)
        out = np.empty((n, h, w, c), dtype=cols.dtype)
        im2col.col2im(cols, n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow, out)
        return out

    # ------------------------------------------------------- whole convolution
    def conv2d_algorithm(self, x_shape, W2_shape, dtypes=(np.float32,), strides=(1, 1), training=True):
        """The name of the algorithm conv2d_forward/backward run for an input of
        shape x_shape (N, H, W, C), a kernel matrix of shape (kh*kw*C, F) and these
        strides on arrays of these dtypes, in a training step or (training=False)
        an inference's forward pass: "pixel-rows", "phases", "tiles",
        "gemm-chunks" or "im2col-gemm" (see convnet/backend/numba/conv.py, the one place that chooses)."""
        return conv.choose(tuple(W2_shape), tuple(dtypes), W2_shape[0] // x_shape[-1], tuple(strides),
                           None if training else x_shape[0])

    def conv2d_forward(self, x, W2, b, kh, kw, sh, sw, pads, training=True, relu=False):
        """Same as NumpyOps.conv2d_forward: (y = im2col(x) @ W2 + b, (N*OH*OW, F),
        saved), by the algorithm conv2d_algorithm names; the ReLU, when asked for,
        is applied as y is written (pixel-rows, phases) or to each chunk while it
        is in cache."""
        algorithm = self.conv2d_algorithm(x.shape, W2.shape, (x.dtype, W2.dtype), (sh, sw), training)
        if algorithm == conv.REFERENCE:
            return super().conv2d_forward(x, W2, b, kh, kw, sh, sw, pads, training, relu)
        (pt, pb), (pl, pr) = pads
        oh = output_size(x.shape[1], kh, sh, pt, pb)
        ow = output_size(x.shape[2], kw, sw, pl, pr)
        x, W2 = contig(x), contig(W2)
        if algorithm == conv.PHASES:
            return conv.phases_forward(x, W2, b, kh, kw, sh, sw, pt, pl, oh, ow, training, relu)
        if algorithm == conv.PIXEL_ROWS:
            return conv.pixel_rows_forward(x, W2, b, kh, kw, sh, sw, pt, pl, oh, ow, training, relu)
        if algorithm == conv.TILES:     # kept only for a direct dW2; the gemm chunks unfold x again
            return conv.phases_forward(x, W2, b, kh, kw, sh, sw, pt, pl, oh, ow,
                                       training and conv.tiles_weight_grad_direct(), relu)
        y = conv.gemm_chunks_forward(x, W2, b, kh, kw, sh, sw, pt, pl, oh, ow,
                                     self.conv_chunk_bytes, self.conv_jobs_per_core, relu)
        return y, None          # backward recomputes the chunks from x

    def conv2d_backward(self, dy, x, saved, W2, kh, kw, sh, sw, pads, need_dx=True, relu_output=None):
        """Same as NumpyOps.conv2d_backward: (dx or None, dW2, db) for
        dy = dL/dy (N*OH*OW, F), by the algorithm conv2d_algorithm names ("phases"
        and "pixel-rows" take dW2 and db from their direct kernels, and dx from
        phases_input_grad or the chunked col2im path; "tiles" its dx from phases_input_grad and dW2 and db
        from the gemm chunks, or on the narrow tiles from the direct kernel on the
        split its forward kept: conv.tiles_weight_grad_direct). The ReLU's mask
        (relu_output) is applied as each chunk of dy is first read (gemm-chunks),
        or as the direct kernel reads dy when only dW2 and db are needed (phases,
        pixel-rows), else in a pass of its own."""
        algorithm = self.conv2d_algorithm(x.shape, W2.shape, (dy.dtype, x.dtype, W2.dtype), (sh, sw))
        if algorithm == conv.REFERENCE:
            return super().conv2d_backward(dy, x, saved, W2, kh, kw, sh, sw, pads, need_dx, relu_output)
        (pt, pb), (pl, pr) = pads
        oh = output_size(x.shape[1], kh, sh, pt, pb)
        ow = output_size(x.shape[2], kw, sw, pl, pr)
        x, dy, W2 = contig(x), contig(dy), contig(W2)
        if relu_output is not None and (relu_output.shape != dy.shape or relu_output.dtype != dy.dtype):
            dy, relu_output = self.relu_backward(dy, relu_output), None
        if algorithm == conv.TILES and need_dx and not conv.phases_input_grad_applies(x.shape, kh, kw, sh, sw,
                                                                                         pt, pl):
            algorithm = conv.GEMM_CHUNKS        # padding wider than the window: dx by col2im
        if algorithm == conv.GEMM_CHUNKS:
            return conv.gemm_chunks_backward(dy, x, W2, kh, kw, sh, sw, pt, pl, oh, ow, need_dx, True,
                                             self.conv_chunk_bytes, self.conv_jobs_per_core,
                                             None if relu_output is None else contig(relu_output))
        if relu_output is not None and need_dx:      # both dx and dW2 read the masked dy
            dy, relu_output = self.relu_backward(dy, relu_output), None
        if algorithm == conv.TILES:
            dx = conv.phases_input_grad(dy, W2, x.shape, kh, kw, pt, pl, oh, ow) if need_dx else None
            if conv.tiles_weight_grad_direct():
                dW2, db = conv.phases_weight_grad(dy, x, saved, W2, kh, kw, sh, sw, pt, pl, oh, ow,
                                                  None if relu_output is None else contig(relu_output))
                return dx, dW2, db
            _, dW2, db = conv.gemm_chunks_backward(dy, x, W2, kh, kw, sh, sw, pt, pl, oh, ow, False, True,
                                                   self.conv_chunk_bytes, self.conv_jobs_per_core,
                                                   None if relu_output is None else contig(relu_output))
            return dx, dW2, db
        dx = None
        if need_dx and conv.phases_input_grad_applies(x.shape, kh, kw, sh, sw, pt, pl):
            dx = conv.phases_input_grad(dy, W2, x.shape, kh, kw, pt, pl, oh, ow)
        elif need_dx and algorithm == conv.PIXEL_ROWS and conv.pixel_rows_input_grad_applies(x.shape):
            dx = conv.pixel_rows_input_grad(dy, W2, x.shape, kh, kw, sh, sw, pt, pl, oh, ow)
        elif need_dx:
            dx, _, _ = conv.gemm_chunks_backward(dy, x, W2, kh, kw, sh, sw, pt, pl, oh, ow, True, False,
                                                 self.conv_chunk_bytes, self.conv_jobs_per_core)
        mask = None if relu_output is None else contig(relu_output)
        if algorithm == conv.PIXEL_ROWS:
            dW2, db = conv.pixel_rows_weight_grad(dy, x, saved, kh, kw, sh, sw, pt, pl, oh, ow, mask)
        else:
            dW2, db = conv.phases_weight_grad(dy, x, saved, W2, kh, kw, sh, sw, pt, pl, oh, ow, mask)
        return dx, dW2, db

    # ----------------------------------------------------------------- pooling
    def maxpool(self, x, ph, pw, sh, sw, pads):
        """Same as NumpyOps.maxpool: (y, argmax) with argmax = ty*pw + tx of the
        first maximum of each window (int32); padding is -inf and never wins."""
        if not jittable(x):
            return super().maxpool(x, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, ph, sh, pt, pb)
        ow = output_size(w, pw, sw, pl, pr)
        x = contig(x)
        y = np.empty((n, oh, ow, c), dtype=x.dtype)
        argmax = np.empty((n, oh, ow, c), dtype=np.int32)
        if (ph, pw, sh, sw) == (2, 2, 2, 2) and pt == pl == 0 and 2 * oh <= h and 2 * ow <= w:
            pooling.maxpool2x2.pick(x.size)(x, oh, ow, y, argmax)
        else:
            pooling.maxpool.pick(x.size)(x, ph, pw, sh, sw, pt, pl, oh, ow, y, argmax)
        return y, argmax

    def maxpool_backward(self, dy, argmax, x_shape, ph, pw, sh, sw, pads):
        """Same as NumpyOps.maxpool_backward: each window's dy goes to the input its
        argmax names; overlapping windows add up (in the reference's order)."""
        if not jittable(dy):
            return super().maxpool_backward(dy, argmax, x_shape, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        dy, argmax = contig(dy), contig(argmax)
        out = np.empty((n, h, w, c), dtype=dy.dtype)
        oh, ow = dy.shape[1], dy.shape[2]
        if (ph, pw, sh, sw) == (2, 2, 2, 2) and pt == pl == 0 and 0 < 2 * oh <= h and 0 < 2 * ow <= w:
            # the windows of maxpool's 2x2 kernel: wholly inside the input
            pooling.maxpool2x2_backward(dy, argmax, out)
        else:
            pooling.maxpool_backward.pick(out.size)(
                dy, argmax, im2col.covering_windows(h, pt, ph, sh, dy.shape[1]),
                im2col.covering_windows(w, pl, pw, sw, dy.shape[2]), out)
        return out

    def avgpool(self, x, ph, pw, sh, sw, pads):
        """Same as NumpyOps.avgpool: (y, count), the mean over the real pixels of
        each window; count (OH, OW, 1)."""
        if not jittable(x):
            return super().avgpool(x, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x.shape
        oh = output_size(h, ph, sh, pt, pb)
        ow = output_size(w, pw, sw, pl, pr)
        count = pooling.window_counts(h, w, ph, pw, sh, sw, pt, pb, pl, pr, oh, ow, x.dtype)
        y = np.empty((n, oh, ow, c), dtype=x.dtype)
        pooling.avgpool.pick(x.size)(contig(x), ph, pw, sh, sw, pt, pl, oh, ow, count, y)
        return y, count

    def avgpool_backward(self, dy, count, x_shape, ph, pw, sh, sw, pads):
        """Same as NumpyOps.avgpool_backward: each input gets dy / count of every
        window that covers it."""
        if not jittable(dy):
            return super().avgpool_backward(dy, count, x_shape, ph, pw, sh, sw, pads)
        (pt, pb), (pl, pr) = pads
        n, h, w, c = x_shape
        out = np.empty((n, h, w, c), dtype=dy.dtype)
        pooling.avgpool_backward.pick(out.size)(
            contig(dy), contig(count), im2col.covering_windows(h, pt, ph, sh, dy.shape[1]),
            im2col.covering_windows(w, pl, pw, sw, dy.shape[2]), out)
        return out

    # ------------------------------------------------------------- activations
    def add(self, a, b):
        """Same as NumpyOps.add: a + b, as a new array, on every core."""
        if a.shape != b.shape or a.dtype != b.dtype or not jittable(a) \
                or not (a.flags.c_contiguous and b.flags.c_contiguous):
            return super().add(a, b)
        out = np.empty_like(a)
        elementwise.add.pick(a.size)(a, b, out)
        return out

    def relu(self, x, out=None):
        """Same as NumpyOps.relu: max(x, 0) (NaN stays NaN), into `out` when given."""
        if not x.flags.c_contiguous or not jittable(x) or (
                out is not None and (not out.flags.c_contiguous or out.shape != x.shape
                                     or out.dtype != x.dtype)):
            return super().relu(x, out=out)
        if out is None:
            out = np.empty_like(x)
        elementwise.relu.pick(x.size)(x, out)
        return out

    def relu_backward(self, dy, y):
        """Same as NumpyOps.relu_backward: dy where y > 0, else 0."""
        if dy.shape != y.shape or dy.dtype != y.dtype or not jittable(dy):
            return super().relu_backward(dy, y)
        dy, y = contig(dy), contig(y)
        out = np.empty_like(dy)
        elementwise.relu_backward.pick(dy.size)(dy, y, out)
        return out

    # ----------------------------------------------------------------- softmax
    def softmax(self, z):
        """Same as NumpyOps.softmax: exp(log_softmax(z)) over the last axis, one
        pass per row instead of seven numpy calls (it shows at batch 1)."""
        if z.ndim != 2 or not jittable(z) or z.shape[1] == 0:
            return super().softmax(z)
        z = contig(z)
        out = np.empty_like(z)
        elementwise.softmax_rows(z, out)
        return out

    def sparse_softmax_cross_entropy(self, logits, labels):
        """Same as NumpyOps.sparse_softmax_cross_entropy: per-sample losses (N,)
        and dlogits = softmax(z) - onehot(y) (N, K), stable via log-sum-exp."""
        labels = np.asarray(labels)
        if logits.ndim != 2 or not jittable(logits) or labels.dtype.kind not in "iu":
            return super().sparse_softmax_cross_entropy(logits, labels)
        z = contig(logits)
        losses = np.empty(z.shape[0], dtype=z.dtype)
        grad = np.empty_like(z)
        elementwise.sparse_softmax_xent(z, contig(labels.astype(np.int64, copy=False)), losses, grad)
        return losses, grad

    # -------------------------------------------------------------- optimizers
    def adam_update(self, p, g, m, v, lr, beta_1, beta_2, epsilon, t):
        """Same as NumpyOps.adam_update (Kingma & Ba, Algorithm 1), in place, one
        fused pass over p, g, m and v instead of about ten numpy passes."""
        if not all(a.flags.c_contiguous and a.dtype == p.dtype for a in (p, g, m, v)) or not jittable(p):
            return super().adam_update(p, g, m, v, lr, beta_1, beta_2, epsilon, t)
        s = p.dtype.type
        flat = [a.reshape(-1) for a in (p, g, m, v)]
        optimizers.adam.pick(p.size)(*flat, s(lr), s(beta_1), s(beta_2), s(1 - beta_1), s(1 - beta_2),
                                     s(1 - beta_1 ** t), s(1 - beta_2 ** t), s(epsilon))

    def sgd_update(self, p, g, velocity, lr, momentum, nesterov, weight_decay):
        """Same as NumpyOps.sgd_update: heavy-ball momentum (optionally Nesterov)
        with L2 weight decay, in place, one fused pass."""
        vel = velocity if velocity is not None else p
        if not all(a.flags.c_contiguous and a.dtype == p.dtype for a in (p, g, vel)) \
                or not jittable(p) or (velocity is None and momentum):
            return super().sgd_update(p, g, velocity, lr, momentum, nesterov, weight_decay)
        s = p.dtype.type
        flat = [a.reshape(-1) for a in (p, g, vel)]
        optimizers.sgd.pick(p.size)(*flat, s(lr), s(momentum), bool(nesterov), s(weight_decay),
                                    velocity is not None)
