"""2-D convolution, channels-last, read from top to bottom.

A Conv2D layer slides F filters of shape (kh, kw, C) over the input and takes a dot
product at every position (cross-correlation, as every framework does):

    y[n, i, j, f] = b[f] + sum_{dy, dx, c} xpad[n, i*sh + dy, j*sw + dx, c] * W[dy, dx, c, f]

`conv2d_naive` below writes exactly that with loops: slow, but obviously right.
The layer computes the same numbers the fast way, **im2col + one matrix product**:

    cols = im2col(x)            (N*OH*OW, kh*kw*C)   one row per output position
    y    = cols @ W2 + b        (N*OH*OW, F)         W2 = W reshaped to (kh*kw*C, F)

Backward follows from y = cols @ W2 + b with the chain rule:

    dW2   = cols^T @ dy         (kh*kw*C, F)    each weight met every row once
    db    = sum over rows of dy (F,)
    dcols = dy @ W2^T           (N*OH*OW, kh*kw*C)
    dx    = col2im(dcols)       (N, H, W, C)    the adjoint of im2col: scatter-add

im2col and col2im are kernels of the active backend (convnet/backend/): NumpyOps
writes them with a loop over the kh*kw kernel offsets; NumbaOps jits them. A backend
with `fused_conv` (NumbaOps) runs the whole product as ops.conv2d_forward/backward
instead, the same numbers computed a batch chunk at a time so the im2col matrix
stays in cache and is never stored for backward (NumpyOps.conv2d_forward spells
out the steps below).
"""

import numpy as np

from ..backend import get_ops
from .base import KernelLayer
from .padding import normalize_padding, normalize_pair, window_geometry


def conv2d_naive(x, W, b=None, strides=(1, 1), padding="valid"):
    """Reference convolution with explicit loops (numpy only; for learning and tests).

    x: (N, H, W, C), W: (kh, kw, C, F), b: (F,) or None -> y: (N, OH, OW, F)
    """
    x = np.asarray(x)
    W = np.asarray(W)
    n, h, w, c = x.shape
    kh, kw, _, f = W.shape
    sh, sw = normalize_pair(strides, "strides", "conv2d_naive")
    padding = normalize_padding(padding, "conv2d_naive")
    (oh, ow), ((pt, pb), (pl, pr)) = window_geometry(h, w, (kh, kw), (sh, sw), padding)
    xpad = np.zeros((n, h + pt + pb, w + pl + pr, c), dtype=np.result_type(x, W))
    xpad[:, pt:pt + h, pl:pl + w, :] = x
    y = np.zeros((n, oh, ow, f), dtype=xpad.dtype)
    for i in range(oh):
        for j in range(ow):
            for dy in range(kh):
                for dx in range(kw):
                    # every channel and filter at once: (N, C) @ (C, F)
                    y[:, i, j, :] += xpad[:, i * sh + dy, j * sw + dx, :] @ W[dy, dx]
    if b is not None:
        y += np.asarray(b)
    return y


class Conv2D(KernelLayer):
    """2-D convolution layer (Keras' Conv2D).

    Input (N, H, W, C) -> output (N, OH, OW, filters).
    Params: W (kh, kw, C, filters), b (filters,).
    """

    input_rank = 4

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name=None, dtype=None, input_shape=None, seed=None):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         name=name, dtype=dtype, input_shape=input_shape, seed=seed)
        owner = self.describe()
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"{owner}: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", owner)
        self.strides = normalize_pair(strides, "strides", owner)
        self.padding = normalize_padding(padding, owner)

    def _rank_hint(self):
        return "(N, H, W, C)"

    def _geometry(self, h, w):
        return window_geometry(h, w, self.kernel_size, self.strides, self.padding)

    def _check_spatial(self, shape):
        h, w = shape[1], shape[2]
        (oh, ow), pads = self._geometry(h, w)
        if oh < 1 or ow < 1:
            ph = h + sum(pads[0])
            pw = w + sum(pads[1])
            raise ValueError(
                f"{self.describe()}: kernel {self.kernel_size} is larger than the padded input "
                f"({ph}, {pw}) (input shape {tuple(shape)}, padding {self.padding!r})"
            )

    def _build(self, input_shape):
        h, w, c = input_shape
        self._check_spatial((None, h, w, c))
        kh, kw = self.kernel_size
        self._make_params((kh, kw, c, self.filters))

    def input_spec(self):
        return (None, None, self.input_shape[2])

    def compute_output_shape(self, input_shape):
        h, w, _ = input_shape
        (oh, ow), _ = self._geometry(h, w)
        return (oh, ow, self.filters)

    def _forward(self, x, training):
        ops = get_ops()
        if ops.fused_conv:
            return self._fused_forward(ops, x, training)
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        sh, sw = self.strides
        (oh, ow), pads = self._geometry(h, w)
        W = self.params["W"]
        cols = ops.im2col(x, kh, kw, sh, sw, pads)                    # (N*OH*OW, kh*kw*C)
        y = ops.matmul(cols, W.reshape(kh * kw * c, self.filters))   # (N*OH*OW, F)
        if self.use_bias:
            y += self.params["b"]
        self._cache = (cols, x.shape, pads)
        return y.reshape(n, oh, ow, self.filters)

    def _backward(self, dy):
        ops = get_ops()
        if ops.fused_conv:
            return self._fused_backward(ops, dy)
        cols, x_shape, pads = self._cache
        kh, kw = self.kernel_size
        sh, sw = self.strides
        c = x_shape[3]
        W2 = self.params["W"].reshape(kh * kw * c, self.filters)
        dy2 = dy.reshape(-1, self.filters)                             # (N*OH*OW, F)
        self.grads["W"] = ops.matmul(cols.T, dy2).reshape(self.params["W"].shape)
        if self.use_bias:
            self.grads["b"] = dy2.sum(axis=0)
        if self.skip_input_grad:       # first layer of a model: nobody needs dx
            return None
        dcols = ops.matmul(dy2, W2.T)                                  # (N*OH*OW, kh*kw*C)
        return ops.col2im(dcols, x_shape, kh, kw, sh, sw, pads)       # (N, H, W, C)

    # The same two passes through a backend's whole-convolution kernels
    # (ops.fused_conv; NumpyOps.conv2d_forward/backward show what they compute).
    def _fused_forward(self, ops, x, training):
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        (oh, ow), pads = self._geometry(h, w)
        W2 = self.params["W"].reshape(kh * kw * c, self.filters)
        y, saved = ops.conv2d_forward(x, W2, self.params.get("b"), kh, kw, *self.strides, pads,
                                      training=training)
        self._cache = (saved, x, pads)
        return y.reshape(n, oh, ow, self.filters)

    def _fused_backward(self, ops, dy):
        saved, x, pads = self._cache
        kh, kw = self.kernel_size
        W2 = self.params["W"].reshape(-1, self.filters)
        dx, dW2, db = ops.conv2d_backward(dy.reshape(-1, self.filters), x, saved, W2, kh, kw,
                                          *self.strides, pads, need_dx=not self.skip_input_grad)
        self.grads["W"] = dW2.reshape(self.params["W"].shape)
        if self.use_bias:
            self.grads["b"] = db
        return dx

    def flops_per_image(self):
        """Multiply-adds counted as 2 FLOPs, forward pass, one image."""
        oh, ow, f = self.output_shape
        kh, kw = self.kernel_size
        return 2 * oh * ow * f * kh * kw * self.input_shape[2]

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": self.padding}
