"""ONNX graph -> convnet model (convnet.onnx.load).

Every ONNX node becomes a convnet layer (or several), called on symbolic tensors,
so the result is an ordinary cn.Model: trainable, savable, with summary() and
gradcheck. Image tensors are channels-last inside: a graph input of shape
(N, C, H, W) becomes cn.Input((H, W, C)), and a 4-D output is (N, H, W, C).

Layouts. Each ONNX tensor is held as a convnet tensor plus a permutation `perm`
with  convnet_array = onnx_array.transpose(perm)  (perm[0] = 0: the batch stays
first). Images enter as perm (0, 2, 3, 1). Layers that read channels (Conv, pools,
BatchNormalization, LRN) want the channel axis last; layers that read the memory
order (Reshape, Flatten, Unsqueeze) want perm = identity; a Permute layer is
inserted only where a tensor's perm differs from what its consumer wants, and an
ONNX Transpose only changes the perm (no layer at all).

Weights. Initializers and every node whose inputs are all constants (the light zoo
models build their weights with ConstantOfShape) are evaluated once at import, by
ONNX's reference evaluator; the results are converted to convnet's layouts:
    Conv W (F, C/g, kh, kw) -> Conv2D W (kh, kw, C/g, F);   Gemm B -> Dense W (in, out)
A node or attribute convnet cannot represent raises OnnxImportError naming the
node, its operator and what is unsupported; nothing is silently approximated.
"""

import os

import numpy as np
import onnx
from onnx import numpy_helper

from .. import layers as L
from ..backend import get_ops
from ..layers.padding import axis_geometry
from ..models import Model

__all__ = ["load", "from_proto", "constant_outputs", "OnnxImportError"]


class OnnxImportError(ValueError):
    """An ONNX node or attribute that convnet cannot represent."""


_FLOATS = {np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)}


class _Value:
    """A convnet symbolic tensor standing for an ONNX tensor: convnet = onnx.transpose(perm)."""

    def __init__(self, sym, perm):
        self.sym = sym
        self.perm = tuple(perm)

    @property
    def rank(self):
        return len(self.perm)

    def onnx_shape(self):
        """The ONNX tensor's shape without the batch axis."""
        shape = self.sym.shape
        out = [None] * self.rank
        for i, p in enumerate(self.perm):
            out[p] = shape[i]
        return tuple(out[1:])


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decode(v):
    return v.decode() if isinstance(v, bytes) else v


class _Importer:
    def __init__(self, proto, known_inputs=None, batch=None, input_shapes=None, sample_axis=False):
        self.proto = proto
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.consts = {}
        self.values = {}
        self.names = set()
        self.batch = batch
        self.known_inputs = known_inputs or {}
        self.input_shapes = input_shapes or {}
        # sample_axis: every ONNX tensor X is one sample, convnet holds X[None]
        # (ONNX axis a is convnet's axis a + 1); lead is that offset
        self.lead = 1 if sample_axis else 0
        self.dtype = None
        # a file written by cn.onnx.export: its 4-D inputs and outputs are (N, H, W, C)
        props = {p.key: p.value for p in proto.metadata_props}
        self.io_channels_last = props.get("convnet.io_layout") == "channels_last"

    # ------------------------------------------------------------- helpers
    def error(self, node, what):
        name = node.name or (node.output[0] if node.output else "?")
        return OnnxImportError(f"ONNX node {name!r} ({node.op_type}): {what}")

    def layer_name(self, node, suffix=""):
        base = (node.name or node.output[0] or node.op_type) + suffix
        name, k = base, 1
        while name in self.names:
            name = f"{base}_{k}"
            k += 1
        self.names.add(name)
        return name

    def call(self, layer, value_or_values):
        if isinstance(value_or_values, list):
            return layer([v.sym for v in value_or_values])
        return layer(value_or_values.sym)

    def permute(self, v, target, node, suffix="_permute"):
        """v with convnet = onnx.transpose(target): a Permute layer when needed."""
        target = tuple(target)
        if v.perm == target:
            return v
        inv = np.argsort(v.perm)
        r = [int(inv[t]) for t in target]
        layer = L.Permute(r[1:], name=self.layer_name(node, suffix), dtype=self.dtype)
        return _Value(layer(v.sym), target)

    def onnx_order(self, v, node, suffix="_permute"):
        return self.permute(v, tuple(range(v.rank)), node, suffix)

    def channels_last(self, v, node):
        """ONNX axis 1 (channels) last in convnet."""
        ch = 1 + self.lead
        if v.rank < ch + 1:
            raise self.error(node, "needs a channel axis (rank >= 2)")
        return self.permute(v, (*(i for i in range(v.rank) if i != ch), ch), node)

    def axis(self, a, v, node, rank=None):
        """ONNX axis a of v (a rank-`rank` ONNX tensor; default v's) as an axis of the
        convnet-side tensor, before v's perm; the batch axis is refused."""
        r = (v.rank - self.lead) if rank is None else rank
        a = int(a)
        if not -r <= a < r:
            raise self.error(node, f"axis {a} is out of range for rank {r}")
        out = a % r + self.lead
        if out == 0:
            raise self.error(node, "an operation along the batch axis (axis 0) is not supported: convnet "
                                   "layers never mix the samples of a batch")
        return out

    def const(self, node, i, what, required=True):
        names = node.input
        if i >= len(names) or names[i] == "":
            if required:
                raise self.error(node, f"input {what} is missing")
            return None
        name = names[i]
        if name not in self.consts:
            raise self.error(node, f"input {what} ({name!r}) must be a constant (an initializer or "
                                   "computed from constants); convnet layers hold it as a weight")
        return self.consts[name]

    def var(self, node, i):
        name = node.input[i]
        if name in self.values:
            return self.values[name]
        raise self.error(node, f"input {name!r} is neither a graph input nor computed by an earlier node")

    def set_out(self, node, value, index=0):
        self.values[node.output[index]] = value

    def keep_layout(self, node, layer, x=None):
        """The node's output is `layer` applied to x (default: the node's first input),
        in x's memory order: an element-wise layer, or one that works along the
        channels-last axes x already has, leaves the permutation as it was."""
        x = self.var(node, 0) if x is None else x
        self.set_out(node, _Value(layer(x.sym), x.perm))

    def check_outputs(self, node, allowed=1):
        extra = [o for o in node.output[allowed:] if o]
        if extra and any(self._used(o) for o in extra):
            raise self.error(node, f"optional output(s) {extra} are not supported")

    def _used(self, name):
        return any(name in n.input for n in self.graph.node) or any(o.name == name for o in self.graph.output)

    # ------------------------------------------------------------- driving
    def read_constants(self):
        """The initializers and known inputs as constants; the other graph inputs' infos."""
        for init in self.graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        variables = []
        for vi in self.graph.input:
            if vi.name in self.consts:
                continue
            if vi.name in self.known_inputs:
                self.consts[vi.name] = np.asarray(self.known_inputs[vi.name])
                continue
            variables.append(vi)
        return variables

    def constant_outputs(self):
        """The graph's outputs when none of them depends on a variable input: every
        node on constants folded (ONNX's reference evaluator), nothing built."""
        self.read_constants()
        for node in self.graph.node:
            if all(n in self.consts for n in node.input if n):
                self._fold(node)
        missing = [vo.name for vo in self.graph.output if vo.name not in self.consts]
        if missing:
            raise OnnxImportError(f"ONNX graph outputs {missing} depend on variable inputs: they are not "
                                  "constants")
        return [self.consts[vo.name] for vo in self.graph.output]

    def run(self):
        inputs = [self._input(vi) for vi in self.read_constants()]
        if not inputs:
            raise OnnxImportError("ONNX graph has no variable inputs: every input is a constant")
        for node in self.graph.node:
            self._node(node)
        outputs = []
        for vo in self.graph.output:
            if vo.name in self.consts:
                raise OnnxImportError(f"ONNX graph output {vo.name!r} is a constant (it depends on no input); "
                                      "a convnet model computes its outputs from its inputs")
            if vo.name not in self.values:
                raise OnnxImportError(f"ONNX graph output {vo.name!r} is computed by no node")
            v = self.values[vo.name]
            fake = onnx.NodeProto()
            fake.name, fake.op_type = f"output {vo.name}", "Output"
            image = v.rank == 4 and not self.lead and not self.io_channels_last
            v = self.permute(v, (0, 2, 3, 1) if image else tuple(range(v.rank)), fake, "_layout")
            outputs.append(v.sym)
        return Model(inputs=inputs, outputs=outputs, name=_model_name(self.graph.name))

    def _input(self, vi):
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if dtype not in _FLOATS:
            raise OnnxImportError(f"ONNX graph input {vi.name!r} has dtype {dtype}; convnet models take "
                                  "float16/32/64 inputs")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if vi.name in self.input_shapes:          # the shape of the data actually given
            dims = list(self.input_shapes[vi.name])
        if self.lead:
            dims = [1, *dims]
        if len(dims) < 2:
            raise OnnxImportError(f"ONNX graph input {vi.name!r} has shape {dims}; convnet needs a batch axis "
                                  "and at least one more")
        if any(d is None for d in dims[1:]):
            raise OnnxImportError(f"ONNX graph input {vi.name!r} has free sizes {dims}; convnet builds every "
                                  "layer for one image size: give every size but the batch")
        if self.dtype is None:
            self.dtype = dtype.name
        if self.batch is None and dims[0]:
            self.batch = dims[0]
        name = vi.name
        self.names.add(name)
        if len(dims) == 4 and not self.lead and not self.io_channels_last:
            n, c, h, w = dims
            sym = L.Input((h, w, c), dtype=dtype.name, name=name)
            self.values[name] = _Value(sym, (0, 2, 3, 1))
        else:
            sym = L.Input(tuple(dims[1:]), dtype=dtype.name, name=name)
            self.values[name] = _Value(sym, tuple(range(len(dims))))
        return sym

    def _node(self, node):
        ins = [n for n in node.input if n]
        if node.domain not in ("", "ai.onnx"):
            raise self.error(node, f"operator domain {node.domain!r} is not supported")
        if not ins or all(n in self.consts for n in ins):
            self._fold(node)
            return
        handler = getattr(self, "op_" + node.op_type, None)
        if handler is None:
            raise self.error(node, f"operator {node.op_type} is not supported by convnet.onnx (docs/onnx.md "
                                   "lists the supported operators)")
        handler(node, _attrs(node))

    def _fold(self, node):
        """Evaluate a node whose inputs are all constants, once, at import."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        try:
            # a one-node model, so the evaluator picks the operator's version of this opset
            feeds = {n: self.consts[n] for n in node.input if n}
            ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                   for n, v in feeds.items()]
            outs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
            model = helper.make_model(helper.make_graph([node], "fold", ins, outs),
                                      opset_imports=[helper.make_opsetid("", self.opset)])
            ev = ReferenceEvaluator(model)
            outs = ev.run(None, feeds)
        except Exception as exc:     # the evaluator's own message says what failed
            raise self.error(node, f"could not evaluate this constant node ({exc})") from exc
        for name, value in zip(node.output, outs):
            if name:
                self.consts[name] = np.asarray(value)

    # ------------------------------------------------------------ operators
    def _windows(self, node, a, x, kernel, pool):
        """(strides, dilations, padding) of a Conv/pool node, padding in convnet's
        explicit ((top, bottom), (left, right)) form for input x (NHWC; for a 3-D
        pool NDHWC and three (before, after) pairs)."""
        axes = len(kernel)
        if axes != x.rank - 2 or axes not in ((2, 3) if pool else (2,)):
            raise self.error(node, f"kernel_shape {list(kernel)} on an input of rank {x.rank}: only 2-D windows"
                                   f"{' and 3-D pools' if pool else ''} are supported")
        strides = tuple(a.get("strides", [1] * axes))
        dil = tuple(a.get("dilations", [1] * axes))
        auto = _decode(a.get("auto_pad", "NOTSET"))
        sizes = x.sym.shape[1:1 + axes]
        if auto in ("NOTSET", ""):
            p = list(a.get("pads", [0] * (2 * axes)))      # [begin of each axis..., end of each axis...]
            if any(v < 0 for v in p):
                raise self.error(node, f"negative pads {p} are not supported")
            pads = tuple((p[i], p[i + axes]) for i in range(axes))
        elif auto == "VALID":
            pads = ((0, 0),) * axes
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for n, k, s, d in zip(sizes, kernel, strides, dil):
                out, before, after = axis_geometry(n, k, s, "same", d)
                if auto == "SAME_LOWER":
                    before, after = after, before     # the odd pixel goes first
                pads.append((before, after))
            pads = tuple(pads)
        else:
            raise self.error(node, f"auto_pad {auto!r} is not supported")
        return strides, dil, pads

    def batch_first(self, node):
        if self.lead:
            raise self.error(node, "reads ONNX axis 0 as the batch (sample_axis mode cannot)")

    def _to_2d(self, node, a):
        """A 1-D window op (N, C, L) as the 2-D one on (N, C, L, 1): attributes get a
        unit second axis (kernel 1, stride 1, no padding, dilation 1)."""
        a = dict(a)
        for key, extra in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
            if key in a:
                a[key] = list(a[key]) + [extra]
        if "pads" in a:
            b, e = a["pads"]
            a["pads"] = [b, 0, e, 0]
        x = self.onnx_order(self.var(node, 0), node)
        shape = x.onnx_shape()
        return self._reshape_to(node, x, (*shape, 1)), a

    def _from_2d(self, node, y):
        shape = y.onnx_shape()
        return self._reshape_to(node, y, shape[:-1])

    def _one_d(self, node, a, handler):
        """Run the 2-D handler on the (N, C, L, 1) view of a 1-D node's input."""
        x4, a4 = self._to_2d(node, a)
        inner = onnx.NodeProto()
        inner.CopyFrom(node)
        inner.input[0] = node.input[0] + "__as_2d"
        self.values[inner.input[0]] = x4
        handler(inner, a4, one_d=True)
        y = self.values[node.output[0]]
        self.set_out(node, self._from_2d(node, y))

    def op_Conv(self, node, a, one_d=False):
        self.batch_first(node)
        if not one_d and self.var(node, 0).rank == 3:
            return self._one_d(node, a, self.op_Conv)
        x = self.channels_last(self.var(node, 0), node)
        if x.rank != 4:
            raise self.error(node, f"input of rank {x.rank}: only 2-D convolution (rank 4) is supported")
        W = self.const(node, 1, "W")
        if one_d:
            W = W[..., None]
        b = self.const(node, 2, "B", required=False)
        if W.ndim != 4:
            raise self.error(node, f"W of rank {W.ndim}: only 1-D and 2-D convolution are supported")
        f, cg, kh, kw = W.shape
        kernel = tuple(a.get("kernel_shape", (kh, kw)))
        strides, dil, pads = self._windows(node, a, x, kernel, pool=False)
        groups = int(a.get("group", 1))
        # built with zeros (the ONNX weights replace them: drawing random ones for a
        # VGG-size kernel would cost seconds), then the Keras default is restored
        layer = L.Conv2D(int(f), (int(kh), int(kw)), strides=strides, padding=pads, dilation_rate=dil,
                         kernel_initializer="zeros",
                         groups=groups, use_bias=b is not None, name=self.layer_name(node), dtype=self.dtype)
        try:
            y = layer(x.sym)
        except ValueError as exc:
            raise self.error(node, str(exc)) from exc
        layer.kernel_initializer = "glorot_uniform"
        ops = get_ops()
        layer.params["W"] = ops.asarray(np.array(W.transpose(2, 3, 1, 0), dtype=layer.dtype, order="C"))
        if b is not None:
            layer.params["b"] = ops.asarray(np.array(b, dtype=layer.dtype, order="C"))
        self.set_out(node, _Value(y, (0, 2, 3, 1)))

    def _pool(self, node, a, classes, one_d=False, **extra):
        """A MaxPool/AveragePool node; classes: {input rank: layer class} (4: 2-D, 5: 3-D)."""
        self.batch_first(node)
        self.check_outputs(node)
        if not one_d and self.var(node, 0).rank == 3:
            return self._one_d(node, a, lambda n, a4, one_d: self._pool(n, a4, classes, one_d=True, **extra))
        x = self.channels_last(self.var(node, 0), node)
        if x.rank not in classes:
            raise self.error(node, f"input of rank {x.rank}: only 1-D, 2-D and 3-D pooling (rank 3, 4, 5) "
                                   "are supported")
        kernel = tuple(a["kernel_shape"])
        strides, dil, pads = self._windows(node, a, x, kernel, pool=True)
        if any(p >= k for pair, k in zip(pads, kernel) for p in pair):
            raise self.error(node, f"pads {pads} as large as the window {kernel} are not supported")
        layer = classes[x.rank](kernel, strides=strides, padding=pads, ceil_mode=bool(a.get("ceil_mode", 0)),
                                dilation_rate=dil, name=self.layer_name(node), dtype=self.dtype, **extra)
        self.keep_layout(node, layer, x)

    def op_MaxPool(self, node, a):
        if int(a.get("storage_order", 0)):
            raise self.error(node, "storage_order=1 is not supported")
        self._pool(node, a, {4: L.MaxPooling2D, 5: L.MaxPooling3D})

    def op_AveragePool(self, node, a):
        self._pool(node, a, {4: L.AveragePooling2D, 5: L.AveragePooling3D},
                   count_include_pad=bool(a.get("count_include_pad", 0)))

    def op_GlobalAveragePool(self, node, a):
        self.batch_first(node)
        x = self.channels_last(self.var(node, 0), node)
        if x.rank != 4:
            raise self.error(node, f"input of rank {x.rank}: only 2-D pooling (rank 4) is supported")
        layer = L.GlobalAveragePooling2D(keepdims=True, name=self.layer_name(node), dtype=self.dtype)
        self.set_out(node, _Value(layer(x.sym), (0, 2, 3, 1)))

    def _dense(self, node, x, W, b):
        self.batch_first(node)
        if x.rank != 2:
            raise self.error(node, f"input of rank {x.rank}: Gemm/MatMul map to Dense, which takes (N, features)")
        layer = L.Dense(int(W.shape[1]), use_bias=b is not None, name=self.layer_name(node), dtype=self.dtype,
                        kernel_initializer="zeros")
        y = layer(x.sym)
        layer.kernel_initializer = "glorot_uniform"
        ops = get_ops()
        layer.params["W"] = ops.asarray(np.array(W, dtype=layer.dtype, order="C"))
        if b is not None:
            layer.params["b"] = ops.asarray(np.array(np.broadcast_to(b, (W.shape[1],)), dtype=layer.dtype, order="C"))
        self.set_out(node, _Value(y, (0, 1)))

    def op_Gemm(self, node, a):
        x = self.var(node, 0)
        B = self.const(node, 1, "B")
        W = (B.T if int(a.get("transB", 0)) else B) * a.get("alpha", 1.0)
        C = self.const(node, 2, "C", required=False)
        C = None if C is None else np.asarray(C) * a.get("beta", 1.0)
        if self.lead:
            # one-sample mode: A is one (M, K) matrix (transA: (K, M)), C any bias that
            # broadcasts to the (M, N) result
            if int(a.get("transA", 0)):
                x = self._transposed(node, x, [1, 0])
            y = self._matmul_weight(node, x, W, "right")
            self.set_out(node, y if C is None else self._constant_op(node, y, "add", C, "_bias"))
            return
        if int(a.get("transA", 0)):
            raise self.error(node, "transA=1 is not supported when ONNX's axis 0 is the batch (the samples "
                                   "would become a feature axis)")
        if C is not None:
            if C.ndim == 2 and C.shape[0] != 1 or C.size not in (1, W.shape[1]):
                raise self.error(node, f"C of shape {C.shape} varies along the batch axis (a bias per sample): "
                                       "only a bias per output (shape (M,) or (1, M)) is supported when ONNX's "
                                       "axis 0 is the batch")
            C = C.reshape(-1)
        self._dense(node, x, W, C)

    def op_MatMul(self, node, a):
        left, right = node.input[0], node.input[1]
        if left in self.values and right in self.values:
            self.set_out(node, self._matmul_tensors(node, self.values[left], self.values[right]))
            return
        if left not in self.values:          # a constant A times the data B
            x, A = self.var(node, 1), self.const(node, 0, "A")
            self.set_out(node, self._matmul_weight(node, x, A, "left"))
            return
        x, W = self.values[left], self.const(node, 1, "B")
        if not self.lead and W.ndim == 2 and x.rank == 2:
            return self._dense(node, x, W, None)
        if not self.lead and W.ndim in (1, 2) and x.rank >= 3:
            return self._matmul_1x1(node, x, W)
        self.set_out(node, self._matmul_weight(node, x, W, "right"))

    def _matmul_1x1(self, node, x, W):
        """A (N, d1, ..., K) @ B (K, M) (or (K,)) as a 1x1 convolution over the d1*...
        positions with K channels in and M out: A viewed as (N, P, 1, K), W = B as
        (1, 1, K, M)."""
        x = self.onnx_order(x, node)
        shape = x.onnx_shape()
        k = shape[-1]
        B = W.reshape(k, -1)
        m = B.shape[1]
        positions = int(np.prod(shape[:-1]))
        x4 = self._reshape_to(node, x, (positions, 1, k))
        layer = L.Conv2D(m, 1, use_bias=False, kernel_initializer="zeros", name=self.layer_name(node),
                         dtype=self.dtype)
        y = layer(x4.sym)
        layer.kernel_initializer = "glorot_uniform"
        layer.params["W"] = get_ops().asarray(np.array(B.reshape(1, 1, k, m), dtype=layer.dtype, order="C"))
        y = _Value(y, (0, 1, 2, 3))
        out_shape = (*shape[:-1], m) if W.ndim == 2 else tuple(shape[:-1])
        self.set_out(node, self._reshape_to(node, y, out_shape))

    def _per_sample_weight(self, node, W, x_shape, side):
        """The constant operand W of a MatMul with the data x (ONNX (N, *x_shape), N
        the batch) as the weight one sample meets. numpy's rule aligns the stacks
        (the axes before the last two) from the right, so W's stack must not reach
        further left than x's, whose first axis is the batch; where it reaches the
        batch axis, it must have size 1 there (and is dropped)."""
        if len(x_shape) == 1:
            # x (N, K) is one matrix whose rows are the samples: fine as x @ W with a
            # 1-D or 2-D W (each row times W), not otherwise
            if side == "right" and W.ndim <= 2:
                return W
            raise self.error(node, f"a (N, {x_shape[0]}) operand with a constant of shape {W.shape}: the "
                                   "batch axis would be multiplied")
        x_stack, w_stack = len(x_shape) - 1, max(W.ndim - 2, 0)      # x's stack counts the batch axis
        if w_stack > x_stack or w_stack == x_stack and W.shape[0] != 1:
            shape = ", ".join(map(str, x_shape))
            raise self.error(node, f"a constant of shape {W.shape} with data of shape (N, {shape}): the constant "
                                   "varies along the batch axis or moves it")
        return W[0] if w_stack == x_stack else W

    def _matmul_weight(self, node, x, W, side):
        """x @ W (side "right") or W @ x ("left") for a constant W: MatMulWeight."""
        x = self.onnx_order(x, node)
        if not self.lead:
            W = self._per_sample_weight(node, np.asarray(W), x.onnx_shape(), side)
        layer = L.MatMulWeight(W.shape, side=side, kernel_initializer="zeros", name=self.layer_name(node),
                               dtype=self.dtype)
        try:
            y = layer(x.sym)
        except ValueError as exc:
            raise self.error(node, str(exc)) from exc
        layer.kernel_initializer = "glorot_uniform"
        layer.params["W"] = get_ops().asarray(np.array(W, dtype=layer.dtype, order="C"))
        return _Value(y, tuple(range(len(y.shape))))

    def _matmul_tensors(self, node, a, b):
        """a @ b for two computed tensors: MatMul. With ONNX's axis 0 as the batch the
        two batch axes must meet (same rank) and be stack axes (rank >= 3)."""
        a = self.onnx_order(a, node)
        b = self.onnx_order(b, node, "_permute1")
        sa, sb = a.onnx_shape(), b.onnx_shape()
        if not self.lead and (len(sa) != len(sb) or len(sa) < 2):
            raise self.error(node, f"inputs of shapes (N, {', '.join(map(str, sa))}) and (N, "
                                   f"{', '.join(map(str, sb))}): with ONNX's axis 0 as the batch both must have "
                                   "the same rank, at least 3")
        layer = L.MatMul(name=self.layer_name(node), dtype=self.dtype)
        try:
            y = layer([a.sym, b.sym])
        except ValueError as exc:
            raise self.error(node, str(exc)) from exc
        return _Value(y, tuple(range(len(y.shape))))

    def _activation(self, node, name):
        self.keep_layout(node, L.Activation(name, name=self.layer_name(node), dtype=self.dtype))

    def op_Relu(self, node, a):
        self._activation(node, "relu")

    def op_Sigmoid(self, node, a):
        self._activation(node, "sigmoid")

    def op_Tanh(self, node, a):
        self._activation(node, "tanh")

    def op_Elu(self, node, a):
        self.keep_layout(node, L.ELU(float(a.get("alpha", 1.0)), name=self.layer_name(node), dtype=self.dtype))

    def op_Neg(self, node, a):
        self.keep_layout(node, L.ConstantOp("mul", -1.0, name=self.layer_name(node), dtype=self.dtype))

    def op_Selu(self, node, a):
        from ..layers.activations import SELU_ALPHA, SELU_SCALE
        if not (np.isclose(a.get("alpha", SELU_ALPHA), SELU_ALPHA) and np.isclose(a.get("gamma", SELU_SCALE),
                                                                               SELU_SCALE)):
            raise self.error(node, "alpha/gamma other than SELU's constants are not supported")
        self._activation(node, "selu")

    def op_Softplus(self, node, a):
        self._activation(node, "softplus")

    def op_Softsign(self, node, a):
        self._activation(node, "softsign")

    def op_LeakyRelu(self, node, a):
        self.keep_layout(node, L.LeakyReLU(float(a.get("alpha", 0.01)), name=self.layer_name(node),
                                           dtype=self.dtype))

    def op_PRelu(self, node, a):
        x = self.var(node, 0)
        slope = np.asarray(self.const(node, 1, "slope"), dtype=np.float64)
        r = x.rank - self.lead
        channels = x.onnx_shape()[self.lead] if r >= 2 else None     # ONNX axis 1
        if self.opset < 7 and slope.ndim == 1 and slope.size > 1 and slope.size == channels:
            # PRelu-1/6 predate broadcasting: a slope of shape (C,) is one value per
            # channel (ONNX axis 1), as PyTorch's PReLU(num_parameters=C)
            slope = slope.reshape(slope.size, *(1,) * (r - 2))
        if slope.ndim > r:
            raise self.error(node, f"slope of shape {slope.shape} has more axes than the input")
        full = slope.reshape((1,) * (x.rank - slope.ndim) + slope.shape)
        if full.shape[0] != 1:
            raise self.error(node, f"slope of shape {slope.shape} varies along the batch axis")
        alpha = full.transpose(x.perm)[0]
        shape = x.sym.shape[1:]
        try:
            alpha = np.broadcast_to(alpha, tuple(1 if a == 1 else d for a, d in zip(alpha.shape, shape)))
        except ValueError as exc:
            raise self.error(node, f"slope of shape {slope.shape} does not broadcast against the input") from exc
        shared = [i + 1 for i, d in enumerate(alpha.shape) if d == 1 and shape[i] != 1]
        layer = L.PReLU(shared_axes=shared or None, name=self.layer_name(node), dtype=self.dtype)
        y = layer(x.sym)
        layer.params["alpha"] = get_ops().asarray(np.array(alpha, dtype=layer.dtype, order="C"))
        self.set_out(node, _Value(y, x.perm))

    def op_LogSoftmax(self, node, a):
        self.op_Softmax(node, a, cls=L.LogSoftmax)

    def op_Softmin(self, node, a):
        # softmin(x) = softmax(-x)
        x = self.var(node, 0)
        neg = L.ConstantOp("mul", -1.0, name=self.layer_name(node, "_negate"), dtype=self.dtype)
        inner = onnx.NodeProto()
        inner.CopyFrom(node)
        inner.input[0] = node.input[0] + "__negated"
        self.values[inner.input[0]] = _Value(neg(x.sym), x.perm)
        self.op_Softmax(inner, a)
        self.values[node.output[0]] = self.values[inner.output[0]]

    def op_Softmax(self, node, a, cls=None):
        cls = cls or L.Softmax
        x = self.var(node, 0)
        r = x.rank
        if self.opset >= 13:
            axis = self.axis(a.get("axis", -1), x, node)
            if x.perm[-1] != axis:
                order = [i for i in range(r) if i != axis] + [axis]
                x = self.permute(x, order, node)
            layer = cls(name=self.layer_name(node), dtype=self.dtype)
            self.keep_layout(node, layer, x)
            return
        # opset < 13: softmax over the flattened axes [axis, ...) of a 2-D view
        axis = self.axis(a.get("axis", 1), x, node)
        x = self.onnx_order(x, node)
        shape = x.onnx_shape()
        if axis == r - 1:
            layer = cls(name=self.layer_name(node), dtype=self.dtype)
            self.keep_layout(node, layer, x)
            return
        lead = shape[:axis - 1]
        flat = L.Reshape((*lead, -1), name=self.layer_name(node, "_flatten"), dtype=self.dtype)(x.sym)
        y = cls(name=self.layer_name(node), dtype=self.dtype)(flat)
        y = L.Reshape(shape, name=self.layer_name(node, "_unflatten"), dtype=self.dtype)(y)
        self.set_out(node, _Value(y, x.perm))

    def op_BatchNormalization(self, node, a):
        if int(a.get("training_mode", 0)):
            raise self.error(node, "training_mode=1 is not supported (import gives the inference form; "
                                   "train the imported model with fit)")
        self.check_outputs(node)
        x = self.channels_last(self.var(node, 0), node)
        scale, bias, mean, var = (self.const(node, i, n) for i, n in enumerate(("scale", "B", "mean", "var"), 1))
        eps = float(a.get("epsilon", 1e-5))
        layer = L.BatchNormalization(momentum=float(a.get("momentum", 0.9)), epsilon=eps,
                                     name=self.layer_name(node), dtype=self.dtype)
        y = layer(x.sym)
        ops = get_ops()
        layer.params["gamma"] = ops.asarray(np.array(scale, dtype=layer.dtype, order="C"))
        layer.params["beta"] = ops.asarray(np.array(bias, dtype=layer.dtype, order="C"))
        layer.state["moving_mean"] = ops.asarray(np.array(mean, dtype=layer.dtype, order="C"))
        layer.state["moving_variance"] = ops.asarray(np.array(var, dtype=layer.dtype, order="C"))
        self.set_out(node, _Value(y, x.perm))

    def op_Dropout(self, node, a):
        self.check_outputs(node)
        x = self.var(node, 0)
        rate = a.get("ratio", 0.5)
        if len(node.input) > 1 and node.input[1]:
            rate = float(self.const(node, 1, "ratio"))
        if len(node.input) > 2 and node.input[2] and bool(self.const(node, 2, "training_mode")):
            raise self.error(node, "training_mode=True is not supported (import gives inference graphs)")
        layer = L.Dropout(min(float(rate), 0.999), name=self.layer_name(node), dtype=self.dtype)
        self.keep_layout(node, layer, x)

    def op_Identity(self, node, a):
        self.keep_layout(node, L.Identity(name=self.layer_name(node), dtype=self.dtype))

    def _reshape_to(self, node, x, shape):
        """x (any perm) reshaped to the ONNX shape `shape` (without the batch)."""
        x = self.onnx_order(x, node)
        layer = L.Reshape(tuple(int(d) for d in shape), name=self.layer_name(node), dtype=self.dtype)
        y = layer(x.sym)
        return _Value(y, tuple(range(len(shape) + 1)))

    def op_Flatten(self, node, a):
        x = self.var(node, 0)
        r = x.rank - self.lead
        axis = int(a.get("axis", 1))
        axis = axis + r if axis < 0 else axis
        if self.lead:      # X (d0, ..., d_{r-1}) -> (prod d[:axis], prod d[axis:])
            shape = x.onnx_shape()
            self.set_out(node, self._reshape_to(node, x, (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))))
            return
        if axis != 1:
            shape = x.onnx_shape()
            if axis == 0 or any(d != 1 for d in shape[:axis - 1]):
                raise self.error(node, f"axis={a.get('axis')}: only axis=1 (keep the batch, flatten the rest) "
                                       "is supported")
        self.set_out(node, self._reshape_to(node, x, (int(np.prod(x.onnx_shape())),)))

    def op_Reshape(self, node, a):
        x = self.var(node, 0)
        target = [int(d) for d in self.const(node, 1, "shape")]
        shape = x.onnx_shape()
        allowzero = int(a.get("allowzero", 0))
        if self.lead:
            if allowzero and 0 in target:
                raise self.error(node, "allowzero with a zero size gives an empty tensor")
            target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
            self.set_out(node, self._reshape_to(node, x, target))
            return
        if not target:
            raise self.error(node, "reshape to a scalar drops the batch axis")
        if not allowzero:
            target = [shape[i - 1] if (d == 0 and i > 0 and i - 1 < len(shape)) else d for i, d in enumerate(target)]
        first, rest = target[0], target[1:]
        if first == 0 and not allowzero:
            pass
        elif first == -1 and -1 not in rest and np.prod(rest) == np.prod(shape):
            pass
        elif self.batch is not None and first == self.batch and (-1 in rest or np.prod(rest) == np.prod(shape)):
            pass
        else:
            raise self.error(node, f"shape {target}: the first entry must keep the batch axis (0, -1 or the "
                                   "batch size); convnet layers never mix samples")
        if not rest:
            raise self.error(node, "reshape to (N,) drops the feature axis; convnet needs one")
        self.set_out(node, self._reshape_to(node, x, rest))

    def op_Transpose(self, node, a):
        x = self.var(node, 0)
        r = x.rank - self.lead
        self.set_out(node, self._transposed(node, x, list(a.get("perm", list(range(r))[::-1]))))

    def _transposed(self, node, x, p):
        """x transposed by the ONNX perm p: only the tensor's permutation changes."""
        if self.lead:
            p = [0] + [q + 1 for q in p]
        if p[0] != 0:
            raise self.error(node, f"perm {p} moves the batch axis; convnet keeps the batch first")
        inv = np.argsort(p)
        return _Value(x.sym, tuple(int(inv[q]) for q in x.perm))

    def op_Unsqueeze(self, node, a):
        x = self.var(node, 0)
        axes = a.get("axes")
        if axes is None:
            axes = self.const(node, 1, "axes")
        shape = list(x.onnx_shape())
        r = x.rank - self.lead + len(axes)
        axes = sorted(int(ax) % r + self.lead for ax in axes)
        if 0 in axes:
            raise self.error(node, "unsqueeze at axis 0 moves the batch axis")
        full = [None] + shape
        for ax in axes:
            full.insert(ax, 1)
        self.set_out(node, self._reshape_to(node, x, full[1:]))

    def op_Squeeze(self, node, a):
        x = self.var(node, 0)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        full = [None] + list(x.onnx_shape())
        if axes is None:
            axes = [i for i, d in enumerate(full) if d == 1]
        axes = {int(ax) % (x.rank - self.lead) + self.lead for ax in axes}
        if 0 in axes:
            raise self.error(node, "squeeze of axis 0 removes the batch axis")
        self.set_out(node, self._reshape_to(node, x, [d for i, d in enumerate(full) if i not in axes][1:]))

    def _binary(self, node, merge_cls, const_op, rconst_op=None):
        names = [n for n in node.input]
        variables = [n for n in names if n in self.values]
        constants = [n for n in names if n in self.consts]
        if len(variables) >= 2:
            vs = [self.values[n] for n in variables]
            shapes = {v.onnx_shape() for v in vs}
            if len(shapes) != 1:
                raise self.error(node, f"inputs of shapes {[v.onnx_shape() for v in vs]}: broadcasting between "
                                       "two computed tensors is not supported (same shapes only)")
            vs = [vs[0]] + [self.permute(v, vs[0].perm, node, f"_permute{i}") for i, v in enumerate(vs[1:], 1)]
            layer = merge_cls(name=self.layer_name(node), dtype=self.dtype)
            y = _Value(layer([v.sym for v in vs]), vs[0].perm)
            if constants:
                y = self._with_constant(node, y, const_op, constants, "_constant")
            self.set_out(node, y)
            return
        (var_name,) = variables
        x = self.values[var_name]
        first_is_var = names[0] == var_name
        op = const_op if first_is_var else (rconst_op or const_op)
        self.set_out(node, self._with_constant(node, x, op, constants, ""))

    def _with_constant(self, node, x, op, constants, suffix):
        c = self.consts[constants[0]]
        for extra in constants[1:]:
            c = c + self.consts[extra]
        return self._constant_op(node, x, op, c, suffix)

    def _constant_op(self, node, x, op, c, suffix=""):
        """x (op) c for a constant c broadcasting against x (ONNX's rule): ConstantOp."""
        c = np.asarray(c, dtype=np.float64)
        if c.ndim > x.rank:
            raise self.error(node, f"constant of shape {c.shape} has more axes than the tensor {x.onnx_shape()}")
        full = c.reshape((1,) * (x.rank - c.ndim) + c.shape)
        if full.shape[0] != 1:
            raise self.error(node, f"constant of shape {c.shape} varies along the batch axis")
        conv = full.transpose(x.perm)[0]
        try:
            layer = L.ConstantOp(op, conv, name=self.layer_name(node, suffix), dtype=self.dtype)
            y = layer(x.sym)
        except ValueError as exc:
            raise self.error(node, str(exc)) from exc
        return _Value(y, x.perm)

    def op_Add(self, node, a):
        self._binary(node, L.Add, "add")

    def op_Sum(self, node, a):
        if len(node.input) == 1:
            return self.op_Identity(node, a)
        self._binary(node, L.Add, "add")

    def op_Sub(self, node, a):
        self._binary(node, L.Subtract, "sub", "rsub")

    def op_Mul(self, node, a):
        self._binary(node, L.Multiply, "mul")

    def op_Div(self, node, a):
        self._binary(node, L.Divide, "div", "rdiv")

    def op_Abs(self, node, a):
        self.keep_layout(node, L.Abs(name=self.layer_name(node), dtype=self.dtype))

    def op_Concat(self, node, a):
        names = list(node.input)
        if any(n in self.consts for n in names):
            raise self.error(node, "concatenating a constant with computed tensors is not supported")
        vs = [self.var(node, i) for i in range(len(names))]
        axis = self.axis(a["axis"], vs[0], node)
        if len(vs) == 1:
            return self.op_Identity(node, a)
        vs = [vs[0]] + [self.permute(v, vs[0].perm, node, f"_permute{i}") for i, v in enumerate(vs[1:], 1)]
        layer = L.Concatenate(axis=vs[0].perm.index(axis), name=self.layer_name(node), dtype=self.dtype)
        self.set_out(node, _Value(layer([v.sym for v in vs]), vs[0].perm))

    def op_Pad(self, node, a):
        x = self.var(node, 0)
        mode = _decode(a.get("mode", "constant"))
        if self.opset < 11:
            pads, value = list(a["pads"]), float(a.get("value", 0.0))
        else:
            pads = [int(p) for p in self.const(node, 1, "pads")]
            cv = self.const(node, 2, "constant_value", required=False)
            value = 0.0 if cv is None or np.size(cv) == 0 else float(np.asarray(cv).reshape(-1)[0])
        r = x.rank - self.lead
        axes = list(range(r))
        if len(node.input) > 3 and node.input[3]:
            axes = [int(ax) % r for ax in self.const(node, 3, "axes")]
        axes = [ax + self.lead for ax in axes]
        r = x.rank
        per_axis = {ax: (0, 0) for ax in range(r)}
        k = len(axes)
        for j, ax in enumerate(axes):
            per_axis[ax] = (pads[j], pads[j + k])
        if per_axis[0] != (0, 0):
            raise self.error(node, "padding the batch axis is not supported")
        if any(v < 0 for pair in per_axis.values() for v in pair):
            raise self.error(node, f"negative pads {pads} (cropping) are not supported")
        if mode not in ("constant", "reflect", "edge"):
            raise self.error(node, f"mode {mode!r} is not supported (constant, reflect, edge)")
        conv_pads = [per_axis[x.perm[i]] for i in range(1, r)]
        layer = L.Pad(conv_pads, mode=mode, constant_value=value, name=self.layer_name(node), dtype=self.dtype)
        try:
            y = layer(x.sym)
        except ValueError as exc:
            raise self.error(node, str(exc)) from exc
        self.set_out(node, _Value(y, x.perm))

    def op_Clip(self, node, a):
        x = self.var(node, 0)
        if self.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            lo = self.const(node, 1, "min", required=False)
            hi = self.const(node, 2, "max", required=False)
        lo = None if lo is None or np.size(lo) == 0 else float(np.asarray(lo).reshape(-1)[0])
        hi = None if hi is None or np.size(hi) == 0 else float(np.asarray(hi).reshape(-1)[0])
        layer = L.Clip(lo, hi, name=self.layer_name(node), dtype=self.dtype)
        self.keep_layout(node, layer, x)

    def op_LRN(self, node, a):
        x = self.channels_last(self.var(node, 0), node)
        layer = L.LRN(int(a["size"]), alpha=float(a.get("alpha", 1e-4)), beta=float(a.get("beta", 0.75)),
                      bias=float(a.get("bias", 1.0)), name=self.layer_name(node), dtype=self.dtype)
        self.keep_layout(node, layer, x)


def _model_name(name):
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in (name or "onnx_model"))
    return cleaned or "onnx_model"


def from_proto(proto, known_inputs=None, batch=None, input_shapes=None, sample_axis=False):
    """A convnet Model from an onnx.ModelProto. known_inputs: {name: array} of graph
    inputs to treat as constants (weights, shapes: what convnet holds in layers);
    input_shapes: {name: shape} overriding the declared shapes of graph inputs
    (free sizes); batch: the batch size a Reshape may name explicitly.
    sample_axis=True reads every ONNX tensor X as one sample: the model takes
    X[None] (ONNX axis a is the model's axis a + 1), so operations along ONNX's
    axis 0 work; 2-D layers (Conv, pools) then need the usual form."""
    _check(proto)
    return _Importer(proto, known_inputs, batch, input_shapes, sample_axis).run()


def constant_outputs(proto, known_inputs=None):
    """The outputs of a graph that depends on no variable input (every graph input
    is an initializer or in known_inputs): a list of arrays, one per graph output,
    computed once by ONNX's reference evaluator, node by node, as the importer folds
    constant nodes. A convnet model needs an input, so such a graph has no model;
    convnet.onnx.backend answers with these values. OnnxImportError if an output
    needs a graph input that known_inputs does not give."""
    _check(proto)
    return _Importer(proto, known_inputs).constant_outputs()


def _check(proto):
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise OnnxImportError(f"ONNX model is not valid: {exc}") from exc


def load(path):
    """cn.onnx.load(path): the ONNX model at `path` as a convnet Model.

    Image inputs (N, C, H, W) become channels-last cn.Input((H, W, C)); 4-D outputs
    are (N, H, W, C). The model is ordinary: compile/fit it, save it, summary(),
    gradcheck. OnnxImportError names any node convnet cannot represent.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"cn.onnx.load: no file {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:       # protobuf's parse errors have no common public class
        raise OnnxImportError(f"cannot read ONNX file {path}: {exc}") from exc
    return from_proto(proto)
