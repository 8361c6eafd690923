"""Input: where a functional model starts.

    x = cn.Input(shape=(28, 28, 1))      # a SymbolicTensor of shape (None, 28, 28, 1)

`Input` makes an InputLayer and returns its output tensor. The InputLayer passes
arrays through unchanged (cast to its dtype) and checks their shape, so a model
fed the wrong images says which input expected what.
"""

from ..config import resolve_dtype
from .base import Layer, shape_str, unique_name
from .symbolic import Node, SymbolicTensor

__all__ = ["Input", "InputLayer"]


def _check_shape(shape, owner):
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise ValueError(f"{owner}: shape must be a non-empty tuple of positive ints (no batch axis), "
                         f"got {shape!r}")
    for d in shape:
        if d is None:
            raise ValueError(f"{owner}: shape {shape_str(shape)} has a free (None) size; convnet "
                             "builds every layer for one image size: give every size")
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"{owner}: shape must hold positive ints, got {shape!r}")
    return tuple(int(d) for d in shape)


class InputLayer(Layer):
    """The first node of a graph: y = x, for inputs of shape (N, *shape)."""

    def __init__(self, shape, dtype=None, name=None):
        super().__init__(name=name if name is not None else unique_name("input_layer"), dtype=dtype)
        shape = _check_shape(shape, self.describe())
        self.build(shape)
        node = Node(self, [])
        node.outputs = [SymbolicTensor(shape, self.dtype.name, node, name=self.name)]
        self.inbound_nodes.append(node)

    def _forward(self, x, training):
        return x

    def _backward(self, dy):
        return dy

    def flops_per_image(self):
        return 0

    def get_config(self):
        return {**super().get_config(), "shape": list(self.input_shape)}


def Input(shape=None, dtype=None, name=None, batch_size=None, batch_shape=None):
    """A symbolic input tensor, as keras.Input: shape without the batch axis.

    batch_shape=(None, H, W, C) is accepted in place of shape; a fixed batch size
    is not part of a convnet model (any batch size runs), so batch_size is ignored.
    """
    if batch_shape is not None:
        if shape is not None:
            raise ValueError("Input: give shape or batch_shape, not both")
        shape = tuple(batch_shape)[1:]
    if shape is None:
        raise ValueError("Input: shape is required, e.g. cn.Input(shape=(28, 28, 1))")
    resolve_dtype(dtype)   # fails early with a clear message on a bad dtype
    return InputLayer(shape, dtype=dtype, name=name).output
