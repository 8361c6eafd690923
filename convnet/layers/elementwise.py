"""Element-wise layers from ONNX graphs: Clip, LRN and arithmetic with a constant.

    Clip(min, max):   y = min(max(x, lo), hi);  dx = dy where lo < x < hi, else 0
                      (ReLU6 is Clip(0, 6)).
    LRN(size, alpha, beta, bias), over the channel (last) axis, as AlexNet's:
        s_c = bias + alpha / size * sum_{k in win(c)} x_k^2,   y_c = x_c * s_c^-beta
        win(c) = [c - floor((size-1)/2), c + ceil((size-1)/2)] (clipped to the channels)
      Backward: y_c depends on x_c directly and on every x_k in win(c) through s_c:
        dx_k = dy_k s_k^-beta - (2 alpha beta / size) x_k * sum_{c: k in win(c)} dy_c x_c s_c^(-beta-1)
    ConstantOp(op, constant): y = x (op) c for a fixed array c that broadcasts
        against one sample (x (N, ...), c (...)): add, mul, sub (x - c), rsub (c - x),
        div (x / c). dx = dy, dy * c, dy, -dy, dy / c. c is saved with the model
        (layer.state), never trained.
"""

import numpy as np

from .._checks import check_real
from ..backend import get_ops
from .base import Layer

__all__ = ["Clip", "LRN", "ConstantOp"]


class Clip(Layer):
    """y = clip(x, min_value, max_value); None leaves that side open."""

    def __init__(self, min_value=None, max_value=None, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.min_value = None if min_value is None else float(min_value)
        self.max_value = None if max_value is None else float(max_value)

    def input_spec(self):
        return None

    def _forward(self, x, training):
        xp = get_ops().xp
        lo = -np.inf if self.min_value is None else self.min_value
        hi = np.inf if self.max_value is None else self.max_value
        self._inside = (x > lo) & (x < hi)
        # min(max(x, lo), hi): when lo > hi every entry becomes hi (ONNX's rule)
        return xp.minimum(xp.maximum(x, x.dtype.type(lo)), x.dtype.type(hi))

    def _backward(self, dy):
        return dy * self._inside

    def get_config(self):
        return {**super().get_config(), "min_value": self.min_value, "max_value": self.max_value}


def _window_sum(a, before, after):
    """out[..., c] = sum of a[..., k] for k in [c - before, c + after] (clipped), last axis."""
    xp = get_ops().xp
    c = a.shape[-1]
    csum = xp.concatenate([xp.zeros((*a.shape[:-1], 1), dtype=a.dtype), xp.cumsum(a, axis=-1)], axis=-1)
    hi = np.minimum(np.arange(c) + after + 1, c)
    lo = np.maximum(np.arange(c) - before, 0)
    ops = get_ops()
    return xp.take(csum, ops.asarray(hi), axis=-1) - xp.take(csum, ops.asarray(lo), axis=-1)


class LRN(Layer):
    """Local response normalization across channels (ONNX LRN / AlexNet)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, bias=1.0, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        owner = self.describe()
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{owner}: size must be a positive int, got {size!r}")
        self.size = size
        self.alpha = check_real(alpha, "alpha", owner)
        self.beta = check_real(beta, "beta", owner)
        self.bias = check_real(bias, "bias", owner)

    def input_spec(self):
        return None

    def _halves(self):
        return (self.size - 1) // 2, self.size // 2     # floor and ceil of (size-1)/2

    def _forward(self, x, training):
        before, after = self._halves()
        t = x.dtype.type
        s = t(self.bias) + t(self.alpha / self.size) * _window_sum(x * x, before, after)
        y = x * s ** t(-self.beta)
        self._cache = (x, s)
        return y

    def _backward(self, dy):
        x, s = self._cache
        before, after = self._halves()
        t = x.dtype.type
        inner = dy * x * s ** t(-self.beta - 1)
        # sum over the c whose window holds k: c in [k - after, k + before]
        back = _window_sum(inner, after, before)
        return dy * s ** t(-self.beta) - t(2 * self.alpha * self.beta / self.size) * x * back

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta,
                "bias": self.bias}


CONSTANT_OPS = ("add", "mul", "sub", "rsub", "div")


class ConstantOp(Layer):
    """y = x (op) constant, the constant broadcasting against one sample."""

    def __init__(self, op, constant, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        if op not in CONSTANT_OPS:
            raise ValueError(f"{self.describe()}: op must be one of {CONSTANT_OPS}, got {op!r}")
        self.op = op
        self._constant = np.asarray(constant, dtype=np.float64)

    def input_spec(self):
        return None

    def _build(self, input_shape):
        if self._constant.ndim > len(input_shape):
            raise ValueError(f"{self.describe()}: constant of shape {self._constant.shape} has more axes than "
                             f"one sample of shape {tuple(input_shape)}")
        try:
            np.broadcast_shapes(tuple(input_shape), self._constant.shape)
        except ValueError as exc:
            raise ValueError(f"{self.describe()}: constant of shape {self._constant.shape} does not broadcast "
                             f"against inputs of shape {tuple(input_shape)}") from exc
        self.state["constant"] = self._constant

    def compute_output_shape(self, input_shape):
        return tuple(np.broadcast_shapes(tuple(input_shape), self._constant.shape))

    def _forward(self, x, training):
        c = self.state["constant"]
        if self.op == "add":
            return x + c
        if self.op == "mul":
            return x * c
        if self.op == "sub":
            return x - c
        if self.op == "rsub":
            return c - x
        return x / c

    def _backward(self, dy):
        c = self.state["constant"]
        xp = get_ops().xp
        if self.op == "mul":
            g = dy * c
        elif self.op == "div":
            g = dy / c
        elif self.op == "rsub":
            g = -dy
        else:
            g = dy
        # where the constant broadcast x to a larger size (an axis of size 1), every
        # copy of x reached the loss: sum dy back over that axis
        x_shape = (g.shape[0], *self.input_shape)
        axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, x_shape)) if b == 1 and a != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
        return xp.ascontiguousarray(g)

    def get_config(self):
        return {**super().get_config(), "op": self.op, "constant": self._constant.tolist()}
