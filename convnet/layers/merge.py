"""Merge layers: join the branches of a graph into one tensor.

Each takes a list of arrays of one shape (Concatenate: equal except on `axis`) and
returns one array; backward takes dy and returns one gradient per input:

    Add:         y = x1 + x2 + ...       dx_i = dy
    Subtract:    y = x1 - x2             dx_1 = dy,  dx_2 = -dy
    Multiply:    y = x1 * x2 * ...       dx_i = dy * (product of the other inputs)
    Divide:      y = x1 / x2             dx_1 = dy / x2,  dx_2 = -dy * x1 / x2^2 = -dy * y / x2
    Average:     y = (x1 + ... + xn)/n   dx_i = dy / n
    Concatenate: y = [x1 | x2 | ...]     dx_i = the slice of dy that came from x_i

A residual block is `Add()([x, f(x)])`: x reaches the sum along two paths, and
its gradient is the sum of both (convnet/graph.py adds them).
"""

import numpy as np

from ..backend import get_ops
from ..config import resolve_dtype
from .base import Layer, shape_str

__all__ = ["Add", "Subtract", "Multiply", "Divide", "Average", "Concatenate"]


class Merge(Layer):
    """Base of the merge layers: a list of n >= 2 inputs, one output.

    input_shape is a list of shapes (no batch axis); forward takes a list of
    arrays (N, ...) and backward returns a list of gradients, one per input.
    """

    #: exactly this many inputs (None: two or more)
    num_inputs = None

    def build(self, input_shape, rng=None):
        shapes = self._check_shapes(input_shape)
        self.dtype = resolve_dtype(self._dtype_arg)
        if rng is not None:
            self.rng = rng
        elif self.rng is None:
            self.rng = np.random.default_rng(self.seed)
        self.input_shape = shapes
        self.output_shape = tuple(self.compute_output_shape(shapes))
        self.built = True
        return self

    def _check_shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape \
                or not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise ValueError(f"{self.describe()}: expects a list of input shapes, got {input_shape!r}")
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        if self.num_inputs is not None and len(shapes) != self.num_inputs:
            raise ValueError(f"{self.describe()}: expects exactly {self.num_inputs} inputs, got {len(shapes)}")
        if len(shapes) < 2:
            raise ValueError(f"{self.describe()}: expects a list of at least 2 inputs, got {len(shapes)}")
        self._check_compatible(shapes)
        return shapes

    def _check_compatible(self, shapes):
        if any(s != shapes[0] for s in shapes):
            raise ValueError(f"{self.describe()}: inputs must all have the same shape, got "
                             f"{', '.join(shape_str((None, *s)) for s in shapes)}")

    def _symbolic_input_shapes(self, tensors):
        return [tuple(t.shape[1:]) for t in tensors]

    def check_input_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        if shapes != list(self.input_shape):
            raise ValueError(f"{self.describe()}: built for inputs "
                             f"{', '.join(shape_str((None, *s)) for s in self.input_shape)}, got "
                             f"{', '.join(shape_str((None, *s)) for s in shapes)}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def flops_per_image(self):
        return (len(self.input_shape) - 1) * _size(self.output_shape)   # one op per element and join

    # ---------------------------------------------------------------- passes
    def forward(self, xs, training=False):
        """xs: a list of arrays (N, ...) -> y (N, ...)."""
        if not isinstance(xs, (list, tuple)):
            raise TypeError(f"{self.describe()}: expects a list of arrays, got {type(xs).__name__}")
        ops = get_ops()
        xs = [ops.asarray(x, dtype=self.dtype) if self.dtype is not None else ops.asarray(x) for x in xs]
        shapes = [tuple(x.shape[1:]) for x in xs]
        if not self.built:
            self.build(shapes)
        else:
            self.check_input_shape(shapes)
        if len({x.shape[0] for x in xs}) != 1:
            raise ValueError(f"{self.describe()}: inputs have different batch sizes "
                             f"{[int(x.shape[0]) for x in xs]}")
        y = self._forward(xs, training)
        self._last_output_shape = tuple(y.shape)
        return y

    def forward_logits(self, xs, training=False):
        return self.forward(xs, training)

    def backward(self, dy):
        """dy (N, ...) -> [dx_1, ..., dx_n]."""
        return self._backward(self._check_grad(dy))

    def backward_logits(self, dy):
        return self.backward(dy)


def _size(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _sum(xs):
    """x1 + x2 + ... as a new array (the inputs are left as they are)."""
    ops = get_ops()
    y = ops.add(xs[0], xs[1])
    for x in xs[2:]:
        y = ops.add(y, x)
    return y


class Add(Merge):
    """y = x1 + x2 + ... ; each input's gradient is dy itself."""

    def _forward(self, xs, training):
        self._n = len(xs)
        return _sum(xs)

    def _backward(self, dy):
        # the same array for every input: backward passes never write into dy
        return [dy] * self._n


class Subtract(Merge):
    """y = x1 - x2 (exactly two inputs)."""

    num_inputs = 2

    def _forward(self, xs, training):
        return xs[0] - xs[1]

    def _backward(self, dy):
        return [dy, -dy]


class Multiply(Merge):
    """y = x1 * x2 * ... (element-wise); dx_i = dy * product of the others."""

    def _forward(self, xs, training):
        self._xs = xs
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y = y * x
        return y

    def _backward(self, dy):
        grads = []
        for i in range(len(self._xs)):
            g = dy
            for j, x in enumerate(self._xs):
                if j != i:
                    g = g * x
            grads.append(g)
        return grads


class Divide(Merge):
    """y = x1 / x2 (exactly two inputs, element-wise; ONNX's Div of two tensors)."""

    num_inputs = 2

    def _forward(self, xs, training):
        self._x2 = xs[1]
        self._quotient = xs[0] / xs[1]
        return self._quotient

    def _backward(self, dy):
        # y = x1 * (1 / x2): d/dx1 = 1 / x2, d/dx2 = -x1 / x2^2 = -y / x2
        share = dy / self._x2
        return [share, -share * self._quotient]


class Average(Merge):
    """y = (x1 + ... + xn) / n; dx_i = dy / n."""

    def _forward(self, xs, training):
        self._n = len(xs)
        y = _sum(xs)
        y *= self.dtype.type(1.0 / self._n)
        return y

    def _backward(self, dy):
        g = dy * self.dtype.type(1.0 / self._n)
        return [g] * self._n


class Concatenate(Merge):
    """Join along `axis` (default -1, the channels); the other sizes must agree.
    Backward cuts dy back into the pieces the inputs contributed."""

    def __init__(self, axis=-1, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"{self.describe()}: axis must be a non-zero int (axis 0 is the batch), "
                             f"got {axis!r}")
        self.axis = axis

    def _axis(self, rank):
        """The axis as an index into a batch-less shape of length `rank`."""
        axis = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= axis < rank:
            raise ValueError(f"{self.describe()}: axis {self.axis} is out of range for inputs of rank "
                             f"{rank + 1} (batch included)")
        return axis

    def _check_compatible(self, shapes):
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise ValueError(f"{self.describe()}: inputs must have the same rank, got "
                             f"{', '.join(shape_str((None, *s)) for s in shapes)}")
        axis = self._axis(len(shapes[0]))
        rest = {s[:axis] + s[axis + 1:] for s in shapes}
        if len(rest) != 1:
            raise ValueError(f"{self.describe()}: inputs must agree on every axis but {self.axis}, got "
                             f"{', '.join(shape_str((None, *s)) for s in shapes)}")

    def compute_output_shape(self, input_shape):
        axis = self._axis(len(input_shape[0]))
        out = list(input_shape[0])
        out[axis] = sum(s[axis] for s in input_shape)
        return tuple(out)

    def flops_per_image(self):
        return 0

    def _forward(self, xs, training):
        axis = self._axis(xs[0].ndim - 1) + 1
        self._sizes = [int(x.shape[axis]) for x in xs]
        return get_ops().xp.concatenate(xs, axis=axis)

    def _backward(self, dy):
        axis = self._axis(dy.ndim - 1) + 1
        grads, start = [], 0
        for size in self._sizes:
            index = [slice(None)] * dy.ndim
            index[axis] = slice(start, start + size)
            grads.append(dy[tuple(index)])
            start += size
        return grads

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
