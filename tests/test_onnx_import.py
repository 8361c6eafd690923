"""cn.onnx.load: the light zoo models the onnx package ships give their reference
outputs; an imported model is an ordinary convnet model (trains, saves, summary,
gradcheck); export -> import and import -> export are lossless; unsupported nodes
give one clear error."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import helper, numpy_helper  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def _load_roundtrip_benchmark():
    # benchmarks/onnx_roundtrip.py reports the numbers these tests assert; its
    # helpers (the light models' input, random weights) serve both
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "onnx_roundtrip.py")
    spec = importlib.util.spec_from_file_location("benchmarks_onnx_roundtrip", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_roundtrip = _load_roundtrip_benchmark()
light_input = _roundtrip.light_input
with_random_weights = _roundtrip.random_weights
# load + run above ~2 s on 2 cores (big Dense/Conv weights built from ConstantOfShape): slow
SLOW = {"bvlc_alexnet", "vgg19", "zfnet512", "inception_v1", "densenet121"}
LIGHT_MODELS = [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [])
                for name in ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                             "shufflenet", "squeezenet", "vgg19", "zfnet512")]


def to_onnx_layout(y):
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def nchw_to_nhwc(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def run_ort(path_or_proto, feeds):
    data = path_or_proto.SerializeToString() if hasattr(path_or_proto, "SerializeToString") else str(path_or_proto)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# Models whose last op is a softmax of mathematically equal logits too large for
# float32 to hold equal: light_squeezenet's constant weights give all 1000 logits
# about 9.5e9, where float32's spacing is 1024. A sum taken in another order (an
# AVX2 BLAS kernel rounds the last 8 of 1000 channels in its tail kernel) moves a
# logit by an ulp or two, and softmax turns those 2,048 units into probabilities
# 1/56 instead of 1/1000, although the logits agree with ONNX Runtime's to 2e-7.
# For these the test compares the softmax's input, with ONNX Runtime as reference.
SOFTMAX_OF_EQUAL_HUGE_LOGITS = {"squeezenet"}


def without_final_softmax(proto):
    """The model with its last node (a Softmax) removed: its output is the logits
    (a softmax keeps the shape, so the output's type stays as it is)."""
    last = proto.graph.node[-1]
    assert last.op_type == "Softmax" and last.output[0] == proto.graph.output[0].name
    proto.graph.node.pop()
    proto.graph.output[0].name = last.input[0]
    return proto


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_zoo_model_reference_output(name, tmp_path):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    proto = onnx.load(path)
    input_name, x = light_input(proto)
    if name in SOFTMAX_OF_EQUAL_HUGE_LOGITS:
        proto = without_final_softmax(proto)
        path = tmp_path / "logits.onnx"
        onnx.save(proto, path)
        ref = run_ort(proto, {input_name: x})[0]
    else:
        ref = numpy_helper.to_array(onnx.load_tensor(os.path.join(LIGHT, f"light_{name}_output_0.pb")))
    model = cn.onnx.load(path)
    y = to_onnx_layout(model(nchw_to_nhwc(x)))
    np.testing.assert_allclose(y, ref, rtol=1e-3, atol=1e-7)       # ONNX's model-test tolerances
    # import then export: ONNX Runtime gives the same outputs from both files
    cn.onnx.export(model, tmp_path / "again.onnx")
    again = run_ort(tmp_path / "again.onnx", {model.inputs[0].layer.name: nchw_to_nhwc(x)})[0]
    np.testing.assert_allclose(to_onnx_layout(again), y, rtol=1e-5, atol=1e-7)


def small_trained_model(seed=0):
    x = cn.Input((10, 9, 3))
    a = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    b = L.DepthwiseConv2D(3, padding="same", use_bias=False)(a)   # a bias before BN has no gradient
    h = L.BatchNormalization()(L.Add()([a, b]))
    h = L.MaxPooling2D(2)(h)
    h = L.Concatenate()([h, L.AveragePooling2D(2, strides=1, padding="same")(h)])
    out = L.Dense(4, activation="softmax")(L.Dropout(0.2)(L.Flatten()(h)))
    model = cn.Model(x, out, seed=seed)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((16, 10, 9, 3)).astype(np.float32)
    model.fit(xs, rng.integers(0, 4, 16), epochs=2, batch_size=8, verbose=0)
    return model, xs


def test_export_then_import_is_lossless(tmp_path):
    model, xs = small_trained_model()
    cn.onnx.export(model, tmp_path / "m.onnx")
    back = cn.onnx.load(tmp_path / "m.onnx")
    np.testing.assert_allclose(back(xs), model(xs), rtol=1e-5, atol=1e-6)
    # and once more through ONNX Runtime: the re-exported file computes the same
    cn.onnx.export(back, tmp_path / "m2.onnx")
    feeds = {back.inputs[0].layer.name: xs}
    np.testing.assert_allclose(run_ort(tmp_path / "m2.onnx", feeds)[0],
                               run_ort(tmp_path / "m.onnx", {model.inputs[0].layer.name: xs})[0],
                               rtol=1e-5, atol=1e-6)


def test_imported_model_trains_saves_summarizes_and_gradchecks(tmp_path, capsys):
    model, xs = small_trained_model(seed=1)
    cn.onnx.export(model, tmp_path / "m.onnx")
    m = cn.onnx.load(tmp_path / "m.onnx")
    m.summary()
    assert "Conv2D" in capsys.readouterr().out
    m.compile("adam", "sparse_categorical_crossentropy")
    y = np.arange(16) % 4
    before = m.evaluate(xs, y)
    m.fit(xs, y, epochs=8, batch_size=8, verbose=0)
    assert m.evaluate(xs, y) < before
    m.save(tmp_path / "m.npz")
    np.testing.assert_allclose(cn.load_model(tmp_path / "m.npz")(xs), m(xs), rtol=1e-6)
    report = cn.gradcheck(m, xs[:2], y[:2], max_checks=20)
    assert report.passed, str(report)


def test_image_input_is_channels_last(tmp_path):
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv0", pads=[1, 1, 1, 1])
    W = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 7])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 8, 7])],
                              [numpy_helper.from_array(W, "W")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(proto, tmp_path / "c.onnx")
    model = cn.onnx.load(tmp_path / "c.onnx")
    assert model.input_shape == (8, 7, 3) and model.output_shape == (8, 7, 4)
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 7)).astype(np.float32)
    expected = run_ort(proto, {"x": x})[0]
    np.testing.assert_allclose(to_onnx_layout(model(nchw_to_nhwc(x))), expected, rtol=1e-5, atol=1e-5)


def single_node_model(node, in_shape, out_shape, inits=()):
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, out_shape)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unsupported_operator_names_node_and_operator(tmp_path):
    proto = single_node_model(helper.make_node("Erf", ["x"], ["y"], name="erf_7"), [1, 4], [1, 4])
    onnx.save(proto, tmp_path / "e.onnx")
    with pytest.raises(cn.onnx.OnnxImportError, match=r"ONNX node 'erf_7' \(Erf\): operator Erf is not supported"):
        cn.onnx.load(tmp_path / "e.onnx")


def test_unsupported_attribute_names_it(tmp_path):
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool_3", kernel_shape=[2, 2], storage_order=1)
    proto = single_node_model(node, [1, 2, 4, 4], [1, 2, 3, 3])
    onnx.save(proto, tmp_path / "p.onnx")
    with pytest.raises(cn.onnx.OnnxImportError, match=r"'pool_3' \(MaxPool\): storage_order=1 is not supported"):
        cn.onnx.load(tmp_path / "p.onnx")


def test_missing_onnx_package_message():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import convnet as cn\n"
            "try:\n    cn.onnx\nexcept ImportError as e:\n    print('IMPORT-ERROR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "IMPORT-ERROR" in out.stdout and "pip install 'convnet[onnx]'" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("name", ["squeezenet", "resnet50", "shufflenet", "inception_v2"] + [
    pytest.param(name, marks=pytest.mark.slow) for name in ("inception_v1", "densenet121")])
def test_light_zoo_architecture_with_random_weights_matches_onnx_runtime(name, tmp_path):
    proto = with_random_weights(onnx.load(os.path.join(LIGHT, f"light_{name}.onnx")))
    onnx.save(proto, tmp_path / "m.onnx")
    iname, x = light_input(proto)
    x = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    expected = run_ort(tmp_path / "m.onnx", {iname: x})[0]
    model = cn.onnx.load(tmp_path / "m.onnx")
    y = to_onnx_layout(model(nchw_to_nhwc(x)))
    assert np.std(expected) > 1e-4          # not a uniform output: the weights matter
    np.testing.assert_allclose(y, expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


def test_backend_run_node_and_one_sample_mode():
    """convnet.onnx.backend directly: ONNX layouts in and out; a Concat along ONNX's
    axis 0 runs in the one-sample mode; a Conv reads axis 0 as the batch."""
    import convnet.onnx.backend as backend
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    (y,) = backend.run_node(helper.make_node("Concat", ["a", "b"], ["y"], axis=0), [a, b])
    np.testing.assert_array_equal(y, np.concatenate([a, b]))
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1], strides=[2, 1])
    (y,) = backend.run_node(node, [x, W])
    expected = run_ort(single_conv(node, x, W), {"x": x, "W": W})[0]
    assert y.shape == expected.shape == (2, 4, 3, 5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")


def single_conv(node, x, W):
    ins = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape),
           helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, W.shape)]
    out = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]
    return helper.make_model(helper.make_graph([node], "g", ins, out), opset_imports=[helper.make_opsetid("", 17)])


def test_matmul_on_sequences_is_a_1x1_conv(tmp_path):
    rng = np.random.default_rng(2)
    B = rng.standard_normal((5, 3)).astype(np.float32)
    node = helper.make_node("MatMul", ["x", "B"], ["y"], name="mm")
    proto = single_node_model(node, ["N", 4, 5], ["N", 4, 3], [numpy_helper.from_array(B, "B")])
    onnx.save(proto, tmp_path / "mm.onnx")
    model = cn.onnx.load(tmp_path / "mm.onnx")
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(model(x), x @ B, rtol=1e-5, atol=1e-6)
    (conv,) = [layer for layer in model.layers if isinstance(layer, L.Conv2D)]
    assert conv.kernel_size == (1, 1) and conv.filters == 3
    assert cn.gradcheck(conv, x.reshape(2, 4, 1, 5)).passed      # the layer trains as any Conv2D


def graph_model(nodes, inputs, outputs, inits=(), opset=17):
    """A model of `nodes`; inputs/outputs: {name: shape} (float32)."""
    vi = lambda name, shape: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph(nodes, "g", [vi(n, s) for n, s in inputs.items()],
                              [vi(n, s) for n, s in outputs.items()], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_prelu_before_opset_7_has_one_slope_per_channel():
    """PRelu-6 (what PyTorch's PReLU(num_parameters=C) exported): a (C,) slope scales
    channel c of (N, C, ...), not the last axis as broadcasting would."""
    from convnet.onnx.importer import from_proto
    slope = np.array([0.1, 0.5, 2.0], np.float32)
    proto = graph_model([helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")],
                        {"x": ["N", 3, 4, 5]}, {"y": ["N", 3, 4, 5]}, [numpy_helper.from_array(slope, "slope")],
                        opset=6)
    model = from_proto(proto)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    expected = np.where(x > 0, x, x * slope[None, :, None, None])
    np.testing.assert_allclose(to_onnx_layout(model(nchw_to_nhwc(x))), expected, rtol=1e-6)


def test_softsign_as_pytorch_exports_it():
    """x / (|x| + 1) as Abs, Add of a constant and Div of two computed tensors."""
    from convnet.onnx.importer import from_proto
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    nodes = [helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Add", ["a", "one"], ["d"]),
             helper.make_node("Div", ["x", "d"], ["y"], name="div")]
    proto = graph_model(nodes, {"x": ["N", 2, 5]}, {"y": ["N", 2, 5]}, [one])
    model = from_proto(proto)
    assert [type(layer).__name__ for layer in model.layers[1:]] == ["Abs", "ConstantOp", "Divide"]
    x = np.random.default_rng(1).standard_normal((3, 2, 5)).astype(np.float32)
    np.testing.assert_allclose(model(x), run_ort(proto, {"x": x})[0], rtol=1e-6)


def test_graph_of_constants():
    """Outputs that depend on no data input: the backend answers with the folded
    constants (there is no convnet model to build); cn.onnx.load refuses clearly."""
    import convnet.onnx.backend as backend
    from convnet.onnx.importer import constant_outputs
    value = helper.make_tensor("value", onnx.TensorProto.FLOAT, [1], [2.5])
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"], value=value)
    (y,) = backend.run_node(node, [np.array([2, 3], np.int64)])
    np.testing.assert_array_equal(y, np.full((2, 3), 2.5, np.float32))
    # a float input that no output reads changes nothing
    shape = numpy_helper.from_array(np.array([4], np.int64), "shape")
    proto = graph_model([node, helper.make_node("Relu", ["x"], ["unused"])], {"x": [2, 3]}, {"y": [4]}, [shape])
    (y,) = backend.prepare(proto).run([np.ones((2, 3), np.float32)])
    np.testing.assert_array_equal(y, np.full(4, 2.5, np.float32))
    np.testing.assert_array_equal(constant_outputs(proto)[0], y)
    with pytest.raises(cn.onnx.OnnxImportError, match="output 'y' is a constant"):
        from convnet.onnx.importer import from_proto
        from_proto(proto)
    relu = graph_model([helper.make_node("Relu", ["x"], ["y"])], {"x": [2, 3]}, {"y": [2, 3]})
    with pytest.raises(cn.onnx.OnnxImportError, match=r"outputs \['y'\] depend on variable inputs"):
        constant_outputs(relu)


def test_matmul_general_forms_match_onnx_runtime():
    """MatMul of two computed tensors (an attention score q @ k^T), of a constant A
    on the left, and of a batched constant B: MatMul / MatMulWeight layers."""
    from convnet.onnx.importer import from_proto
    rng = np.random.default_rng(3)
    A = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "A")
    Bs = numpy_helper.from_array(rng.standard_normal((1, 2, 5, 4)).astype(np.float32), "Bs")
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["x", "xt"], ["scores"], name="qk"),          # (N, 2, 4, 4)
             helper.make_node("MatMul", ["A", "scores"], ["left"], name="left"),      # (N, 2, 3, 4)
             helper.make_node("MatMul", ["x", "Bs"], ["y"], name="batched")]          # (N, 2, 4, 4)
    proto = graph_model(nodes, {"x": ["N", 2, 4, 5]}, {"left": ["N", 2, 3, 4], "y": ["N", 2, 4, 4]}, [A, Bs])
    model = from_proto(proto, input_shapes={"x": (2, 2, 4, 5)})
    assert {"MatMul", "MatMulWeight"} <= {type(layer).__name__ for layer in model.layers}
    x = rng.standard_normal((2, 2, 4, 5)).astype(np.float32)
    for got, expected in zip(model(nchw_to_nhwc(x)), run_ort(proto, {"x": x})):
        np.testing.assert_allclose(to_onnx_layout(got), expected, rtol=1e-5, atol=1e-5)


def test_batch_axis_limits_of_gemm_and_matmul_name_the_node():
    """With ONNX's axis 0 as the batch, a per-sample Gemm bias or a constant that
    varies along the batch axis cannot be a layer's weight: a clear error (the
    backend then runs the graph in its one-sample mode)."""
    from convnet.onnx.importer import from_proto
    C = numpy_helper.from_array(np.ones((3, 4), np.float32), "C")
    B = numpy_helper.from_array(np.ones((6, 4), np.float32), "B")
    proto = graph_model([helper.make_node("Gemm", ["x", "B", "C"], ["y"], name="fc")], {"x": [3, 6]}, {"y": [3, 4]},
                        [B, C])
    with pytest.raises(cn.onnx.OnnxImportError, match=r"'fc' \(Gemm\): C of shape \(3, 4\) varies along the batch"):
        from_proto(proto)
    B3 = numpy_helper.from_array(np.ones((2, 4, 3), np.float32), "B3")
    proto = graph_model([helper.make_node("MatMul", ["x", "B3"], ["y"], name="mm")], {"x": [2, 3, 4]},
                        {"y": [2, 3, 3]}, [B3])
    with pytest.raises(cn.onnx.OnnxImportError, match=r"'mm' \(MatMul\): a constant of shape \(2, 4, 3\)"):
        from_proto(proto)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 2, 3], strides=[2, 1, 2], pads=[1, 0, 1, 0, 1, 2], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[2, 2, 2], dilations=[2, 1, 2], pads=[1, 0, 0, 0, 1, 1])),
    # (auto_pad with dilations is left out: ONNX Runtime sizes SAME padding without the dilation)
    ("AveragePool", dict(kernel_shape=[2, 3, 2], strides=[2, 2, 1], auto_pad="SAME_LOWER", count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3, 2], strides=[2, 2, 1], pads=[1, 2, 0, 1, 0, 1], ceil_mode=1,
                         count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[2, 3, 2], strides=[1, 2, 2], dilations=[2, 1, 2], pads=[1, 1, 0, 0, 1, 1]))])
def test_3d_pooling_matches_onnx_runtime(op, attrs):
    """MaxPool/AveragePool on (N, C, D, H, W): MaxPooling3D/AveragePooling3D behind a
    Permute to channels-last, pads/ceil_mode/count_include_pad/dilations as ONNX's."""
    from convnet.onnx.importer import from_proto
    proto = graph_model([helper.make_node(op, ["x"], ["y"], name="pool", **attrs)], {"x": ["N", 2, 6, 7, 8]},
                        {"y": ["N", 2, "D", "H", "W"]}, opset=19)
    model = from_proto(proto, input_shapes={"x": (2, 2, 6, 7, 8)})
    assert any(type(layer).__name__.endswith("Pooling3D") for layer in model.layers)
    x = np.random.default_rng(4).standard_normal((2, 2, 6, 7, 8)).astype(np.float32)
    expected = run_ort(proto, {"x": x})[0]
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-6)
