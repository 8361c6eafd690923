"""2-D convolution, channels-last, read from top to bottom.

A Conv2D layer slides F filters of shape (kh, kw, C) over the input and takes a dot
product at every position (cross-correlation, as every framework does):

    y[n, i, j, f] = b[f] + sum_{ty, tx, c} xpad[n, i*sh + ty, j*sw + tx, c] * W[ty, tx, c, f]

(ty, tx: the tap row and column inside the window). `conv2d_naive` below writes
exactly that with loops: slow, but obviously right. The layer computes the same
numbers the fast way, **im2col + one matrix product**:

    cols = im2col(x)            (N*OH*OW, kh*kw*C)   one row per output position
    y    = cols @ W2 + b        (N*OH*OW, F)         W2 = W reshaped to (kh*kw*C, F)

Backward follows from y = cols @ W2 + b with the chain rule, dy being dL/dy:

    dW2   = cols^T @ dy         (kh*kw*C, F)    each weight met every row once
    db    = sum over rows of dy (F,)
    dcols = dy @ W2^T           (N*OH*OW, kh*kw*C)
    dx    = col2im(dcols)       (N, H, W, C)    the adjoint of im2col: scatter-add

The layer hands both passes to the active backend, `ops.conv2d_forward` and
`ops.conv2d_backward` (convnet/backend/): NumpyOps writes exactly the steps above;
NumbaOps computes the same numbers by a faster algorithm (a batch chunk at a time
so the im2col matrix stays in cache, or directly on the input for small
convolutions); `layer.algorithm()` names the one that ran. How each works:
docs/how-it-works.md.

With activation="relu" the layer hands the ReLU to the backend too: y = max(z, 0)
is applied as y is written, and backward's dz = dy * (y > 0) as dy is read
(`relu=True`, `relu_output=y`), which saves two passes over arrays as large as y.
NumpyOps does exactly those two steps, so the numbers are the same (one corner
aside: a NaN in dy where y <= 0, see docs/how-it-works.md).
"""

import numpy as np

from .. import initializers
from ..backend import get_ops
from .base import KernelLayer
from .padding import normalize_padding, normalize_pair, padding_config, window_geometry


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
            for ty in range(kh):
                for tx in range(kw):
                    # every channel and filter at once: (N, C) @ (C, F)
                    y[:, i, j, :] += xpad[:, i * sh + ty, j * sw + tx, :] @ W[ty, tx]
    if b is not None:
        y += np.asarray(b)
    return y


class Conv2D(KernelLayer):
    """2-D convolution layer (Keras' Conv2D).

    Input (N, H, W, C) -> output (N, OH, OW, filters).
    Params: W (kh, kw, C / groups, filters), b (filters,).

    dilation_rate (d): the window taps are d pixels apart, so a kh x kw kernel
    covers (kh-1)*d+1 rows. groups (g): the channels split into g groups, and
    filters [k*F/g, (k+1)*F/g) see only input channels [k*C/g, (k+1)*C/g).
    padding also takes explicit ((top, bottom), (left, right)) (ONNX's pads).
    """

    input_rank = 4

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name=None, dtype=None, input_shape=None, seed=None, dilation_rate=1, groups=1):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         name=name, dtype=dtype, input_shape=input_shape, seed=seed)
        owner = self.describe()
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"{owner}: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", owner)
        self.strides = normalize_pair(strides, "strides", owner)
        self.padding = normalize_padding(padding, owner)
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", owner)
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"{owner}: groups must be a positive int, got {groups!r}")
        if filters % groups:
            raise ValueError(f"{owner}: filters ({filters}) must be a multiple of groups ({groups})")
        self.groups = groups

    def _general(self):
        """True when the layer needs the grouped/dilated reference kernels."""
        return self.groups != 1 or self.dilation_rate != (1, 1)

    def _rank_hint(self):
        return "(N, H, W, C)"

    def _geometry(self, h, w):
        return window_geometry(h, w, self.kernel_size, self.strides, self.padding, self.dilation_rate)

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
        if c % self.groups:
            raise ValueError(f"{self.describe()}: input channels ({c}) must be a multiple of groups "
                             f"({self.groups})")
        kh, kw = self.kernel_size
        self._make_params((kh, kw, c // self.groups, self.filters))

    def input_spec(self):
        return (None, None, self.input_shape[2])

    def compute_output_shape(self, input_shape):
        h, w, _ = input_shape
        (oh, ow), _ = self._geometry(h, w)
        return (oh, ow, self.filters)

    def _fuses_relu(self):
        """True when a ReLU activation runs inside the convolution: max(z, 0) as the
        backend writes z, and its mask as the backend reads dy, instead of two more
        passes over arrays as large as y (the numbers are the same)."""
        return self.activation == "relu" and not self._general()

    def forward(self, x, training=False):
        if not self._fuses_relu():
            return super().forward(x, training)     # z, then the activation (Layer.forward)
        self._y = self._checked_forward(x, training, relu=True)
        return self._y

    def backward(self, dy):
        if not self._fuses_relu():
            return super().backward(dy)
        dy = self._check_grad(dy)
        return self._backward(dy, relu_output=self._activation_output())

    def folds_scale(self):
        """Can forward_scaled take a per-filter scale and shift after this layer (a
        BatchNormalization at inference)? Without an activation of its own, and on
        the ungrouped, undilated path."""
        return self.activation is None and not self._general()

    def forward_scaled(self, x, scale, shift, relu=False):
        """The inference output z * scale + shift (per filter, scale and shift (F,)),
        through max(., 0) when relu, as one convolution: since z = conv(x, W) + b is
        linear in W and b,

            z[..., f] * scale[f] + shift[f] = conv(x, W[..., f] * scale[f]) + (b[f] * scale[f] + shift[f])

        so a BatchNormalization (BatchNormalization.inference_scale_shift) and a
        ReLU after this layer cost no pass of their own over z (only where
        folds_scale())."""
        x = self._check_input(x)
        self._to_backend()
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        (oh, ow), pads = self._geometry(h, w)
        W2 = self.params["W"].reshape(kh * kw * c, self.filters) * scale          # column f times scale[f]
        b = self.params["b"] * scale + shift if self.use_bias else shift.astype(W2.dtype, copy=True)
        y, _ = get_ops().conv2d_forward(x, W2, b, kh, kw, *self.strides, pads, training=False, relu=relu)
        self._cache = (None, x, pads)
        self._trained = False
        self._last_output_shape = (n, oh, ow, self.filters)
        return y.reshape(n, oh, ow, self.filters)

    def _forward(self, x, training, relu=False):
        # relu: return max(z, 0) instead of z (only on the fused path, see _fuses_relu)
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        (oh, ow), pads = self._geometry(h, w)
        if self._general():
            y, saved = get_ops().grouped_conv2d_forward(x, self.params["W"], self.params.get("b"), self.strides,
                                                        self.dilation_rate, self.groups, pads)
            self._cache = (saved, x, pads)
            return y
        W2 = self.params["W"].reshape(kh * kw * c, self.filters)      # the kernel matrix
        y, saved = get_ops().conv2d_forward(x, W2, self.params.get("b"), kh, kw, *self.strides, pads,
                                            training=training, relu=relu)   # (N*OH*OW, F)
        self._cache = (saved, x, pads)
        self._trained = bool(training)      # which pass ran last, for algorithm()
        return y.reshape(n, oh, ow, self.filters)

    def _backward(self, dy, relu_output=None):
        # relu_output: y after the fused ReLU, when dy is the gradient after it
        saved, x, pads = self._cache
        kh, kw = self.kernel_size
        if self._general():
            dx, dW, db = get_ops().grouped_conv2d_backward(dy, x, saved, self.params["W"], self.strides,
                                                           self.dilation_rate, self.groups, pads,
                                                           need_dx=not self.skip_input_grad)
            self.grads["W"] = dW
            if self.use_bias:
                self.grads["b"] = db
            return dx
        W2 = self.params["W"].reshape(-1, self.filters)
        # the first layer of a model computes no dx: nobody needs it
        if relu_output is not None:
            relu_output = relu_output.reshape(-1, self.filters)
        dx, dW2, db = get_ops().conv2d_backward(dy.reshape(-1, self.filters), x, saved, W2, kh, kw,
                                                *self.strides, pads, need_dx=not self.skip_input_grad,
                                                relu_output=relu_output)
        self.grads["W"] = dW2.reshape(self.params["W"].shape)
        if self.use_bias:
            self.grads["b"] = db
        return dx

    def algorithm(self, x_shape=None, training=None):
        """The name of the convolution algorithm the active backend runs for an input
        of shape x_shape (N, H, W, C), in a training step or (training=False) an
        inference; by default the shape and the mode of the last forward pass, else
        a training step on a batch of one. "im2col-gemm" is the reference of
        conv.py's docstring; see docs/how-it-works.md for the others."""
        cache = getattr(self, "_cache", None)
        if x_shape is None:
            x_shape = cache[1].shape if cache else (1, *self.input_shape)
        if training is None:
            training = getattr(self, "_trained", True) if cache else True
        if self._general():
            return "grouped-dilated-reference"
        kh, kw = self.kernel_size
        return get_ops().conv2d_algorithm(tuple(x_shape), (kh * kw * x_shape[3], self.filters), (self.dtype,),
                                          tuple(self.strides), training=training)

    def flops_per_image(self):
        """Multiply-adds counted as 2 FLOPs, forward pass, one image."""
        oh, ow, f = self.output_shape
        kh, kw = self.kernel_size
        return 2 * oh * ow * f * kh * kw * self.input_shape[2] // self.groups

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": list(self.strides),
                "padding": padding_config(self.padding), "dilation_rate": list(self.dilation_rate),
                "groups": self.groups}


class DepthwiseConv2D(Conv2D):
    """Depthwise convolution (Keras' DepthwiseConv2D): each input channel c has its
    own depth_multiplier filters M, output channel c*M + m.

    Input (N, H, W, C) -> (N, OH, OW, C*M). Params: W (kh, kw, C, M) (Keras'
    depthwise_kernel), b (C*M,). It is Conv2D with groups = C: the kernel reshaped to
    (kh, kw, 1, C*M) is exactly the grouped kernel, so both passes are Conv2D's.
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, activation=None,
                 use_bias=True, depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 name=None, dtype=None, input_shape=None, seed=None, dilation_rate=1):
        if not isinstance(depth_multiplier, int) or isinstance(depth_multiplier, bool) or depth_multiplier < 1:
            raise ValueError(f"DepthwiseConv2D: depth_multiplier must be a positive int, got {depth_multiplier!r}")
        self.depth_multiplier = depth_multiplier
        # filters and groups are set at build time, once C is known
        super().__init__(1, kernel_size, strides, padding, activation, use_bias, depthwise_initializer,
                         bias_initializer, name=name, dtype=dtype, input_shape=input_shape, seed=seed,
                         dilation_rate=dilation_rate)
        self.depthwise_initializer = depthwise_initializer

    def _build(self, input_shape):
        h, w, c = input_shape
        self.groups = c
        self.filters = c * self.depth_multiplier
        self._check_spatial((None, h, w, c))
        kh, kw = self.kernel_size
        self._make_params((kh, kw, c, self.depth_multiplier))
        if self.use_bias:         # one bias per output channel (C*M), not per multiplier
            self.params["b"] = initializers.get(self.bias_initializer)((self.filters,), self.rng, self.dtype)

    def _general(self):
        return True

    def _grouped_kernel(self):
        kh, kw, c, m = self.params["W"].shape
        return self.params["W"].reshape(kh, kw, 1, c * m)

    def _forward(self, x, training):
        (oh, ow), pads = self._geometry(x.shape[1], x.shape[2])
        y, saved = get_ops().grouped_conv2d_forward(x, self._grouped_kernel(), self.params.get("b"), self.strides,
                                                    self.dilation_rate, self.groups, pads)
        self._cache = (saved, x, pads)
        return y

    def _backward(self, dy):
        saved, x, pads = self._cache
        dx, dW, db = get_ops().grouped_conv2d_backward(dy, x, saved, self._grouped_kernel(), self.strides,
                                                       self.dilation_rate, self.groups, pads,
                                                       need_dx=not self.skip_input_grad)
        self.grads["W"] = dW.reshape(self.params["W"].shape)
        if self.use_bias:
            self.grads["b"] = db
        return dx

    def get_config(self):
        config = super().get_config()
        for key in ("filters", "groups", "kernel_initializer"):
            config.pop(key)
        return {**config, "depth_multiplier": self.depth_multiplier,
                "depthwise_initializer": self.depthwise_initializer}
