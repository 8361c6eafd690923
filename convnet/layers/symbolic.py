"""Symbolic tensors and nodes: how a functional model records its graph.

Calling a layer on a *symbolic* tensor computes nothing. It records a Node (this
layer, applied to these input tensors) and returns new symbolic tensors that
stand for the layer's outputs:

    x = cn.Input(shape=(28, 28, 1))     # SymbolicTensor, shape (None, 28, 28, 1)
    h = L.Conv2D(16, 3)(x)              # Node(conv2d, inputs=[x]) -> h
    y = L.Add()([h, h2])                # Node(add, inputs=[h, h2]) -> y

Every tensor remembers the node that made it, and every node its input tensors,
so walking back from the outputs finds the whole graph (convnet/graph.py).
"""

__all__ = ["SymbolicTensor", "Node", "is_symbolic"]


class SymbolicTensor:
    """A placeholder for a batch of arrays of shape (None, *shape) in a graph.

    `shape` includes the batch axis as None, as in Keras. `node` is the Node
    that produces this tensor (an InputLayer's node for a model input).
    """

    def __init__(self, shape, dtype, node, name):
        self.shape = (None, *(int(d) for d in shape))
        self.dtype = dtype
        self.node = node
        self.name = name

    @property
    def layer(self):
        """The layer that produced this tensor."""
        return self.node.layer

    def __repr__(self):
        return f"<SymbolicTensor name={self.name!r} shape={self.shape} dtype={self.dtype}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic: it has no values until a Model runs it; build "
                        "cn.Model(inputs=..., outputs=...) and call it on arrays")


class Node:
    """One call of `layer` on `inputs` (SymbolicTensors), giving `outputs`.

    A layer called twice has two nodes; they share the layer's weights.
    """

    def __init__(self, layer, inputs):
        self.layer = layer
        self.inputs = list(inputs)
        self.outputs = []
        # position of this node among the layer's calls: the `[i]` of Keras'
        # "Connected to" column, conv2d[1][0] = the conv2d's second call, output 0
        self.call_index = len(layer.inbound_nodes)

    def __repr__(self):
        return f"<Node {self.layer.name}[{self.call_index}] inputs={[t.name for t in self.inputs]}>"


def is_symbolic(value):
    """True for a SymbolicTensor or a non-empty list/tuple of only SymbolicTensors;
    TypeError for a list that mixes symbolic tensors and arrays."""
    if isinstance(value, SymbolicTensor):
        return True
    if isinstance(value, (list, tuple)) and value:
        flags = [isinstance(v, SymbolicTensor) for v in value]
        if all(flags):
            return True
        if any(flags):
            kinds = ", ".join("SymbolicTensor" if f else type(v).__name__ for f, v in zip(flags, value))
            raise TypeError(f"a layer was called on a list mixing symbolic tensors and values "
                            f"({kinds}); in a functional model every input must come from "
                            "cn.Input(...) or another layer's output")
    return False
