"""The layers ONNX import needs (convnet/layers/shape_ops.py, elementwise.py, the
grouped/dilated Conv2D, DepthwiseConv2D, pooling with explicit pads, ceil_mode and
count_include_pad): forward against a plain numpy formula, backward by gradcheck
on every backend."""

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet.layers.conv import conv2d_naive


def check(layer, x, **kwargs):
    report = cn.gradcheck(layer, x, max_checks=60, **kwargs)
    assert report.passed, str(report)
    return report


def dense_kernel(W, groups, dilation):
    """The ordinary (kh_eff, kw_eff, C, F) kernel equal to a grouped, dilated one:
    zeros between the taps and outside each group's block of channels."""
    kh, kw, cg, f = W.shape
    dh, dw = dilation
    fg = f // groups
    full = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1, cg * groups, f))
    for g in range(groups):
        full[::dh, ::dw, g * cg:(g + 1) * cg, g * fg:(g + 1) * fg] = W[..., g * fg:(g + 1) * fg]
    return full


@pytest.mark.parametrize("groups,dilation,padding,strides", [
    (1, (2, 2), "valid", (1, 1)), (3, (1, 1), ((1, 0), (2, 1)), (1, 2)), (2, (2, 1), "same", (2, 1)),
    (6, (1, 2), 1, (1, 1))])
def test_grouped_dilated_conv_matches_dense_equivalent(backend, rng, groups, dilation, padding, strides):
    x = rng.standard_normal((2, 9, 10, 6))
    layer = L.Conv2D(6, 3, strides=strides, padding=padding, dilation_rate=dilation, groups=groups,
                     dtype="float64", seed=0)
    y = cn.get_ops().to_numpy(layer(x))
    W = cn.get_ops().to_numpy(layer.params["W"])
    _, pads = layer._geometry(9, 10)
    expected = conv2d_naive(x, dense_kernel(W, groups, dilation), cn.get_ops().to_numpy(layer.params["b"]),
                            strides=strides, padding=pads)
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
    check(layer, x[:, :7, :7])


def test_depthwise_conv_is_grouped_conv(backend, rng):
    x = rng.standard_normal((2, 6, 7, 3))
    dw = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", dtype="float64", seed=0)
    y = cn.get_ops().to_numpy(dw(x))
    assert y.shape == (2, 6, 7, 6)
    W = cn.get_ops().to_numpy(dw.params["W"])          # (3, 3, C=3, M=2): output channel c*M + m
    for c in range(3):
        for m in range(2):
            ref = conv2d_naive(x[..., c:c + 1], W[:, :, c:c + 1, m:m + 1], padding="same")[..., 0]
            np.testing.assert_allclose(y[..., c * 2 + m], ref + cn.get_ops().to_numpy(dw.params["b"])[c * 2 + m],
                                       rtol=1e-10, atol=1e-12)
    check(dw, x)
    twin = L.DepthwiseConv2D.from_config(dw.get_config())
    assert twin.get_config() == dw.get_config()


def test_conv_groups_errors():
    with pytest.raises(ValueError, match="filters .5. must be a multiple of groups .2."):
        L.Conv2D(5, 3, groups=2)
    with pytest.raises(ValueError, match="input channels .3. must be a multiple of groups .2."):
        L.Conv2D(4, 3, groups=2).build((8, 8, 3))


def pool_reference(x, k, s, pads, ceil_mode, kind, count_include_pad=False):
    """Windows by explicit loops (ONNX's definition)."""
    n, h, w, c = x.shape
    (t, b), (left, r) = pads

    def size(nn, before, after):
        span = nn + before + after - k
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= nn + before:
            out -= 1
        return out
    oh, ow = size(h, t, b), size(w, left, r)
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * s - t, j * s - left
            win = x[:, max(y0, 0):min(y0 + k, h), max(x0, 0):min(x0 + k, w), :]
            if kind == "max":
                y[:, i, j] = win.max(axis=(1, 2))
            else:
                counted = win.shape[1] * win.shape[2]
                if count_include_pad:
                    counted = (min(y0 + k, h + b) - max(y0, -t)) * (min(x0 + k, w + r) - max(x0, -left))
                y[:, i, j] = win.sum(axis=(1, 2)) / counted
    return y


@pytest.mark.parametrize("pads,ceil_mode,include", [
    (((0, 0), (0, 0)), True, False), (((1, 0), (1, 2)), False, True), (((1, 1), (0, 1)), True, True),
    (((2, 1), (1, 1)), True, False)])
def test_pooling_explicit_pads_ceil_and_count_include_pad(backend, rng, pads, ceil_mode, include):
    x = rng.permutation(2 * 8 * 7 * 2).reshape(2, 8, 7, 2) / 7.0
    mp = L.MaxPooling2D(3, strides=2, padding=pads, ceil_mode=ceil_mode, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(mp(x)), pool_reference(x, 3, 2, pads, ceil_mode, "max"))
    ap = L.AveragePooling2D(3, strides=2, padding=pads, ceil_mode=ceil_mode, count_include_pad=include,
                            dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(ap(x)),
                               pool_reference(x, 3, 2, pads, ceil_mode, "avg", include), rtol=1e-12)
    check(mp, x)
    check(ap, x)


def test_global_average_pool_keepdims(backend, rng):
    x = rng.standard_normal((2, 4, 5, 3))
    layer = L.GlobalAveragePooling2D(keepdims=True, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(layer(x)), x.mean(axis=(1, 2), keepdims=True))
    check(layer, x)


def test_reshape_permute_identity(backend, rng):
    x = rng.standard_normal((2, 3, 4, 6))
    r = L.Reshape((4, -1, 2), dtype="float64")
    np.testing.assert_array_equal(cn.get_ops().to_numpy(r(x)), x.reshape(2, 4, 9, 2))
    p = L.Permute((3, 1, 2), dtype="float64")
    np.testing.assert_array_equal(cn.get_ops().to_numpy(p(x)), x.transpose(0, 3, 1, 2))
    i = L.Identity(dtype="float64")
    np.testing.assert_array_equal(cn.get_ops().to_numpy(i(x)), x)
    for layer in (r, p, i):
        check(layer, x)
    with pytest.raises(ValueError, match="Reshape 'r1'.*cannot reshape"):
        L.Reshape((5, -1), name="r1").build((3, 4, 6))
    with pytest.raises(ValueError, match="permutation"):
        L.Permute((1, 1, 2))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_modes(backend, rng, mode):
    x = rng.standard_normal((2, 4, 5, 3))
    pads = ((1, 2), (0, 3), (1, 0))
    layer = L.Pad(pads, mode=mode, constant_value=1.5, dtype="float64")
    np_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge"}[mode]
    kwargs = {"constant_values": 1.5} if mode == "constant" else {}
    np.testing.assert_allclose(cn.get_ops().to_numpy(layer(x)), np.pad(x, ((0, 0), *pads), mode=np_mode, **kwargs))
    check(layer, x)


def test_clip(backend, rng):
    x = rng.standard_normal((3, 7)) * 3
    x[np.abs(np.abs(x) - 1) < 1e-3] = 0.5        # no entry within the finite-difference step of a kink
    layer = L.Clip(-1.0, 1.0, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(layer(x)), np.clip(x, -1, 1))
    check(layer, x)
    np.testing.assert_allclose(cn.get_ops().to_numpy(L.Clip(max_value=0.0, dtype="float64")(x)), np.minimum(x, 0))


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_lrn(backend, rng, size):
    x = rng.standard_normal((2, 3, 3, 7))
    layer = L.LRN(size, alpha=0.3, beta=0.75, bias=2.0, dtype="float64")
    sq = np.pad(x * x, ((0, 0), (0, 0), (0, 0), ((size - 1) // 2, size // 2)))
    window = sum(sq[..., i:i + 7] for i in range(size))
    np.testing.assert_allclose(cn.get_ops().to_numpy(layer(x)), x / (2.0 + 0.3 / size * window) ** 0.75,
                               rtol=1e-12)
    check(layer, x)


@pytest.mark.parametrize("op", ["add", "mul", "sub", "rsub", "div", "rdiv"])
def test_constant_op(backend, rng, op):
    x = rng.standard_normal((2, 3, 4, 5))
    if op == "rdiv":
        x = np.sign(x) * (np.abs(x) + 0.5)      # away from the pole at 0
    c = rng.uniform(0.5, 2.0, (1, 4, 1))        # broadcasts over H and C
    layer = L.ConstantOp(op, c, dtype="float64")
    expected = {"add": x + c, "mul": x * c, "sub": x - c, "rsub": c - x, "div": x / c, "rdiv": c / x}[op]
    np.testing.assert_allclose(cn.get_ops().to_numpy(layer(x)), expected)
    check(layer, x)


@pytest.mark.parametrize("include", [False, True])
def test_dilated_pooling(backend, rng, include):
    x = rng.permutation(2 * 9 * 8 * 2).reshape(2, 9, 8, 2) / 7.0
    pads, k, s, d = ((1, 1), (2, 0)), 3, 2, 2
    xpad_max = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-np.inf)
    xpad = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    real = np.pad(np.ones((9, 8)), pads)
    oh = (9 + 2 - (k - 1) * d - 1) // s + 1
    ow = (8 + 2 - (k - 1) * d - 1) // s + 1
    ymax, yavg = np.zeros((2, oh, ow, 2)), np.zeros((2, oh, ow, 2))
    for i in range(oh):
        for j in range(ow):
            rows, cols = i * s + d * np.arange(k), j * s + d * np.arange(k)
            win = xpad_max[:, rows][:, :, cols]
            ymax[:, i, j] = win.max(axis=(1, 2))
            n = k * k if include else real[np.ix_(rows, cols)].sum()
            yavg[:, i, j] = xpad[:, rows][:, :, cols].sum(axis=(1, 2)) / n
    mp = L.MaxPooling2D(k, strides=s, padding=pads, dilation_rate=d, dtype="float64")
    ap = L.AveragePooling2D(k, strides=s, padding=pads, dilation_rate=d, count_include_pad=include, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(mp(x)), ymax)
    np.testing.assert_allclose(cn.get_ops().to_numpy(ap(x)), yavg, rtol=1e-12)
    check(mp, x)
    check(ap, x)


@pytest.mark.parametrize("name,formula", [
    ("elu", lambda x: np.where(x > 0, x, np.expm1(x))),
    ("selu", lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x))),
    ("softplus", lambda x: np.log1p(np.exp(x))),
    ("softsign", lambda x: x / (1 + np.abs(x)))])
def test_more_activations(backend, rng, name, formula):
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5           # away from the kink at 0
    layer = L.Activation(name, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(layer(x)), formula(x), rtol=1e-12)
    check(layer, x)


def test_leaky_relu_elu_prelu_logsoftmax(backend, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5
    leaky = L.LeakyReLU(0.2, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(leaky(x)), np.where(x > 0, x, 0.2 * x))
    elu = L.ELU(2.0, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(elu(x)), np.where(x > 0, x, 2.0 * np.expm1(x)), rtol=1e-12)
    prelu = L.PReLU(alpha_initializer="ones", shared_axes=[1, 2], dtype="float64")
    prelu.build((3, 4, 5))
    alpha = rng.uniform(0.1, 0.5, (1, 1, 5))
    prelu.params["alpha"] = cn.get_ops().asarray(alpha)
    np.testing.assert_allclose(cn.get_ops().to_numpy(prelu(x)), np.where(x > 0, x, alpha * x))
    logsm = L.LogSoftmax(dtype="float64")
    ref = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    np.testing.assert_allclose(cn.get_ops().to_numpy(logsm(x)), ref, rtol=1e-12)
    for layer in (leaky, elu, prelu, logsm):
        check(layer, x)


def test_abs_and_divide(backend, rng):
    x = rng.standard_normal((2, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5                   # away from the kink of |x| at 0
    layer = L.Abs(dtype="float64")
    np.testing.assert_array_equal(cn.get_ops().to_numpy(layer(x)), np.abs(x))
    check(layer, x)
    a, b = rng.standard_normal((2, 3, 4)), rng.uniform(0.5, 2.0, (2, 3, 4)) * rng.choice([-1, 1], (2, 3, 4))
    div = L.Divide(dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(div([a, b])), a / b, rtol=1e-15)
    check(div, [a, b])
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        L.Divide().build([(3,), (3,), (3,)])


# per-sample shapes (a, b) covering numpy's matmul rules: batched, broadcast stacks
# (either side), 1-D operands on either side
MATMUL_SHAPES = [((2, 3, 4), (2, 4, 3)), ((1, 3, 4), (2, 4, 2)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (2, 4, 1)),
                 ((3,), (3,)), ((2, 3, 4), (4,)), ((5,), (5, 2))]


def matmul_per_sample(a, b):
    return np.stack([np.matmul(ai, bi) for ai, bi in zip(a, b)])


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES)
def test_matmul_of_two_tensors(backend, rng, a_shape, b_shape):
    a, b = rng.standard_normal((2, *a_shape)), rng.standard_normal((2, *b_shape))
    layer = L.MatMul(dtype="float64")
    y = cn.get_ops().to_numpy(layer([a, b]))
    np.testing.assert_allclose(y, matmul_per_sample(a, b), rtol=1e-12)
    assert layer.output_shape == y.shape[1:]
    check(layer, [a, b])


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_matmul_weight(backend, rng, a_shape, b_shape, side):
    """x @ W and W @ x: dW sums over the batch and over the stacks W was broadcast along."""
    x_shape, w_shape = (a_shape, b_shape) if side == "right" else (b_shape, a_shape)
    x, W = rng.standard_normal((3, *x_shape)), rng.standard_normal(w_shape)
    layer = L.MatMulWeight(w_shape, side=side, dtype="float64")
    layer.build(x_shape)
    layer.params["W"] = cn.get_ops().asarray(W)
    expected = matmul_per_sample(x, [W] * 3) if side == "right" else matmul_per_sample([W] * 3, x)
    np.testing.assert_allclose(cn.get_ops().to_numpy(layer(x)), expected, rtol=1e-12)
    check(layer, x)
    twin = L.MatMulWeight.from_config(layer.get_config())
    assert twin.get_config() == layer.get_config()


def test_matmul_shape_errors():
    with pytest.raises(ValueError, match=r"MatMul 'mm'.*inner sizes 4 and 3 differ"):
        L.MatMul(name="mm").build([(2, 4), (3, 2)])
    with pytest.raises(ValueError, match=r"stacks \(2,\) and \(3,\) do not broadcast"):
        L.MatMul().build([(2, 1, 4), (3, 4, 2)])
    with pytest.raises(ValueError, match=r"MatMulWeight 'w'.*inner sizes"):
        L.MatMulWeight((3, 2), name="w").build((5,))
    with pytest.raises(ValueError, match="side must be"):
        L.MatMulWeight((3, 2), side="top")


def pool3d_reference(x, k, s, d, pads, ceil_mode, kind, count_include_pad=False):
    """3-D pooling by an explicit loop over the output voxels (ONNX's definition):
    window i along an axis has taps at i*s - before + t*d, t < k."""
    def axis(n, before, after):
        span = n + before + after - ((k - 1) * d + 1)
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= n + before:
            out -= 1
        taps = [i * s - before + d * np.arange(k) for i in range(out)]
        return [t[(t >= 0) & (t < n)] for t in taps], [((t >= -before) & (t < n + after)).sum() for t in taps]
    axes = [axis(n, *p) for n, p in zip(x.shape[1:4], pads)]
    y = np.zeros((x.shape[0], *(len(real) for real, _ in axes), x.shape[4]))
    for index in np.ndindex(*y.shape[1:4]):
        real = [axes[a][0][i] for a, i in enumerate(index)]
        win = x[:, real[0]][:, :, real[1]][:, :, :, real[2]]       # (N, taps_d, taps_h, taps_w, C)
        if kind == "max":
            y[(slice(None), *index)] = win.max(axis=(1, 2, 3))
        else:
            counted = np.prod([axes[a][1][i] for a, i in enumerate(index)]) if count_include_pad else \
                np.prod(win.shape[1:4])
            y[(slice(None), *index)] = win.sum(axis=(1, 2, 3)) / counted
    return y


@pytest.mark.parametrize("k,s,d,pads,ceil_mode,include", [
    (2, 2, 1, ((0, 0), (0, 0), (0, 0)), False, False), (3, 2, 1, ((1, 0), (0, 1), (1, 1)), True, True),
    (2, 1, 2, ((0, 0), (1, 0), (0, 1)), True, False), (3, 2, 2, ((1, 1), (2, 1), (0, 2)), False, True)])
def test_pooling_3d(backend, rng, k, s, d, pads, ceil_mode, include):
    x = rng.permutation(2 * 5 * 6 * 7 * 2).reshape(2, 5, 6, 7, 2) / 11.0     # distinct values: no max ties
    mp = L.MaxPooling3D(k, strides=s, padding=pads, ceil_mode=ceil_mode, dilation_rate=d, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(mp(x)), pool3d_reference(x, k, s, d, pads, ceil_mode, "max"))
    ap = L.AveragePooling3D(k, strides=s, padding=pads, ceil_mode=ceil_mode, dilation_rate=d,
                            count_include_pad=include, dtype="float64")
    np.testing.assert_allclose(cn.get_ops().to_numpy(ap(x)),
                               pool3d_reference(x, k, s, d, pads, ceil_mode, "avg", include), rtol=1e-12)
    assert mp.output_shape == ap.output_shape == mp(x).shape[1:]
    check(mp, x)
    check(ap, x)
    for layer in (mp, ap):
        assert type(layer).from_config(layer.get_config()).get_config() == layer.get_config()


def test_pooling_3d_keras_defaults_and_errors():
    layer = L.MaxPooling3D()                     # Keras: pool_size (2, 2, 2), strides = pool_size, "valid"
    layer.build((4, 6, 5, 3))
    assert layer.strides == (2, 2, 2) and layer.output_shape == (2, 3, 2, 3)
    assert L.AveragePooling3D((1, 2, 3), padding="same").build((3, 5, 7, 1)).output_shape == (3, 3, 3, 1)
    with pytest.raises(ValueError, match="pool_size must be an int or a triple"):
        L.MaxPooling3D((2, 2))
    with pytest.raises(ValueError, match=r"padding must be .*\(\(front, back\)"):
        L.MaxPooling3D(2, padding=((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="expected inputs of rank 5"):
        L.MaxPooling3D(2).build((4, 4, 3))
    with pytest.raises(ValueError, match="larger than the padded input"):
        L.AveragePooling3D(3).build((2, 5, 5, 1))


def test_new_layers_save_and_load(tmp_path, rng):
    """A model of the layers ONNX's remaining operators brought (3-D pools, MatMul,
    MatMulWeight, Abs, Divide, ConstantOp rdiv) saves and loads with its weights."""
    v = cn.Input((4, 5, 6, 2))
    h = L.AveragePooling3D(2, strides=1, padding=((1, 0), (0, 0), (0, 1)), count_include_pad=True)(
        L.MaxPooling3D((1, 2, 2), ceil_mode=True)(v))                    # (4, 2, 3, 2)
    h = L.Reshape((6, 8))(h)
    s = L.MatMul()([L.Permute((2, 1))(h), h])                            # (8, 8)
    s = L.Divide()([s, L.ConstantOp("add", 1.0)(L.Abs()(s))])
    out = L.MatMulWeight((8, 3))(L.ConstantOp("rdiv", 2.0)(L.ConstantOp("add", 1.5)(s)))
    model = cn.Model(v, out, seed=6)
    x = rng.standard_normal((2, 4, 5, 6, 2)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(cn.load_model(tmp_path / "m.npz")(x), model(x))
