"""Backprop through graphs against PyTorch autograd, in float64.

Three graphs: a residual block with a 1x1 stride-2 projection shortcut, a
two-branch model joined by Concatenate, and a Dense layer called twice (shared
weights). For each, the loss, the input gradient and every parameter gradient
must agree with torch.autograd within 1e-9 relative error. Skipped without torch
(`pip install torch==2.13.0`, a CPU build; `make test` installs it where it can).
"""

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t(a):
    return torch.tensor(np.asarray(cn.get_ops().to_numpy(a)), dtype=torch.float64, requires_grad=True)


def conv_weight(layer):
    """convnet (kh, kw, C_in, F) -> torch (F, C_in, kh, kw)."""
    return t(np.transpose(cn.get_ops().to_numpy(layer.params["W"]), (3, 2, 0, 1)))


def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc_flat(h):
    return h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)   # convnet flattens (H, W, C)


def convnet_grads(model, x, y):
    xs, ys = model.check_batch(x, y)
    outs = model.forward(xs, training=True)
    loss, grads = model.compute_loss(outs, ys)
    (dx,) = model.backward(grads, input_grads=True)
    return loss, cn.get_ops().to_numpy(dx)


def assert_close(ours, theirs, what):
    ours, theirs = np.asarray(cn.get_ops().to_numpy(ours)), theirs.detach().numpy()
    scale = max(np.abs(theirs).max(), 1e-30)
    err = np.abs(ours - theirs).max() / scale
    assert err < 1e-9, f"{what}: relative error {err:.2e}"


def residual(dtype="float64"):
    x = cn.Input(shape=(6, 6, 3), dtype=dtype)
    c1 = L.Conv2D(4, 3, strides=2, padding=1, dtype=dtype)
    c2 = L.Conv2D(4, 3, padding="same", dtype=dtype)
    proj = L.Conv2D(4, 1, strides=2, dtype=dtype)
    dense = L.Dense(3, dtype=dtype)
    h = c2(L.ReLU(dtype=dtype)(c1(x)))
    out = dense(L.Flatten(dtype=dtype)(L.ReLU(dtype=dtype)(L.Add(dtype=dtype)([h, proj(x)]))))
    return cn.Model(x, out, seed=0), (c1, c2, proj, dense)


def test_residual_block_matches_torch(backend, rng):
    model, (c1, c2, proj, dense) = residual()
    model.compile(loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((4, 6, 6, 3))
    y = np.array([0, 2, 1, 1])
    loss, dx = convnet_grads(model, x, y)

    tx = t(x)
    w = {name: conv_weight(layer) for name, layer in (("c1", c1), ("c2", c2), ("proj", proj))}
    b = {name: t(layer.params["b"]) for name, layer in (("c1", c1), ("c2", c2), ("proj", proj))}
    dW, db = t(dense.params["W"]), t(dense.params["b"])
    xin = nchw(tx)
    h = F.conv2d(F.relu(F.conv2d(xin, w["c1"], b["c1"], stride=2, padding=1)), w["c2"], b["c2"], padding=1)
    h = F.relu(h + F.conv2d(xin, w["proj"], b["proj"], stride=2))
    logits = nhwc_flat(h) @ dW + db
    tloss = F.cross_entropy(logits, torch.tensor(y))
    tloss.backward()

    assert abs(loss - tloss.item()) < 1e-12 * max(1.0, abs(tloss.item()))
    assert_close(dx, tx.grad, "dL/dx")
    for name, layer in (("c1", c1), ("c2", c2), ("proj", proj)):
        assert_close(np.transpose(cn.get_ops().to_numpy(layer.grads["W"]), (3, 2, 0, 1)), w[name].grad, name)
        assert_close(layer.grads["b"], b[name].grad, name + "/b")
    assert_close(dense.grads["W"], dW.grad, "dense/W")
    assert_close(dense.grads["b"], db.grad, "dense/b")


def test_two_branch_concatenate_matches_torch(backend, rng):
    x = cn.Input(shape=(5, 5, 2), dtype="float64")
    left = L.Conv2D(3, 3, padding="same", activation="tanh", dtype="float64")
    right = L.Conv2D(2, 1, activation="sigmoid", dtype="float64")
    dense = L.Dense(4, dtype="float64")
    joined = L.Concatenate(dtype="float64")([left(x), right(x)])
    model = cn.Model(x, dense(L.Flatten(dtype="float64")(L.MaxPooling2D(2, dtype="float64")(joined))), seed=1)
    model.compile(loss="sparse_categorical_crossentropy")
    xa = rng.standard_normal((3, 5, 5, 2))
    y = np.array([3, 0, 1])
    loss, dx = convnet_grads(model, xa, y)

    tx = t(xa)
    wl, bl, wr, br = conv_weight(left), t(left.params["b"]), conv_weight(right), t(right.params["b"])
    dW, db = t(dense.params["W"]), t(dense.params["b"])
    xin = nchw(tx)
    h = torch.cat([torch.tanh(F.conv2d(xin, wl, bl, padding=1)), torch.sigmoid(F.conv2d(xin, wr, br))], dim=1)
    logits = nhwc_flat(F.max_pool2d(h, 2)) @ dW + db
    tloss = F.cross_entropy(logits, torch.tensor(y))
    tloss.backward()

    assert abs(loss - tloss.item()) < 1e-12 * max(1.0, abs(tloss.item()))
    assert_close(dx, tx.grad, "dL/dx")
    assert_close(np.transpose(cn.get_ops().to_numpy(left.grads["W"]), (3, 2, 0, 1)), wl.grad, "left/W")
    assert_close(np.transpose(cn.get_ops().to_numpy(right.grads["W"]), (3, 2, 0, 1)), wr.grad, "right/W")
    assert_close(left.grads["b"], bl.grad, "left/b")
    assert_close(right.grads["b"], br.grad, "right/b")
    assert_close(dense.grads["W"], dW.grad, "dense/W")


def test_weight_shared_layer_called_twice_matches_torch(backend, rng):
    x = cn.Input(shape=(4,), dtype="float64")
    shared = L.Dense(4, activation="tanh", dtype="float64")
    head = L.Dense(3, dtype="float64")
    model = cn.Model(x, head(L.Add(dtype="float64")([shared(shared(x)), x])), seed=2)
    model.compile(loss="sparse_categorical_crossentropy")
    xa = rng.standard_normal((5, 4))
    y = np.array([0, 1, 2, 1, 0])
    loss, dx = convnet_grads(model, xa, y)

    tx, sW, sb = t(xa), t(shared.params["W"]), t(shared.params["b"])
    hW, hb = t(head.params["W"]), t(head.params["b"])
    h = torch.tanh(torch.tanh(tx @ sW + sb) @ sW + sb) + tx
    tloss = F.cross_entropy(h @ hW + hb, torch.tensor(y))
    tloss.backward()

    assert abs(loss - tloss.item()) < 1e-12 * max(1.0, abs(tloss.item()))
    out = model(xa)
    ref = (torch.tanh(torch.tanh(tx @ sW + sb) @ sW + sb) + tx) @ hW + hb
    assert_close(out, ref, "forward")
    assert_close(dx, tx.grad, "dL/dx")
    assert_close(shared.grads["W"], sW.grad, "shared/W (sum of both calls)")
    assert_close(shared.grads["b"], sb.grad, "shared/b")
    assert_close(head.grads["W"], hW.grad, "head/W")
