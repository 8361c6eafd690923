"""convnet as an ONNX backend (onnx.backend.base.Backend), so ONNX's own test suite
runs on it unchanged:

    import onnx.backend.test
    import convnet.onnx.backend
    tests = onnx.backend.test.BackendTest(convnet.onnx.backend, __name__)

`prepare(model)` gives a BackendRep whose `run(inputs)` takes and returns tensors in
ONNX's layout. At the boundary, 4-D inputs (N, C, H, W) are transposed to convnet's
(N, H, W, C) and 4-D outputs back (cn.onnx.load's convention).

Which graph inputs are data. ONNX lets weights, shapes and clip bounds be graph
inputs; a convnet layer holds them as weights. A graph input is data (a cn.Input)
when it is the first operand of some node or an element-wise/concat operand of the
same shape as another data operand; every other graph input (a Conv's W, a
Reshape's shape, a broadcast (C,) vector, ints) is bound from the values given to
`run` as a constant. The convnet model is built on the first `run` (sizes from the
data given) and reused while those constants and shapes stay the same.

A graph none of whose outputs depends on a data input (ConstantOfShape of a shape
given as an int64 input, say) has no convnet model: a model computes from its
inputs. Its outputs are the constants the importer folds at import (ONNX's
reference evaluator, node by node), computed once for the values given.
"""

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from .importer import constant_outputs, from_proto

__all__ = ["ConvnetBackend", "ConvnetRep", "prepare", "run_model", "run_node", "supports_device",
           "is_compatible"]

_ELEMENTWISE = {"Add", "Sum", "Sub", "Mul", "Div", "Concat", "Mean", "Max", "Min"}


def _data_inputs(model, inputs, min_rank=2):
    """Names of the graph inputs that are data (see the module docstring)."""
    inits = {i.name for i in model.graph.initializer}
    names = [vi.name for vi in model.graph.input if vi.name not in inits]
    given = dict(zip(names, inputs))
    data = set()
    for node in model.graph.node:
        ops = [n for n in node.input if n]
        if node.input and node.input[0] in given:
            data.add(node.input[0])
        if node.op_type in _ELEMENTWISE:
            shapes = {n: np.shape(given[n]) for n in ops if n in given}
            for n, shape in shapes.items():
                if sum(1 for m in ops if m in given and np.shape(given[m]) == shape) > 1 or node.op_type == "Concat":
                    data.add(n)
    floats = {n for n in data if np.asarray(given[n]).dtype.kind == "f" and np.ndim(given[n]) >= min_rank}
    return names, floats


def _computed_from(graph, names):
    """Every tensor computed, directly or through other nodes, from the tensors
    `names` (ONNX lists nodes in topological order: one pass suffices)."""
    reached = set(names)
    for node in graph.node:
        if any(n in reached for n in node.input if n):
            reached.update(o for o in node.output if o)
    return reached


class ConvnetRep(BackendRep):
    """A prepared ONNX model: runs on convnet, ONNX layouts in and out."""

    def __init__(self, model):
        self.proto = model
        self._cache = None          # (key, convnet model, data names, sample_axis, constant outputs)

    def _input_names(self):
        """The graph inputs `run` takes, in order (the initializers are not among them)."""
        inits = {i.name for i in self.proto.graph.initializer}
        return [vi.name for vi in self.proto.graph.input if vi.name not in inits]

    def _build(self, inputs, sample_axis):
        names, data = _data_inputs(self.proto, inputs, min_rank=1 if sample_axis else 2)
        given = dict(zip(names, inputs))
        known = {n: np.asarray(v) for n, v in given.items() if n not in data}
        shapes = {n: np.shape(given[n]) for n in data}
        batch = next((s[0] for s in shapes.values()), None)
        model = from_proto(self.proto, known_inputs=known, batch=batch, input_shapes=shapes,
                           sample_axis=sample_axis)
        return model, [n for n in names if n in data]

    def _model_for(self, inputs):
        """The convnet model for these inputs: ONNX's axis 0 as convnet's batch where the
        graph allows it, else every tensor as one sample (sample_axis, see importer).
        -> (model, data names, sample_axis, constant outputs); model is None for a
        graph whose outputs depend on no data input (then the outputs are given)."""
        given = dict(zip(self._input_names(), inputs))
        key = tuple(sorted((n, np.asarray(v).dtype.str, np.shape(v)) for n, v in given.items())) + tuple(
            np.asarray(v).tobytes() for n, v in sorted(given.items()) if np.asarray(v).dtype.kind != "f")
        if self._cache is None or self._cache[0] != key:
            _, data = _data_inputs(self.proto, inputs, min_rank=1)      # the widest choice of data
            reached = _computed_from(self.proto.graph, data)
            if not any(vo.name in reached for vo in self.proto.graph.output):
                self._cache = (key, None, [], False, constant_outputs(self.proto, given))
                return self._cache[1:]
            try:
                model, data_names = self._build(inputs, sample_axis=False)
                sample_axis = False
            except ValueError as first:
                try:
                    model, data_names = self._build(inputs, sample_axis=True)
                    sample_axis = True
                except ValueError:
                    raise first from None
            self._cache = (key, model, data_names, sample_axis, None)
        return self._cache[1:]

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            inputs = [inputs[n] for n in self._input_names()]
        elif not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        model, data_names, sample_axis, constants = self._model_for(list(inputs))
        if model is None:
            return tuple(constants)
        given = dict(zip(self._input_names(), inputs))
        xs = []
        for n in data_names:
            x = np.asarray(given[n])
            if sample_axis:
                xs.append(x[None])
            else:
                xs.append(np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x)
        outs = model(xs if len(xs) > 1 else xs[0])
        outs = outs if isinstance(outs, list) else [outs]
        result = []
        for y in outs:
            y = np.asarray(y)
            if sample_axis:
                result.append(y[0])
            else:
                result.append(np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if y.ndim == 4 else y)
        return tuple(result)


class ConvnetBackend(Backend):
    """onnx.backend.base.Backend on convnet (CPU; the active convnet backend computes)."""

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        return True

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        if isinstance(model, (str, bytes)) and not isinstance(model, onnx.ModelProto):
            model = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(model)
        return ConvnetRep(model)

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        """One node on `inputs` (a list, in node.input order): wrapped in a graph."""
        from onnx import helper
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(v).dtype),
                                             np.shape(v)) for n, v in zip(node.input, inputs)]
        # the outputs' types and shapes from ONNX's shape inference (a graph output
        # needs them)
        probe = helper.make_model(helper.make_graph([node], "node", ins, []))
        inferred = {vi.name: vi for vi in onnx.shape_inference.infer_shapes(probe).graph.value_info}
        outs = [inferred[n] for n in node.output if n]
        model = helper.make_model(helper.make_graph([node], "node", ins, outs))
        return cls.run_model(model, inputs, device)

    @classmethod
    def supports_device(cls, device):
        return device == "CPU"


prepare = ConvnetBackend.prepare
run_model = ConvnetBackend.run_model
run_node = ConvnetBackend.run_node
supports_device = ConvnetBackend.supports_device
is_compatible = ConvnetBackend.is_compatible
