"""Pooling: max, average and global average, channels-last.

Max pooling keeps the largest value of each window; its backward pass routes the
whole gradient of a window to the one input that won (the first maximum when
several tie) and gives every other input zero. Average pooling spreads the gradient
of a window evenly over the real (unpadded) inputs it averaged. The window kernels
live in the backend (ops.maxpool / ops.maxpool_backward, ops.avgpool / ...).
"""

from ..backend import get_ops
from .base import Layer
from .padding import normalize_padding, normalize_pair, window_geometry


class _Pooling2D(Layer):
    """Shared window logic. Input (N, H, W, C) -> output (N, OH, OW, C)."""

    input_rank = 4

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, dtype=None,
                 input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        owner = self.describe()
        self.pool_size = normalize_pair(pool_size, "pool_size", owner)
        self.strides = self.pool_size if strides is None else normalize_pair(strides, "strides", owner)
        self.padding = normalize_padding(padding, owner)
        if isinstance(self.padding, int) and self.padding >= min(self.pool_size):
            # a window lying wholly in the padding would have nothing to pool
            raise ValueError(f"{owner}: int padding must be smaller than pool_size "
                             f"{self.pool_size}, got {self.padding}")

    def _rank_hint(self):
        return "(N, H, W, C)"

    def _geometry(self, h, w):
        return window_geometry(h, w, self.pool_size, self.strides, self.padding)

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
                "strides": list(self.strides), "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Max over (pool_size) windows; strides default to pool_size (Keras)."""

    def _forward(self, x, training):
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        _, pads = self._geometry(x.shape[1], x.shape[2])
        y, argmax = get_ops().maxpool(x, ph, pw, sh, sw, pads)
        self._cache = (argmax, x.shape, pads)
        return y

    def _backward(self, dy):
        argmax, x_shape, pads = self._cache
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return get_ops().maxpool_backward(dy, argmax, x_shape, ph, pw, sh, sw, pads)

    def flops_per_image(self):
        oh, ow, c = self.output_shape
        return oh * ow * c * self.pool_size[0] * self.pool_size[1]


class AveragePooling2D(_Pooling2D):
    """Mean over windows; with padding the mean counts only real pixels (Keras)."""

    def _forward(self, x, training):
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        _, pads = self._geometry(x.shape[1], x.shape[2])
        y, count = get_ops().avgpool(x, ph, pw, sh, sw, pads)
        self._cache = (count, x.shape, pads)
        return y

    def _backward(self, dy):
        count, x_shape, pads = self._cache
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return get_ops().avgpool_backward(dy, count, x_shape, ph, pw, sh, sw, pads)

    def flops_per_image(self):
        oh, ow, c = self.output_shape
        return oh * ow * c * self.pool_size[0] * self.pool_size[1]


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: (N, H, W, C) -> (N, C).

    Backward: every pixel of channel c receives dy[n, c] / (H*W).
    """

    input_rank = 4

    def _rank_hint(self):
        return "(N, H, W, C)"

    def input_spec(self):
        return (None, None, self.input_shape[2])

    def compute_output_shape(self, input_shape):
        return (input_shape[2],)

    def _forward(self, x, training):
        self._x_shape = x.shape
        return x.mean(axis=(1, 2))

    def _backward(self, dy):
        n, h, w, c = self._x_shape
        xp = get_ops().xp
        return xp.broadcast_to((dy / (h * w))[:, None, None, :], self._x_shape).copy()

    def flops_per_image(self):
        h, w, c = self.input_shape
        return h * w * c


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
