"""convnet model -> ONNX graph.

The exported graph takes convnet's input, (N, H, W, C) for images, and computes
model(x) (inference: Dropout is the identity, BatchNormalization uses its moving
statistics). Inside, image tensors are NCHW so every layer maps to ONNX's own
operator: one Transpose (0, 3, 1, 2) after each image input, one (0, 2, 3, 1) before
each image output, and the weights converted to ONNX's layouts:

    Conv2D W (kh, kw, C/g, F)        -> Conv W (F, C/g, kh, kw)
    DepthwiseConv2D W (kh, kw, C, M) -> Conv W (C*M, 1, kh, kw), group = C
    Dense W (in, out)                -> Gemm B (in, out)
    padding "same"/int/explicit      -> pads [top, left, bottom, right] (computed
                                        for the model's fixed image size)

Layers that read the memory order (Flatten, Reshape, Permute) see convnet's
channels-last order: their input is transposed back to NHWC first, so a Flatten
feeds a Dense the same vector as in convnet. Volumes (N, D, H, W, C) stay
channels-last; a 3-D pool transposes to ONNX's (N, C, D, H, W) and back around
itself. MatMul/MatMulWeight reshape their operands so ONNX's whole-tensor MatMul
pairs sample n with sample n.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..arrays import to_host
from ..layers import (
    ELU,
    LRN,
    Abs,
    Activation,
    Add,
    Average,
    AveragePooling2D,
    AveragePooling3D,
    BatchNormalization,
    Clip,
    Concatenate,
    ConstantOp,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Divide,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    Identity,
    InputLayer,
    LeakyReLU,
    LogSoftmax,
    MatMul,
    MatMulWeight,
    MaxPooling2D,
    MaxPooling3D,
    Multiply,
    Pad,
    Permute,
    PReLU,
    Rescaling,
    Reshape,
    Subtract,
    UpSampling2D,
    ZeroPadding2D,
)
from ..layers.matmul import matmul_shapes

__all__ = ["export", "DEFAULT_OPSET", "MIN_OPSET"]

LAYOUT_KEY = "convnet.io_layout"
DEFAULT_OPSET = 17
MIN_OPSET = 13          # Softmax over one axis, Pad/Clip/Resize with input operands

_ELEM_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE,
               np.dtype(np.float16): TensorProto.FLOAT16}
_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)


class _Writer:
    """Collects nodes and initializers; tracks which tensors are NCHW images."""

    def __init__(self, dtype):
        self.nodes, self.inits = [], []
        self.dtype = np.dtype(dtype)
        self.nchw = {}          # ONNX tensor name -> True when it holds an NCHW image
        self._count = 0

    def fresh(self, hint):
        self._count += 1
        return f"{hint}__{self._count}"

    def const(self, value, hint, dtype=None):
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype or self.dtype), name))
        return name

    def ints(self, value, hint):
        return self.const(np.asarray(value, dtype=np.int64), hint, dtype=np.int64)

    def node(self, op, inputs, hint, nchw, **attrs):
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        self.nchw[out] = nchw
        return out

    def as_nchw(self, name, hint):
        """An image tensor in ONNX's NCHW order (for Conv, pools, BatchNormalization, ...)."""
        if self.nchw.get(name):
            return name
        return self.node("Transpose", [name], f"{hint}_to_nchw", True, perm=list(_TO_NCHW))

    def as_nhwc(self, name, hint):
        """The tensor in convnet's own (channels-last) order."""
        if not self.nchw.get(name):
            return name
        return self.node("Transpose", [name], f"{hint}_to_nhwc", False, perm=list(_TO_NHWC))


def _pads(layer, shape):
    """ONNX pads [top, left, bottom, right] of a windowed layer for input shape (H, W, C)."""
    _, ((t, b), (left, r)) = layer._geometry(shape[0], shape[1])
    return [int(t), int(left), int(b), int(r)]


def _activation(w, name, activation, nchw, hint):
    if activation is None:
        return name
    if activation == "relu":
        return w.node("Relu", [name], hint + "_relu", nchw)
    if activation == "sigmoid":
        return w.node("Sigmoid", [name], hint + "_sigmoid", nchw)
    if activation == "tanh":
        return w.node("Tanh", [name], hint + "_tanh", nchw)
    if activation == "softmax":
        return w.node("Softmax", [name], hint + "_softmax", nchw, axis=1 if nchw else -1)
    if activation in ("elu", "selu", "softplus", "softsign"):
        op = {"elu": "Elu", "selu": "Selu", "softplus": "Softplus", "softsign": "Softsign"}[activation]
        return w.node(op, [name], f"{hint}_{activation}", nchw)
    raise ValueError(f"export: activation {activation!r} has no ONNX form here")


def _host(a, dtype):
    return np.asarray(to_host(a), dtype=dtype)


def _layer(w, layer, ins, in_shapes):
    """ONNX nodes for one call of `layer` on ONNX tensors `ins`; returns the output name."""
    hint = layer.name
    dt = w.dtype
    x = ins[0]
    image_layers = (Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, ZeroPadding2D, UpSampling2D,
                    LRN, BatchNormalization)
    if isinstance(layer, image_layers) and len(in_shapes[0]) == 3:
        x = ins[0] = w.as_nchw(x, hint)
    nchw = w.nchw.get(x, False)
    p = {k: _host(v, dt) for k, v in layer.params.items()}
    s = {k: _host(v, dt) for k, v in layer.state.items()}
    if isinstance(layer, Conv2D):          # DepthwiseConv2D too
        if isinstance(layer, DepthwiseConv2D):
            kh, kw, c, m = p["W"].shape
            W = p["W"].reshape(kh, kw, 1, c * m)
        else:
            W = p["W"]
        args = [x, w.const(W.transpose(3, 2, 0, 1), hint + "_W")]
        if layer.use_bias:
            args.append(w.const(p["b"], hint + "_b"))
        y = w.node("Conv", args, hint, True, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                   pads=_pads(layer, in_shapes[0]), dilations=list(layer.dilation_rate), group=layer.groups)
        return _activation(w, y, layer.activation, True, hint)
    if isinstance(layer, Dense):
        args = [x, w.const(p["W"], hint + "_W")]
        if layer.use_bias:
            args.append(w.const(p["b"], hint + "_b"))
        y = w.node("Gemm", args, hint, False)
        return _activation(w, y, layer.activation, False, hint)
    if isinstance(layer, (Flatten,)):
        return w.node("Flatten", [w.as_nhwc(x, hint)], hint, False, axis=1)
    if isinstance(layer, Reshape):
        shape = w.ints([0, *layer.target_shape], hint + "_shape")
        return w.node("Reshape", [w.as_nhwc(x, hint), shape], hint, False)
    if isinstance(layer, Permute):
        return w.node("Transpose", [w.as_nhwc(x, hint)], hint, False, perm=[0, *layer.dims])
    if isinstance(layer, (Dropout, Identity)):
        return w.node("Identity", [x], hint, nchw)
    if isinstance(layer, Activation):          # ReLU, Softmax
        return _activation(w, w.node("Identity", [x], hint, nchw), layer.activation, nchw, hint)
    if isinstance(layer, Rescaling):
        y = w.node("Mul", [x, w.const(layer.scale, hint + "_scale")], hint, nchw)
        return w.node("Add", [y, w.const(layer.offset, hint + "_offset")], hint + "_offset", nchw)
    if isinstance(layer, BatchNormalization):
        c = in_shapes[0][-1]
        gamma = p.get("gamma", np.ones(c, dt))
        beta = p.get("beta", np.zeros(c, dt))
        if not nchw:      # BN normalizes axis 1 in ONNX; convnet the last axis
            if len(in_shapes[0]) != 1:
                raise ValueError(f"export: {layer.describe()} on inputs of shape {in_shapes[0]} has no ONNX form")
        args = [x] + [w.const(a, hint + k) for a, k in ((gamma, "_scale"), (beta, "_B"),
                                                        (s["moving_mean"], "_mean"), (s["moving_variance"], "_var"))]
        return w.node("BatchNormalization", args, hint, nchw, epsilon=float(layer.epsilon))
    if isinstance(layer, (MaxPooling2D, AveragePooling2D)):
        attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                     pads=_pads(layer if not layer.ceil_mode else _declared(layer), in_shapes[0]),
                     ceil_mode=int(layer.ceil_mode))
        if layer.dilation_rate != (1, 1):
            attrs["dilations"] = list(layer.dilation_rate)
        if isinstance(layer, MaxPooling2D):
            return w.node("MaxPool", [x], hint, True, **attrs)
        return w.node("AveragePool", [x], hint, True, count_include_pad=int(layer.count_include_pad), **attrs)
    if isinstance(layer, (MaxPooling3D, AveragePooling3D)):
        return _pool3d(w, layer, x, in_shapes[0])
    if isinstance(layer, GlobalAveragePooling2D):
        y = w.node("GlobalAveragePool", [x], hint, True)
        return y if layer.keepdims else w.node("Flatten", [y], hint + "_flatten", False, axis=1)
    if isinstance(layer, (Add, Subtract, Multiply, Divide, Average)):
        ins = _same_layout(w, ins, hint)
        nchw = w.nchw.get(ins[0], False)
        if isinstance(layer, Average):
            total = w.node("Sum", ins, hint + "_sum", nchw)
            return w.node("Mul", [total, w.const(1.0 / len(ins), hint + "_n")], hint, nchw)
        op = {Add: "Sum", Subtract: "Sub", Multiply: "Mul", Divide: "Div"}[type(layer)]
        if op == "Mul" and len(ins) > 2:
            y = ins[0]
            for other in ins[1:]:
                y = w.node("Mul", [y, other], hint, nchw)
            return y
        return w.node(op, ins, hint, nchw)
    if isinstance(layer, Concatenate):
        ins = _same_layout(w, ins, hint)
        nchw = w.nchw.get(ins[0], False)
        rank = len(in_shapes[0]) + 1
        axis = layer.axis if layer.axis > 0 else rank + layer.axis
        if nchw:
            axis = _TO_NHWC[axis]
        return w.node("Concat", ins, hint, nchw, axis=int(axis))
    if isinstance(layer, ZeroPadding2D):
        (t, b), (left, r) = layer.padding
        pads = w.ints([0, 0, t, left, 0, 0, b, r], hint + "_pads")
        return w.node("Pad", [x, pads], hint, True, mode="constant")
    if isinstance(layer, Pad):
        x = w.as_nhwc(x, hint)
        before = [0] + [pp[0] for pp in layer.pads]
        after = [0] + [pp[1] for pp in layer.pads]
        mode = layer.mode
        args = [x, w.ints(before + after, hint + "_pads")]
        if mode == "constant":
            args.append(w.const(layer.constant_value, hint + "_value"))
        return w.node("Pad", args, hint, False, mode=mode)
    if isinstance(layer, UpSampling2D):
        scales = w.const(np.array([1, 1, *layer.size], dtype=np.float32), hint + "_scales", dtype=np.float32)
        return w.node("Resize", [x, "", scales], hint, True, mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    if isinstance(layer, Clip):
        lo = "" if layer.min_value is None else w.const(layer.min_value, hint + "_min")
        hi = "" if layer.max_value is None else w.const(layer.max_value, hint + "_max")
        return w.node("Clip", [x, lo, hi], hint, nchw)
    if isinstance(layer, LRN):
        if not nchw:
            raise ValueError(f"export: {layer.describe()} needs image inputs (N, H, W, C) for ONNX's LRN")
        return w.node("LRN", [x], hint, True, size=layer.size, alpha=float(layer.alpha),
                      beta=float(layer.beta), bias=float(layer.bias))
    if isinstance(layer, Abs):
        return w.node("Abs", [x], hint, nchw)
    if isinstance(layer, ELU):
        return w.node("Elu", [x], hint, nchw, alpha=float(layer.alpha))
    if isinstance(layer, LeakyReLU):
        return w.node("LeakyRelu", [x], hint, nchw, alpha=float(layer.negative_slope))
    if isinstance(layer, PReLU):
        alpha = p["alpha"]
        if nchw:
            alpha = alpha.transpose(2, 0, 1)
        return w.node("PRelu", [x, w.const(alpha, hint + "_slope")], hint, nchw)
    if isinstance(layer, LogSoftmax):
        return w.node("LogSoftmax", [x], hint, nchw, axis=1 if nchw else -1)
    if isinstance(layer, (MatMul, MatMulWeight)):
        return _matmul(w, layer, ins, in_shapes, p)
    if isinstance(layer, ConstantOp):
        c = s["constant"]
        if nchw:           # the constant broadcasts against (H, W, C): give it that rank, then CHW
            c = c.reshape((1,) * (3 - c.ndim) + c.shape).transpose(2, 0, 1)
        c = w.const(c, hint + "_constant")
        op, args = {"add": ("Add", [x, c]), "mul": ("Mul", [x, c]), "sub": ("Sub", [x, c]),
                    "rsub": ("Sub", [c, x]), "div": ("Div", [x, c]), "rdiv": ("Div", [c, x])}[layer.op]
        return w.node(op, args, hint, nchw)
    raise ValueError(f"export: {layer.describe()} has no ONNX form in convnet.onnx.export "
                     f"(supported: see docs/onnx.md)")


def _matmul(w, layer, ins, in_shapes, p):
    """ONNX's MatMul of a per-sample product. ONNX multiplies whole tensors, so each
    operand is first reshaped to its stack of matrices with the batch in front,
    (N, *stack) (a weight: the constant (1, *stack)): numpy's rule then pairs sample
    n with sample n; a Reshape drops the axes a 1-D operand added."""
    hint = layer.name

    def stacked(name, shape, stack):
        if tuple(shape) == tuple(stack):
            return name
        return w.node("Reshape", [name, w.ints([0, *stack], hint + "_stack_shape")], hint + "_stack", False)

    if isinstance(layer, MatMul):
        a_shape, b_shape = in_shapes
        a_stack, b_stack, y_stack, y_shape = matmul_shapes(a_shape, b_shape)
        a = stacked(w.as_nhwc(ins[0], hint), a_shape, a_stack)
        b = stacked(w.as_nhwc(ins[1], hint), b_shape, b_stack)
    else:
        a_shape, b_shape = layer._operand_shapes(in_shapes[0])
        a_stack, b_stack, y_stack, y_shape = matmul_shapes(a_shape, b_shape)
        x = w.as_nhwc(ins[0], hint)
        if layer.side == "right":
            a, b = stacked(x, a_shape, a_stack), w.const(p["W"].reshape(1, *b_stack), hint + "_W")
        else:
            a, b = w.const(p["W"].reshape(1, *a_stack), hint + "_W"), stacked(x, b_shape, b_stack)
    y = w.node("MatMul", [a, b], hint, False)
    if tuple(y_stack) != tuple(y_shape):
        y = w.node("Reshape", [y, w.ints([0, *y_shape], hint + "_shape")], hint + "_unstack", False)
    return y


def _pool3d(w, layer, x, shape):
    """A 3-D pool of a volume (N, D, H, W, C). ONNX pools (N, C, D, H, W): the volume
    is transposed there and back around the pool (5-D tensors otherwise stay in
    convnet's channels-last order). The pads are the declared ones: with ceil_mode
    ONNX adds the extra end planes itself."""
    hint = layer.name
    x = w.node("Transpose", [w.as_nhwc(x, hint)], hint + "_to_ncdhw", False, perm=[0, 4, 1, 2, 3])
    _, declared = layer._geometry(shape[:3], ceil_mode=False)
    attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides),
                 pads=[int(b) for b, _ in declared] + [int(a) for _, a in declared], ceil_mode=int(layer.ceil_mode))
    if layer.dilation_rate != (1, 1, 1):
        attrs["dilations"] = list(layer.dilation_rate)
    if isinstance(layer, MaxPooling3D):
        y = w.node("MaxPool", [x], hint, False, **attrs)
    else:
        y = w.node("AveragePool", [x], hint, False, count_include_pad=int(layer.count_include_pad), **attrs)
    return w.node("Transpose", [y], hint + "_to_ndhwc", False, perm=[0, 2, 3, 4, 1])


def _declared(layer):
    """A twin of a ceil_mode pooling layer without ceil_mode: its pads are the declared
    ones (ONNX adds the ceil rows itself)."""
    twin = type(layer).from_config({**layer.get_config(), "ceil_mode": False})
    return twin


def _same_layout(w, ins, hint):
    """Merge inputs in one layout: NCHW only when all of them are."""
    if all(w.nchw.get(t) for t in ins):
        return list(ins)
    return [w.as_nhwc(t, hint) for t in ins]


def export(model, path, opset=None):
    """Write `model` (Sequential or graph) to `path` as ONNX; returns the ModelProto.

    The graph's inputs are convnet's, (N, H, W, C) for images (N free), and it
    computes model(x) in inference mode. opset: the ONNX opset (default 17, at
    least 13). The file passes onnx.checker.check_model.
    """
    if not getattr(model, "built", False) or getattr(model, "graph", None) is None:
        raise ValueError("export: the model is not built; build it (give an input shape) before exporting")
    opset = DEFAULT_OPSET if opset is None else opset
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export: opset must be an int from {MIN_OPSET} to {newest}, got {opset!r}")
    dtypes = {np.dtype(layer.dtype) for layer in model.layers if layer.dtype is not None}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _ELEM_TYPES:
        raise ValueError(f"export: every layer must have one float dtype (float16/32/64), "
                         f"got {sorted(map(str, dtypes))}")
    dtype = next(iter(dtypes))
    elem = _ELEM_TYPES[dtype]
    w = _Writer(dtype)
    names = {}               # id(SymbolicTensor) -> ONNX name
    inputs, outputs = [], []
    for t in model.inputs:
        name = t.layer.name
        inputs.append(helper.make_tensor_value_info(name, elem, ["N", *t.shape[1:]]))
        w.nchw[name] = False
        if len(t.shape) == 4:
            names[id(t)] = w.node("Transpose", [name], name + "_to_nchw", True, perm=list(_TO_NCHW))
        else:
            names[id(t)] = name
    for node in model.graph.nodes:
        if isinstance(node.layer, InputLayer):
            continue
        ins = [names[id(t)] for t in node.inputs]
        shapes = [tuple(t.shape[1:]) for t in node.inputs]
        names[id(node.outputs[0])] = _layer(w, node.layer, ins, shapes)
    for i, t in enumerate(model.outputs):
        final = w.as_nhwc(names[id(t)], f"output_{i}")
        out_name = f"output_{i}" if len(model.outputs) > 1 else "output"
        w.nodes.append(helper.make_node("Identity", [final], [out_name], name=out_name))
        outputs.append(helper.make_tensor_value_info(out_name, elem, ["N", *t.shape[1:]]))
    graph = helper.make_graph(w.nodes, model.name, inputs, outputs, w.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="convnet", producer_version=_version())
    # tells cn.onnx.load that the 4-D inputs/outputs are already channels-last, so a
    # model exported and imported again takes the same (N, H, W, C) arrays
    helper.set_model_props(proto, {LAYOUT_KEY: "channels_last"})
    onnx.checker.check_model(proto, full_check=True)
    path = str(path)
    tmp = path + ".tmp"
    onnx.save(proto, tmp)
    import os
    os.replace(tmp, path)
    return proto


def _version():
    from .. import __version__
    return __version__
