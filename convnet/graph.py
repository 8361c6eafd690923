"""Backpropagation through a graph of layers, written out by hand.

A model is a directed acyclic graph: nodes are layer calls, edges are the tensors
that flow between them (convnet/layers/symbolic.py records them). Training needs
two walks over it.

Forward, in topological order (every node after the nodes that feed it):

    value[out] = node.layer.forward(value[in_1], ..., value[in_k])

Backward, in *reverse* topological order. The chain rule gives the gradient of
the loss L with respect to a tensor t from the gradients of the tensors computed
from it, so a node can run its backward only once every node that consumed its
output has run theirs; reversing the forward order guarantees exactly that.

    dx_1, ..., dx_k = node.layer.backward(grad[out])
    grad[in_i] += dx_i

Why `+=`: when one tensor t feeds several layers (a fork, like the shortcut of a
residual block), L depends on t along every path, and the multivariable chain
rule sums the contributions:  dL/dt = sum over consumers c of dL/dc * dc/dt.

Two savings keep it as cheap as a plain stack of layers:
- a node whose inputs come only from the data (no parameters anywhere upstream)
  does not need its input gradient: the layer is told `skip_input_grad`, and the
  nodes before it (e.g. a Rescaling) do not run backward at all;
- a layer called at several nodes (shared weights) runs its extra calls on a
  `shared_view()`, which keeps that call's activations; its weight gradients are
  the sum over the calls, since the same W was used at each.
"""

from .backend import get_ops
from .layers.input_layer import InputLayer
from .layers.symbolic import SymbolicTensor

__all__ = ["Graph", "GraphError"]


class GraphError(ValueError):
    """A graph that cannot be run: a cycle, a disconnected input, a bad tensor."""


def _as_tensor_list(value, what, owner):
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise GraphError(f"{owner}: {what} is empty; give at least one tensor")
    for item in items:
        if not isinstance(item, SymbolicTensor):
            raise TypeError(f"{owner}: {what} must be symbolic tensors (from cn.Input(...) or a layer "
                            f"called on one), got {type(item).__name__}")
    return items


class Graph:
    """The nodes between `inputs` and `outputs` (lists of SymbolicTensors), in
    topological order, with the forward and backward walks over them."""

    def __init__(self, inputs, outputs, owner="Model"):
        self.inputs = _as_tensor_list(inputs, "inputs", owner)
        self.outputs = _as_tensor_list(outputs, "outputs", owner)
        for t in self.inputs:
            if not isinstance(t.layer, InputLayer):
                raise GraphError(f"{owner}: input {t.name!r} is the output of {t.layer.describe()}, "
                                 "not of cn.Input(...); a model's inputs must be Input tensors")
        self.nodes = self._topological_order(owner)
        self._check_inputs_used(owner)
        self.layers = list(dict.fromkeys(node.layer for node in self.nodes))
        self.refresh_views()
        self._plan()

    def refresh_views(self):
        """Decide the object that runs each node: the layer itself at its first call
        in this graph, a weight-sharing view at every further call (made again
        after a layer is rebuilt, so the views hold its new weights)."""
        self.runners, self.views = {}, {}
        for node in self.nodes:
            if node.layer in self.views:
                view = node.layer.shared_view()
                self.views[node.layer].append(view)
                self.runners[node] = view
            else:
                self.views[node.layer] = []
                self.runners[node] = node.layer

    # ------------------------------------------------------------- structure
    def _topological_order(self, owner):
        """Depth-first search back from the outputs; a node is listed after all
        the nodes it reads from. Meeting a node that is still being visited
        means the graph has a cycle."""
        order, state = [], {}          # state: 1 = on the current path, 2 = done
        allowed = {id(t) for t in self.inputs}

        def visit(node, path):
            mark = state.get(id(node))
            if mark == 2:
                return
            if mark == 1:
                cycle = " -> ".join(n.layer.name for n in path[path.index(node):] + [node])
                raise GraphError(f"{owner}: the graph has a cycle through layer {node.layer.name!r} "
                                 f"({cycle}); a layer cannot depend on its own output")
            if isinstance(node.layer, InputLayer) and id(node.outputs[0]) not in allowed:
                raise GraphError(f"{owner}: graph disconnected: {path[-1].layer.describe() if path else 'an output'} "
                                 f"needs input {node.layer.name!r}, which is not among the model's inputs "
                                 f"{[t.name for t in self.inputs]}")
            state[id(node)] = 1
            for t in node.inputs:
                visit(t.node, path + [node])
            state[id(node)] = 2
            order.append(node)

        for t in self.outputs:
            visit(t.node, [])
        return order

    def _check_inputs_used(self, owner):
        seen = {id(node) for node in self.nodes}
        for t in self.inputs:
            if id(t.node) not in seen:
                raise GraphError(f"{owner}: input {t.layer.name!r} is not connected to the outputs "
                                 f"{[o.name for o in self.outputs]}")
        if len({id(t) for t in self.inputs}) != len(self.inputs):
            raise GraphError(f"{owner}: the same input tensor is listed twice in inputs")

    def _plan(self):
        """What the walks need to know in advance: which tensors carry a gradient,
        who consumes what, and when a forward value can be dropped."""
        # a tensor needs a gradient when some parameter lies upstream of it
        self.needs_grad = {}
        for node in self.nodes:
            upstream = any(self.needs_grad[id(t)] for t in node.inputs)
            self.needs_grad[id(node.outputs[0])] = bool(node.layer.params) or upstream
        self.consumers = {}
        for node in self.nodes:
            for t in node.inputs:
                self.consumers.setdefault(id(t), []).append(node)
        # after its last consumer ran, a forward value is no longer needed (the
        # layers keep what their backward needs); outputs are kept
        keep = {id(t) for t in self.outputs}
        last_use = {}
        for i, node in enumerate(self.nodes):
            for t in node.inputs:
                last_use[id(t)] = i
        self.drop_after = [[] for _ in self.nodes]
        for key, i in last_use.items():
            if key not in keep:
                self.drop_after[i].append(key)
        self.input_position = {id(t.node): i for i, t in enumerate(self.inputs)}
        self.batchnorm_folds = self._batchnorm_folds(keep)

    def _only_consumer(self, tensor, keep):
        # the one node that reads `tensor`, when nothing else does (nor the model's outputs)
        readers = self.consumers.get(id(tensor), [])
        return readers[0] if len(readers) == 1 and id(tensor) not in keep else None

    def _batchnorm_folds(self, keep):
        """{id(conv node): (batch-norm node, ReLU node or None)}: the chains
        Conv2D -> BatchNormalization (-> ReLU) whose links have no other reader, which
        an inference runs as one convolution (Conv2D.forward_scaled)."""
        from .layers.conv import Conv2D
        from .layers.core import Activation
        from .layers.normalization import BatchNormalization
        folds = {}
        for node in self.nodes:
            if not (isinstance(node.layer, Conv2D) and node.layer.folds_scale()):
                continue
            bn = self._only_consumer(node.outputs[0], keep)
            if bn is None or type(bn.layer) is not BatchNormalization:
                continue
            relu = self._only_consumer(bn.outputs[0], keep)
            if relu is not None and not (isinstance(relu.layer, Activation) and relu.layer.activation == "relu"):
                relu = None
            folds[id(node)] = (bn, relu)
        return folds

    def runs_backward(self, node):
        """Does backward run this node? (only where some parameter lies upstream)"""
        return self.needs_grad[id(node.outputs[0])]

    def input_grad_needed(self, node):
        """Does this node's backward compute its input gradient? (not for the first
        layer with parameters: nothing upstream learns)"""
        return any(self.needs_grad[id(t)] for t in node.inputs)

    def output_has_other_uses(self, index):
        """True when output `index` also feeds another node of the graph."""
        return bool(self.consumers.get(id(self.outputs[index])))

    # --------------------------------------------------------------- forward
    def forward(self, arrays, training=False, logits=(), trace=None, fold_batchnorm=False):
        """Run every node on the input arrays (one per model input, (N, ...)).

        logits: positions of outputs whose final activation is left out (the loss
        fuses softmax with cross-entropy). trace: optional object whose
        start(node, phase)/stop(node, phase) bracket each layer call (profiling).
        fold_batchnorm (inference only, for a forward pass no backward follows:
        predict): each chain of batchnorm_folds runs as one convolution, its
        batch normalization and ReLU folded in (Conv2D.forward_scaled), and those
        two layers do not run.
        Returns one array per output.
        """
        fused = {id(self.outputs[i].node) for i in logits}
        folds = self.batchnorm_folds if fold_batchnorm and not training else {}
        folded = set()          # the nodes whose output a folded convolution gave
        values = {}
        for i, node in enumerate(self.nodes):
            if id(node) in folded:
                for key in self.drop_after[i]:
                    values.pop(key, None)
                continue
            layer = self.runners[node]
            if id(node) in self.input_position:
                x = arrays[self.input_position[id(node)]]
            elif len(node.inputs) == 1:
                x = values[id(node.inputs[0])]
            else:
                x = [values[id(t)] for t in node.inputs]
            if trace is not None:
                trace.start(node, "forward")
            if id(node) in folds:
                bn, relu = folds[id(node)]
                scale, shift = self.runners[bn].inference_scale_shift()
                y = layer.forward_scaled(x, scale, shift, relu=relu is not None)
                for done in (bn, relu) if relu is not None else (bn,):
                    folded.add(id(done))
                    values[id(done.outputs[0])] = y
            elif id(node) in fused:
                y = layer.forward_logits(x, training)
            else:
                y = layer.forward(x, training=training)
            if trace is not None:
                trace.stop(node, "forward")
            if id(node) not in folds:
                values[id(node.outputs[0])] = y
            for key in self.drop_after[i]:
                values.pop(key, None)
        return [values[id(t)] for t in self.outputs]

    # -------------------------------------------------------------- backward
    def backward(self, output_grads, logits=(), trace=None, input_grads=False):
        """Backpropagate dL/d(output) (one array per output) through every node;
        fills each layer's grads. `logits` as in forward (those outputs' grads are
        taken w.r.t. the pre-activation values). With input_grads=True every node
        runs its full backward and the gradients w.r.t. the model's inputs are
        returned (a list, one per input); training never needs them."""
        fused = {id(self.outputs[i].node) for i in logits}
        ops = get_ops()
        needs_grad = self.needs_grad if not input_grads else dict.fromkeys(self.needs_grad, True)
        grads = {}

        def add(tensor_id, g):
            # a fork: the gradient of a tensor is the sum over its consumers
            grads[tensor_id] = g if tensor_id not in grads else ops.add(grads[tensor_id], g)

        for t, g in zip(self.outputs, output_grads):
            add(id(t), g)
        for node in reversed(self.nodes):
            out = id(node.outputs[0])
            if out not in grads or not needs_grad[out]:
                continue          # no parameter here or upstream: nothing to learn
            if id(node) in self.input_position:
                continue          # an Input: its gradient is grads[out] itself
            layer = self.runners[node]
            wanted = [needs_grad[id(t)] for t in node.inputs]
            layer.skip_input_grad = not any(wanted)
            if trace is not None:
                trace.start(node, "backward")
            try:
                g = grads.pop(out)
                dx = layer.backward_logits(g) if id(node) in fused else layer.backward(g)
            finally:
                layer.skip_input_grad = False
            if trace is not None:
                trace.stop(node, "backward")
            if not any(wanted):
                continue
            dxs = dx if isinstance(dx, list) else [dx]
            for t, need, d in zip(node.inputs, wanted, dxs):
                if need:
                    add(id(t), d)
        # a layer used at several nodes: d loss / d W is the sum over its calls
        for layer, views in self.views.items():
            for view in views:
                for key, g in view.grads.items():
                    layer.grads[key] = layer.grads[key] + g
        if input_grads:
            return [grads.get(id(t)) for t in self.inputs]
        return None
