"""How exactly convnet.onnx imports and exports: the numbers docs/onnx.md reports.

    python benchmarks/onnx_roundtrip.py              # the nine light zoo models + three convnet models
    python benchmarks/onnx_roundtrip.py --quick      # squeezenet and fmnist-cnn only

For each light zoo model the onnx package ships (onnx/backend/test/data/light/):
  - convnet's output for ONNX's input arange(n)/n against the shipped reference;
  - with every ConstantOfShape weight replaced by random values (the shipped ones
    are constants, so their outputs are near uniform): convnet against ONNX Runtime
    on a random input, then the imported model exported again and run in ONNX
    Runtime against the original file.
For convnet's own workloads: ONNX Runtime on the exported file against convnet, and
export -> cn.onnx.load against the original. Needs onnx and onnxruntime.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

try:
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
except ImportError:
    print("onnx_roundtrip.py needs onnx and onnxruntime: pip install 'convnet[onnx]'")
    sys.exit(0)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import convnet as cn  # noqa: E402
from convnet import presets  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
          "squeezenet", "vgg19", "zfnet512")


def light_input(proto):
    """(name, array) of the input ONNX's runner feeds a light model: arange / size (float32)."""
    inits = {i.name for i in proto.graph.initializer}
    vi = next(i for i in proto.graph.input if i.name not in inits)
    shape = tuple(d.dim_value or 1 for d in vi.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return vi.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


def random_weights(proto, seed=0):
    """The light model with its ConstantOfShape weights replaced by random initializers
    (matrices and kernels ~ U(-1, 1) / sqrt(fan-in), vectors ~ U(0.5, 1.5), so BN
    variances stay positive): the outputs then depend on every weight. Also used by
    tests/test_onnx_import.py."""
    rng = np.random.default_rng(seed)
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    keep = []
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(d) for d in inits[node.input[0]])
            w = (rng.uniform(-1, 1, shape) / np.sqrt(max(int(np.prod(shape[1:])), 1)) if len(shape) >= 2
                 else rng.uniform(0.5, 1.5, shape))
            model.graph.initializer.append(numpy_helper.from_array(w.astype(np.float32), node.output[0]))
            # this IR version lists every initializer among the graph inputs too
            model.graph.input.append(helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, shape))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def ort_run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(y):
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="convnet-onnx-")
    print(f"{'model':14s} {'vs reference':>13s} {'random w: vs ORT':>17s} {'(rel)':>9s} {'re-export':>10s}")
    for name in (("squeezenet",) if args.quick else MODELS):
        path = os.path.join(LIGHT, f"light_{name}.onnx")
        proto = onnx.load(path)
        iname, x = light_input(proto)
        ref = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
        ref_err = np.abs(nchw(cn.onnx.load(path)(nhwc(x))) - ref).max()
        rand = os.path.join(tmp, f"{name}.onnx")
        onnx.save(random_weights(proto), rand)
        xr = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
        expected = ort_run(rand, {iname: xr})
        model = cn.onnx.load(rand)
        got = nchw(model(nhwc(xr)))
        again = os.path.join(tmp, f"{name}_again.onnx")
        cn.onnx.export(model, again)
        re_err = np.abs(nchw(ort_run(again, {model.inputs[0].layer.name: nhwc(xr)})) - expected).max()
        err = np.abs(got - expected).max()
        print(f"{name:14s} {ref_err:13.2e} {err:17.2e} {err / np.abs(expected).max():9.2e} {re_err:10.2e}")
    print()
    rng = np.random.default_rng(0)
    for preset in (("fmnist-cnn",) if args.quick else ("fmnist-cnn", "cifar-vgg", "resnet-small")):
        model = presets.build(preset, seed=0)
        xs = rng.standard_normal((8, *model.input_shape)).astype(np.float32)
        out = os.path.join(tmp, f"{preset}.onnx")
        cn.onnx.export(model, out)
        expected = model(xs)
        got = ort_run(out, {model.inputs[0].layer.name: xs})
        back = cn.onnx.load(out)(xs)
        print(f"{preset:14s} export: ONNX Runtime vs convnet max rel err "
              f"{np.abs(got - expected).max() / np.abs(expected).max():.2e}; export -> load max abs diff "
              f"{np.abs(back - expected).max():.2e}")


if __name__ == "__main__":
    main()
