"""cn.onnx.export: the exported graph passes onnx.checker and ONNX Runtime computes
the same outputs as convnet (within 1e-5 relative, float32) on the benchmark
workloads (docs/design.md), a residual graph and every exportable layer."""

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet import presets

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_ort(path, xs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), xs)}
    return sess.run(None, feeds)


def assert_matches(model, tmp_path, xs, rtol=1e-5, atol=1e-6):
    path = tmp_path / "model.onnx"
    cn.onnx.export(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    expected = model(xs if len(xs) > 1 else xs[0])
    expected = expected if isinstance(expected, list) else [expected]
    got = run_ort(path, xs)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        scale = np.abs(e).max()
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol * max(scale, 1.0))
    return path


def xray(seed=0):
    """W4 (docs/design.md) at a smaller 64x64 input: the same layers, faster."""
    return cn.Sequential([
        L.Conv2D(5, 5, strides=3, activation="relu"), L.MaxPooling2D(2), L.Dropout(0.1),
        L.Conv2D(3, 3, activation="relu"), L.MaxPooling2D(2), L.Dropout(0.2),
        L.Flatten(), L.Dense(3, activation="softmax")], input_shape=(64, 64, 1), seed=seed)


@pytest.mark.parametrize("name", ["fmnist-cnn", "cifar-vgg", "galaxy", "resnet-small"])
def test_workloads_match_onnx_runtime(tmp_path, rng, name):
    model = presets.build(name, seed=0)
    shape = model.input_shape
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    if name == "resnet-small":        # moving statistics away from (0, 1) so BN's export is exercised
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, np.array([0, 1, 2]), epochs=1, batch_size=3, verbose=0)
    assert_matches(model, tmp_path, [x])


def test_xray_softmax_model(tmp_path, rng):
    assert_matches(xray(), tmp_path, [rng.uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)])


def test_residual_graph_with_every_merge(tmp_path, rng):
    x = cn.Input((12, 10, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(4, 1, use_bias=False)(x)
    s = L.Add()([a, b])
    d = L.Subtract()([a, b])
    m = L.Multiply()([s, d])
    v = L.Average()([s, d, m])
    c = L.Concatenate()([v, L.ZeroPadding2D(((1, 0), (0, 1)))(L.Conv2D(2, 2)(x))])
    c = L.BatchNormalization()(c)
    u = L.UpSampling2D(2)(L.AveragePooling2D(2, padding="same")(c))
    g = L.GlobalAveragePooling2D()(u)
    out = L.Dense(5, activation="softmax")(L.Concatenate()([g, L.Flatten()(L.MaxPooling2D(3, strides=2)(c))]))
    model = cn.Model(x, [out, u], seed=1)
    assert_matches(model, tmp_path, [rng.standard_normal((2, 12, 10, 3)).astype(np.float32)])


def test_new_layers_export(tmp_path, rng):
    x = cn.Input((9, 8, 6))
    h = L.Conv2D(6, 3, padding=((1, 0), (2, 1)), dilation_rate=2, groups=3, activation="tanh")(x)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="sigmoid")(h)
    h = L.LRN(3, alpha=0.2, beta=0.75, bias=1.5)(h)
    h = L.Clip(0.1, 0.6)(h)
    h = L.ConstantOp("mul", rng.uniform(1, 2, (1, 1, 12)))(h)
    h = L.MaxPooling2D(3, strides=2, ceil_mode=True)(h)
    h = L.AveragePooling2D(3, strides=2, padding=((1, 1), (1, 0)), count_include_pad=True, ceil_mode=True)(h)
    h = L.Pad(((1, 1), (0, 1), (0, 0)), mode="reflect")(h)
    h = L.PReLU(alpha_initializer="glorot_uniform", shared_axes=[1, 2])(L.ELU(1.5)(L.LeakyReLU(0.1)(h)))
    h = L.Activation("softsign")(L.Activation("softplus")(L.Activation("selu")(L.Activation("elu")(h))))
    h = L.Divide()([h, L.ConstantOp("add", 1.0)(L.Abs()(h))])          # softsign by hand
    h = L.ConstantOp("rdiv", 2.0)(L.ConstantOp("add", 1.5)(h))
    h = L.Permute((3, 1, 2))(h)
    h = L.Reshape((-1,))(L.Identity()(h))
    model = cn.Model(x, L.LogSoftmax()(L.Dense(4)(h)), seed=2)
    assert_matches(model, tmp_path, [rng.standard_normal((2, 9, 8, 6)).astype(np.float32)])


def test_matmul_layers_export(tmp_path, rng):
    x, v = cn.Input((2, 3, 4)), cn.Input((3,))
    s = L.MatMul()([x, L.Permute((1, 3, 2))(x)])                 # (2, 3, 3): x @ x^T per sample
    h = L.MatMulWeight((3, 5))(s)                                 # (2, 3, 5)
    h = L.MatMulWeight((3,), side="left")(h)                      # (2, 5): a 1-D W is a row
    h = L.MatMulWeight((1, 5, 2))(h)                              # (1, 2, 2): the weight's stack leads
    dot = L.MatMulWeight((3,))(v)                                 # () per sample: (N,)
    model = cn.Model([x, v], [h, L.MatMul()([v, L.Reshape((3, 1))(v)]), dot], seed=4)
    assert model.outputs[2].shape == (None,)
    assert_matches(model, tmp_path, [rng.standard_normal((2, 2, 3, 4)).astype(np.float32),
                                     rng.standard_normal((2, 3)).astype(np.float32)])


def test_pooling_3d_export(tmp_path, rng):
    x = cn.Input((5, 6, 7, 2))
    h = L.MaxPooling3D(2, strides=1, padding=((1, 0), (0, 1), (1, 1)), dilation_rate=(2, 1, 1))(x)
    h = L.AveragePooling3D(3, strides=2, padding="same", count_include_pad=True, ceil_mode=True)(h)
    h = L.AveragePooling3D((1, 2, 2), strides=1, padding=((0, 0), (1, 0), (0, 1)))(h)
    model = cn.Model(x, [h, L.Dense(3)(L.Flatten()(h))], seed=5)
    assert_matches(model, tmp_path, [rng.standard_normal((2, 5, 6, 7, 2)).astype(np.float32)])


def test_export_bad_opset_and_unbuilt(tmp_path):
    with pytest.raises(ValueError, match="opset must be an int from 13"):
        cn.onnx.export(xray(), tmp_path / "m.onnx", opset=7)
    with pytest.raises(ValueError, match="not built"):
        cn.onnx.export(cn.Sequential([L.Dense(3)]), tmp_path / "m.onnx")


def test_cli_export(tmp_path, rng, capsys):
    from convnet import cli
    model = xray(seed=3)
    model.save(tmp_path / "model.npz")
    assert cli.main(["export", str(tmp_path / "model.npz"), str(tmp_path / "model.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    x = rng.uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(run_ort(tmp_path / "model.onnx", [x])[0], model(x), rtol=1e-5, atol=1e-6)
    assert cli.main(["export", str(tmp_path / "missing.npz"), str(tmp_path / "m.onnx")]) == 2
