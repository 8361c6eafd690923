"""ZeroPadding2D and UpSampling2D: change the spatial size, move no information.

    ZeroPadding2D(((t, b), (l, r))):  (N, H, W, C) -> (N, t+H+b, l+W+r, C)
        forward writes x into a zero frame; backward cuts the frame off dy.
    UpSampling2D((sh, sw)):           (N, H, W, C) -> (N, sh*H, sw*W, C)
        forward repeats each pixel into an sh x sw block ("nearest"); each copy
        of a pixel reaches the loss, so backward sums dy over every block.
"""

from ..backend import get_ops
from .base import Layer

__all__ = ["ZeroPadding2D", "UpSampling2D"]


def _nonneg_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _padding_pairs(padding, owner):
    """Keras' forms: p, (ph, pw) or ((top, bottom), (left, right))."""
    if _nonneg_int(padding):
        return ((padding, padding), (padding, padding))
    if isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(_nonneg_int(p) for p in padding):
            return ((padding[0], padding[0]), (padding[1], padding[1]))
        if all(isinstance(p, (tuple, list)) and len(p) == 2 and all(_nonneg_int(q) for q in p)
               for p in padding):
            return (tuple(padding[0]), tuple(padding[1]))
    raise ValueError(f"{owner}: padding must be a non-negative int, a pair (ph, pw) or "
                     f"((top, bottom), (left, right)), got {padding!r}")


class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each image."""

    input_rank = 4

    def __init__(self, padding=(1, 1), name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.padding = _padding_pairs(padding, self.describe())

    def _rank_hint(self):
        return "(N, H, W, C)"

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        (t, b), (left, r) = self.padding
        return (h + t + b, w + left + r, c)

    def _forward(self, x, training):
        (t, b), (left, r) = self.padding
        n, h, w, c = x.shape
        y = get_ops().xp.zeros((n, h + t + b, w + left + r, c), dtype=x.dtype)
        y[:, t:t + h, left:left + w, :] = x
        return y

    def _backward(self, dy):
        (t, b), (left, r) = self.padding
        h, w, _ = self.input_shape
        return dy[:, t:t + h, left:left + w, :]

    def flops_per_image(self):
        return 0

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}


class UpSampling2D(Layer):
    """Repeats each pixel size[0] times down and size[1] times across ("nearest")."""

    input_rank = 4

    def __init__(self, size=(2, 2), interpolation="nearest", name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        if _nonneg_int(size):
            size = (size, size)
        if not (isinstance(size, (tuple, list)) and len(size) == 2
                and all(_nonneg_int(s) and s >= 1 for s in size)):
            raise ValueError(f"{self.describe()}: size must be a positive int or a pair of them, got {size!r}")
        if interpolation != "nearest":
            raise ValueError(f"{self.describe()}: interpolation {interpolation!r} is not supported; "
                             "convnet has 'nearest'")
        self.size = tuple(size)
        self.interpolation = interpolation

    def _rank_hint(self):
        return "(N, H, W, C)"

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        return (h * self.size[0], w * self.size[1], c)

    def _forward(self, x, training):
        xp = get_ops().xp
        return xp.repeat(xp.repeat(x, self.size[0], axis=1), self.size[1], axis=2)

    def _backward(self, dy):
        n, oh, ow, c = dy.shape
        sh, sw = self.size
        # dy[:, i*sh + a, j*sw + b] all came from x[:, i, j]: sum over a and b
        return dy.reshape(n, oh // sh, sh, ow // sw, sw, c).sum(axis=(2, 4))

    def flops_per_image(self):
        return 0

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "interpolation": self.interpolation}
