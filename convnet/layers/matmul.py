"""Matrix products with numpy's (and ONNX's) matmul rules, sample by sample.

    MatMul()([a, b]):           y[n] = a[n] @ b[n]     two tensors of the graph
    MatMulWeight(shape)(x):     y[n] = x[n] @ W        W a trained weight (side="right")
    MatMulWeight(shape, side="left")(x):  y[n] = W @ x[n]

The rule, on the shapes of one sample (the batch axis is never multiplied):
- the last two axes are matrices, (M, K) @ (K, P) -> (M, P); every axis before
  them is a stack of matrices, and the two stacks broadcast (numpy's rule: sizes
  equal or 1, the shorter stack gets leading axes of size 1);
- a 1-D a (K,) is the row (1, K), a 1-D b (K,) the column (K, 1), and that added
  axis is dropped from the result: (K,) @ (K,) is a scalar, (K,) @ (S, K, P) is (S, P).

Backward. With A, B the operands as stacks of matrices and dY the gradient of
Y = A @ B (the dropped axes put back),
    dA = dY @ B^T,   dB = A^T @ dY            (^T swaps the last two axes)
computed at the broadcast size: an operand that was broadcast along an axis (size
1 there) reached every entry of the result along it, so its gradient is the sum of
those entries. The weight W of MatMulWeight is shared by every sample: its
gradient is summed over the batch too.
"""

import numpy as np

from .. import initializers
from .._checks import check_shape
from ..backend import get_ops
from .base import Layer, shape_str
from .merge import Merge

__all__ = ["MatMul", "MatMulWeight", "matmul_shapes"]


def matmul_shapes(a_shape, b_shape):
    """numpy's matmul rule on per-sample shapes (no batch axis).

    -> (a_stack, b_stack, y_stack, y_shape): the operands as stacks of matrices of one
    rank (1-D ones made a row / a column, the shorter stack given leading 1s), the
    result at that rank, and the result's shape with the added axes dropped again.
    ValueError (a bare message: the caller names itself) when the shapes do not fit.
    """
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    if not a_shape or not b_shape:
        raise ValueError(f"matmul of {a_shape} and {b_shape}: an operand is a scalar (use a multiplication)")
    a = (1, *a_shape) if len(a_shape) == 1 else a_shape          # a row (1, K)
    b = (*b_shape, 1) if len(b_shape) == 1 else b_shape          # a column (K, 1)
    if a[-1] != b[-2]:
        raise ValueError(f"matmul of {a_shape} and {b_shape}: the inner sizes {a[-1]} and {b[-2]} differ")
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + a
    b = (1,) * (rank - len(b)) + b
    try:
        stack = np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        raise ValueError(f"matmul of {a_shape} and {b_shape}: the stacks {a[:-2]} and {b[:-2]} do not "
                         "broadcast") from None
    y = (*stack, a[-2], b[-1])
    keep = [True] * rank
    if len(a_shape) == 1:
        keep[-2] = False
    if len(b_shape) == 1:
        keep[-1] = False
    return a, b, y, tuple(d for d, k in zip(y, keep) if k)


def _sum_to(g, shape):
    """g summed over the axes where `shape` (same rank) has size 1 and g does not:
    the gradient of an operand that was broadcast along them."""
    axes = tuple(i for i, (s, d) in enumerate(zip(shape, g.shape)) if s == 1 and d != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _product(a, b, a_stack, b_stack, y_stack):
    """a (Na, ...) @ b (Nb, ...) sample by sample, Na, Nb the batch or 1 (a weight):
    (A, B, Y) with A = a as (Na, *a_stack), B likewise, Y = A @ B (N, *y_stack)."""
    A = a.reshape(a.shape[0], *a_stack)
    B = b.reshape(b.shape[0], *b_stack)
    return A, B, get_ops().matmul(A, B)


def _product_backward(dy, A, B, y_stack):
    """(dA, dB) of Y = A @ B, each summed back to its operand's (broadcast) shape."""
    xp = get_ops().xp
    dY = dy.reshape(dy.shape[0], *y_stack)
    dA = get_ops().matmul(dY, xp.swapaxes(B, -1, -2))
    dB = get_ops().matmul(xp.swapaxes(A, -1, -2), dY)
    return _sum_to(dA, A.shape), _sum_to(dB, B.shape)


class MatMul(Merge):
    """y = a @ b for two tensors of the graph, per sample, with numpy's rules
    (ONNX's MatMul of two computed tensors). Input shapes (N, *sa), (N, *sb)."""

    num_inputs = 2

    def _check_compatible(self, shapes):
        try:
            matmul_shapes(*shapes)
        except ValueError as exc:
            raise ValueError(f"{self.describe()}: {exc} (inputs {', '.join(shape_str((None, *s)) for s in shapes)})"
                             ) from None

    def compute_output_shape(self, input_shape):
        return matmul_shapes(*input_shape)[3]

    def flops_per_image(self):
        a, b, y, _ = matmul_shapes(*self.input_shape)
        return 2 * int(np.prod(y)) * a[-1]

    def _forward(self, xs, training):
        a, b = xs
        a_stack, b_stack, y_stack, y_shape = matmul_shapes(a.shape[1:], b.shape[1:])
        self._A, self._B, Y = _product(a, b, a_stack, b_stack, y_stack)
        self._shapes = (a.shape, b.shape, y_stack)
        return Y.reshape(Y.shape[0], *y_shape)

    def _backward(self, dy):
        a_shape, b_shape, y_stack = self._shapes
        dA, dB = _product_backward(dy, self._A, self._B, y_stack)
        return [dA.reshape(a_shape), dB.reshape(b_shape)]


class MatMulWeight(Layer):
    """y = x @ W (side="right") or W @ x (side="left") per sample, numpy's rules,
    W a trained weight of shape `weight_shape` shared by every sample (ONNX's
    MatMul with a constant operand of any rank; a 2-D one on (N, K) is a Dense)."""

    def __init__(self, weight_shape, side="right", kernel_initializer="glorot_uniform", name=None, dtype=None,
                 input_shape=None, seed=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape, seed=seed)
        owner = self.describe()
        self.weight_shape = check_shape(weight_shape, "weight_shape", owner)
        if side not in ("right", "left"):
            raise ValueError(f"{owner}: side must be 'right' (x @ W) or 'left' (W @ x), got {side!r}")
        self.side = side
        initializers.get(kernel_initializer, owner)
        self.kernel_initializer = kernel_initializer

    def input_spec(self):
        return self.input_shape

    def _operand_shapes(self, input_shape):
        """(a, b) per-sample shapes in product order."""
        if self.side == "right":
            return tuple(input_shape), self.weight_shape
        return self.weight_shape, tuple(input_shape)

    def _shapes(self, input_shape):
        try:
            return matmul_shapes(*self._operand_shapes(input_shape))
        except ValueError as exc:
            raise ValueError(f"{self.describe()}: {exc}") from None

    def _build(self, input_shape):
        self._shapes(input_shape)
        self.params["W"] = initializers.get(self.kernel_initializer)(self.weight_shape, self.rng, self.dtype)

    def compute_output_shape(self, input_shape):
        return self._shapes(input_shape)[3]

    def flops_per_image(self):
        a, b, y, _ = self._shapes(self.input_shape)
        return 2 * int(np.prod(y)) * a[-1]

    def _forward(self, x, training):
        a_stack, b_stack, y_stack, y_shape = self._shapes(x.shape[1:])
        W = self.params["W"][None]               # one weight for the whole batch: (1, *weight_shape)
        a, b = (x, W) if self.side == "right" else (W, x)
        self._A, self._B, Y = _product(a, b, a_stack, b_stack, y_stack)
        self._x_shape, self._y_stack = x.shape, y_stack
        return Y.reshape(Y.shape[0], *y_shape)

    def _backward(self, dy):
        dA, dB = _product_backward(dy, self._A, self._B, self._y_stack)
        dx, dW = (dA, dB) if self.side == "right" else (dB, dA)
        self.grads["W"] = dW.reshape(self.weight_shape)      # summed over the batch by _sum_to
        return dx.reshape(self._x_shape)

    def get_config(self):
        return {**super().get_config(), "weight_shape": list(self.weight_shape), "side": self.side,
                "kernel_initializer": self.kernel_initializer}
