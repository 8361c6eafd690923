"""Element-wise layers from ONNX graphs: Clip, LRN, Abs and arithmetic with a constant.

    Clip(min, max):   y = min(max(x, lo), hi);  dx = dy where lo < x < hi, else 0
                      (ReLU6 is Clip(0, 6)).
    LRN(size, alpha, beta, bias), over the channel (last) axis, as AlexNet's:
        s_c = bias + alpha / size * sum_{k in win(c)} x_k^2,   y_c = x_c * s_c^-beta
        win(c) = [c - floor((size-1)/2), c + ceil((size-1)/2)] (clipped to the channels)
      Backward: y_c depends on x_c directly and on every x_k in win(c) through s_c:
        dx_k = dy_k s_k^-beta - (2 alpha beta / size) x_k * sum_{c: k in win(c)} dy_c x_c s_c^(-beta-1)
    Abs:              y = |x|;  dx = dy * sign(x) (0 at x = 0, a subgradient).
    ConstantOp(op, constant): y = x (op) c for a fixed array c that broadcasts
        against one sample (x (N, ...), c (...)): add, mul, sub (x - c), rsub (c - x),
        div (x / c), rdiv (c / x). dx = dy, dy * c, dy, -dy, dy / c, -dy * c / x^2.
        c is saved with the model (layer.state), never trained.
    LeakyReLU(negative_slope): y = x (x > 0), a x;  dx = dy (x > 0), a dy.
    ELU(alpha): y = x (x > 0), alpha (e^x - 1);  dx = dy (x > 0), dy (y + alpha).
    PReLU: LeakyReLU with a trained slope per entry alpha (broadcast over shared
        axes); dalpha = sum over the batch (and shared axes) of dy * x where x <= 0.
    LogSoftmax (last axis): y = z - logsumexp(z);  dz = dy - softmax(z) * sum(dy).
"""

import numpy as np

from .._checks import check_real
from ..backend import get_ops
from .base import Layer

__all__ = ["Clip", "LRN", "Abs", "ConstantOp", "LeakyReLU", "ELU", "PReLU", "LogSoftmax"]


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


class Abs(Layer):
    """y = |x| element-wise (ONNX's Abs); the gradient is dy * sign(x)."""

    def input_spec(self):
        return None

    def _forward(self, x, training):
        self._sign = get_ops().xp.sign(x)
        return x * self._sign

    def _backward(self, dy):
        return dy * self._sign


CONSTANT_OPS = ("add", "mul", "sub", "rsub", "div", "rdiv")


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
        if self.op == "rdiv":
            self._x = x
            return c / x
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
        elif self.op == "rdiv":
            g = -dy * c / (self._x * self._x)      # d(c/x)/dx = -c / x^2
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


class LeakyReLU(Layer):
    """Keras' LeakyReLU: y = x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope=0.3, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.negative_slope = check_real(negative_slope, "negative_slope", self.describe())

    def input_spec(self):
        return None

    def _forward(self, x, training):
        self._positive = x > 0
        return get_ops().xp.where(self._positive, x, x * x.dtype.type(self.negative_slope))

    def _backward(self, dy):
        return get_ops().xp.where(self._positive, dy, dy * dy.dtype.type(self.negative_slope))

    def get_config(self):
        return {**super().get_config(), "negative_slope": self.negative_slope}


class ELU(Layer):
    """Keras' ELU layer: y = x for x > 0, alpha * (e^x - 1) otherwise."""

    def __init__(self, alpha=1.0, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.alpha = check_real(alpha, "alpha", self.describe())

    def input_spec(self):
        return None

    def _forward(self, x, training):
        xp = get_ops().xp
        a = x.dtype.type(self.alpha)
        self._out = xp.where(x > 0, x, a * xp.expm1(xp.minimum(x, 0)))
        return self._out

    def _backward(self, dy):
        y = self._out
        return get_ops().xp.where(y > 0, dy, dy * (y + dy.dtype.type(self.alpha)))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """Keras' PReLU: a LeakyReLU whose slope alpha is a parameter of the sample's
    shape, shared (size 1) along `shared_axes` (1-based, batch excluded)."""

    def __init__(self, alpha_initializer="zeros", shared_axes=None, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        from .. import initializers
        initializers.get(alpha_initializer, self.describe())
        self.alpha_initializer = alpha_initializer
        self.shared_axes = None if shared_axes is None else [int(a) for a in (
            shared_axes if isinstance(shared_axes, (list, tuple)) else [shared_axes])]

    def _build(self, input_shape):
        from .. import initializers
        shape = [1 if self.shared_axes and i + 1 in self.shared_axes else d for i, d in enumerate(input_shape)]
        self.params["alpha"] = initializers.get(self.alpha_initializer)(tuple(shape), self.rng, self.dtype)

    def _forward(self, x, training):
        self._x = x
        return get_ops().xp.where(x > 0, x, x * self.params["alpha"])

    def _backward(self, dy):
        xp = get_ops().xp
        x = self._x
        neg = x <= 0
        g = xp.where(neg, dy * x, 0)
        axes = (0,) + tuple(i + 1 for i, d in enumerate(self.params["alpha"].shape) if d == 1 and x.shape[i + 1] != 1)
        self.grads["alpha"] = g.sum(axis=axes, keepdims=True)[0]
        return xp.where(neg, dy * self.params["alpha"], dy)

    def get_config(self):
        return {**super().get_config(), "alpha_initializer": self.alpha_initializer,
                "shared_axes": self.shared_axes}


class LogSoftmax(Layer):
    """log softmax over the last axis (the backend's stable log_softmax)."""

    def input_spec(self):
        return None

    def _forward(self, x, training):
        self._logp = get_ops().log_softmax(x)
        return self._logp

    def _backward(self, dy):
        xp = get_ops().xp
        return dy - xp.exp(self._logp) * dy.sum(axis=-1, keepdims=True)
