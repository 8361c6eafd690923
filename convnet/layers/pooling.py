"""Pooling: max, average and global average, channels-last.

Max pooling keeps the largest value of each window; its backward pass routes the
whole gradient of a window to the one input that won (the first maximum when
several tie) and gives every other input zero. Average pooling spreads the gradient
of a window evenly over the real (unpadded) inputs it averaged. The window kernels
live in the backend (ops.maxpool / ops.maxpool_backward, ops.avgpool / ...).
"""

import numpy as np

from ..backend import get_ops
from .base import Layer
from .padding import padding_config, pooling_arguments, window_geometry


def tap_counts(n, k, s, d, out, before, after_declared):
    """Along one axis of size n (window k, stride s, dilation d, `out` windows, padding
    `before` and the declared `after`): per window, (real, counted) = how many taps
    fall inside the input, and inside the input or its declared padding (what
    count_include_pad divides by; not the extra end padding of ceil_mode)."""
    # tap t of window i sits at i*s - before + t*d
    pos = (np.arange(out) * s - before)[:, None] + np.arange(k)[None, :] * d
    real = ((pos >= 0) & (pos < n)).sum(axis=1)
    counted = ((pos >= -before) & (pos < n + after_declared)).sum(axis=1)
    return real, counted


class _Pooling2D(Layer):
    """Shared window logic. Input (N, H, W, C) -> output (N, OH, OW, C)."""

    input_rank = 4

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, dtype=None,
                 input_shape=None, ceil_mode=False, dilation_rate=1):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.pool_size, self.strides, self.padding, self.dilation_rate = pooling_arguments(
            pool_size, strides, padding, dilation_rate, 2, self.describe())
        # ceil_mode (ONNX, PyTorch): the output size rounds up, the last windows
        # reaching past the input (they pool only what they cover)
        self.ceil_mode = bool(ceil_mode)

    def _rank_hint(self):
        return "(N, H, W, C)"

    def _geometry(self, h, w):
        return window_geometry(h, w, self.pool_size, self.strides, self.padding, self.dilation_rate,
                               ceil_mode=self.ceil_mode)

    def _dilated(self):
        return self.dilation_rate != (1, 1)

    def _check_spatial(self, shape):
        (oh, ow), pads = self._geometry(shape[1], shape[2])
        if oh < 1 or ow < 1:
            raise ValueError(
                f"{self.describe()}: pool_size {self.pool_size} is larger than the padded input "
                f"({shape[1] + sum(pads[0])}, {shape[2] + sum(pads[1])}) (input shape {tuple(shape)})"
            )

    def _build(self, input_shape):
        self._check_spatial((None, *input_shape))

    def input_spec(self):
        return (None, None, self.input_shape[2])

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        (oh, ow), _ = self._geometry(h, w)
        return (oh, ow, c)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size),
                "strides": list(self.strides), "padding": padding_config(self.padding),
                "ceil_mode": self.ceil_mode, "dilation_rate": list(self.dilation_rate)}


class MaxPooling2D(_Pooling2D):
    """Max over (pool_size) windows; strides default to pool_size (Keras)."""

    def _forward(self, x, training):
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        _, pads = self._geometry(x.shape[1], x.shape[2])
        if self._dilated():
            y, argmax = get_ops().window_maxpool(x, self.pool_size, self.strides, self.dilation_rate, pads)
        else:
            y, argmax = get_ops().maxpool(x, ph, pw, sh, sw, pads)
        self._cache = (argmax, x.shape, pads)
        return y

    def _backward(self, dy):
        argmax, x_shape, pads = self._cache
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        if self._dilated():
            return get_ops().window_maxpool_backward(dy, argmax, x_shape, self.pool_size, self.strides,
                                                     self.dilation_rate, pads)
        return get_ops().maxpool_backward(dy, argmax, x_shape, ph, pw, sh, sw, pads)

    def flops_per_image(self):
        oh, ow, c = self.output_shape
        return oh * ow * c * self.pool_size[0] * self.pool_size[1]


class AveragePooling2D(_Pooling2D):
    """Mean over windows; with padding the mean counts only real pixels (Keras).

    count_include_pad=True (ONNX, PyTorch) divides by the window size instead,
    counting the padding's zeros, though not the extra end rows of ceil_mode.
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, dtype=None,
                 input_shape=None, ceil_mode=False, count_include_pad=False, dilation_rate=1):
        super().__init__(pool_size, strides, padding, name=name, dtype=dtype, input_shape=input_shape,
                         ceil_mode=ceil_mode, dilation_rate=dilation_rate)
        self.count_include_pad = bool(count_include_pad)

    def _rescale(self, h, w):
        """(OH, OW, 1): real pixels / counted pixels of each window, the factor that turns
        the mean over real pixels into the mean with the padding counted."""
        (oh, ow), pads = self._geometry(h, w)
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        top, left = pads[0][0], pads[1][0]
        dh, dw = self.dilation_rate
        declared = window_geometry(h, w, self.pool_size, self.strides, self.padding, self.dilation_rate)[1]
        rr, rc = tap_counts(h, ph, sh, dh, oh, top, declared[0][1])
        cr, cc = tap_counts(w, pw, sw, dw, ow, left, declared[1][1])
        factor = np.outer(rr, cr) / np.outer(rc, cc)
        return get_ops().asarray(factor[:, :, None], dtype=self.dtype)

    def _forward(self, x, training):
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        _, pads = self._geometry(x.shape[1], x.shape[2])
        if self._dilated():
            y, count = get_ops().window_avgpool(x, self.pool_size, self.strides, self.dilation_rate, pads)
        else:
            y, count = get_ops().avgpool(x, ph, pw, sh, sw, pads)
        factor = self._rescale(x.shape[1], x.shape[2]) if self.count_include_pad else None
        self._cache = (count, x.shape, pads, factor)
        return y if factor is None else y * factor

    def _backward(self, dy):
        count, x_shape, pads, factor = self._cache
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        if factor is not None:
            dy = dy * factor
        if self._dilated():
            return get_ops().window_avgpool_backward(dy, count, x_shape, self.pool_size, self.strides,
                                                     self.dilation_rate, pads)
        return get_ops().avgpool_backward(dy, count, x_shape, ph, pw, sh, sw, pads)

    def get_config(self):
        return {**super().get_config(), "count_include_pad": self.count_include_pad}

    def flops_per_image(self):
        oh, ow, c = self.output_shape
        return oh * ow * c * self.pool_size[0] * self.pool_size[1]


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with
    keepdims=True (Keras; ONNX's GlobalAveragePool keeps them).

    Backward: every pixel of channel c receives dy[n, c] / (H*W).
    """

    input_rank = 4

    def __init__(self, keepdims=False, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.keepdims = bool(keepdims)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}

    def _rank_hint(self):
        return "(N, H, W, C)"

    def input_spec(self):
        return (None, None, self.input_shape[2])

    def compute_output_shape(self, input_shape):
        return (1, 1, input_shape[2]) if self.keepdims else (input_shape[2],)

    def _forward(self, x, training):
        self._x_shape = x.shape
        return x.mean(axis=(1, 2), keepdims=self.keepdims)

    def _backward(self, dy):
        n, h, w, c = self._x_shape
        xp = get_ops().xp
        dy = dy.reshape(n, c)
        return xp.broadcast_to((dy / (h * w))[:, None, None, :], self._x_shape).copy()

    def flops_per_image(self):
        h, w, c = self.input_shape
        return h * w * c


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
