"""Optimizer updates against the formulas written out by hand."""

import numpy as np
import pytest

import convnet as cn


def run(optimizer, grads, p0):
    """Apply host gradients to p0 (an array of the active backend); on a device
    backend each gradient goes over first, as a layer's would already be there."""
    ops = cn.get_ops()
    p = p0.copy()
    for g in grads:
        optimizer.apply_gradients([("p", p, ops.asarray(g))])
    return p


@pytest.mark.parametrize("name,wd", [("Adam", None), ("Adam", 0.5), ("AdamW", 0.5)])
def test_adam_matches_algorithm_1(backend, rng, name, wd):
    # with weight decay, Keras' rule (and torch.optim.AdamW's): p -= lr * wd * p
    # first, then Adam's step on the gradient alone; the decay never enters m or v
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-7
    p0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    m = np.zeros(5)
    v = np.zeros(5)
    expected = p0.copy()
    for t, g in enumerate(grads, start=1):
        expected -= lr * (wd or 0) * expected
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        expected -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    opt = getattr(cn.optimizers, name)(lr, beta_1=b1, beta_2=b2, epsilon=eps, weight_decay=wd)
    p = run(opt, grads, backend.asarray(p0))
    np.testing.assert_allclose(backend.to_numpy(p), expected, rtol=1e-12)


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0),
                                                  (0.9, True, 0.0), (0.5, True, 0.01), (0.0, False, 0.1)])
def test_sgd_matches_heavy_ball(backend, rng, momentum, nesterov, wd):
    lr = 0.1
    p0 = rng.standard_normal(4)
    grads = [rng.standard_normal(4) for _ in range(3)]
    v = np.zeros(4)
    expected = p0.copy()
    for g in grads:
        g = g + wd * expected
        v = momentum * v + g
        expected -= lr * ((g + momentum * v) if nesterov else v)
    opt = cn.optimizers.SGD(lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    p = run(opt, grads, backend.asarray(p0))
    np.testing.assert_allclose(backend.to_numpy(p), expected, rtol=1e-12)


@pytest.mark.parametrize("ours,theirs,kwargs", [("Adam", "Adam", {}),
                                                 ("AdamW", "AdamW", {"weight_decay": 0.1})])
def test_adam_and_adamw_match_torch_when_available(rng, ours, theirs, kwargs):
    torch = pytest.importorskip("torch")
    p0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(5)]
    tp = torch.tensor(p0, requires_grad=True)
    topt = getattr(torch.optim, theirs)([tp], lr=0.01, eps=1e-7, **kwargs)
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
    with cn.use_backend("numpy"):
        p = run(getattr(cn.optimizers, ours)(0.01, **kwargs), grads, p0)
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-10)


def test_adamw_defaults_names_and_errors():
    opt = cn.optimizers.get("adamw")
    assert type(opt) is cn.optimizers.AdamW and opt.weight_decay == 0.004   # Keras' default
    assert cn.optimizers.Adam().weight_decay is None
    again = cn.optimizers.get(cn.optimizers.serialize(cn.optimizers.AdamW(2e-3, weight_decay=0.01)))
    assert type(again) is cn.optimizers.AdamW and again.get_config()["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="AdamW: weight_decay must be a number >= 0, got None"):
        cn.optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="Adam: weight_decay must be >= 0"):
        cn.optimizers.Adam(weight_decay=-0.1)
    with pytest.raises(TypeError, match="AdamW: weight_decay must be a number"):
        cn.optimizers.AdamW(weight_decay="0.1")
    # the step bound holds while 1 - lr * wd keeps |p| from growing, and is refused beyond
    assert cn.optimizers.AdamW(0.1, weight_decay=10).step_bound() is not None
    assert cn.optimizers.AdamW(0.1, weight_decay=30).step_bound() is None


def test_optimizer_lookup_and_errors():
    assert isinstance(cn.optimizers.get("adam"), cn.optimizers.Adam)
    assert isinstance(cn.optimizers.get("SGD"), cn.optimizers.SGD)
    with pytest.raises(ValueError, match="unknown optimizer"):
        cn.optimizers.get("adagrad2")
    with pytest.raises(ValueError, match="learning_rate must be a positive"):
        cn.optimizers.Adam(learning_rate=-1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        cn.optimizers.SGD(nesterov=True)


@pytest.mark.parametrize("beta_1,beta_2", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99), (0.95, 0.999)])
def test_adam_step_bound_holds_for_any_gradients(beta_1, beta_2):
    # Adam.step_bound (what lets the training guard skip its undo copy): no
    # parameter moves further than it, whatever the gradients, including the
    # worst case of a spike followed by tiny gradients (m decays slower than sqrt(v))
    rng = np.random.default_rng(0)
    adam = cn.optimizers.Adam(1.0, beta_1=beta_1, beta_2=beta_2, epsilon=1e-30)
    p = np.zeros(2000)
    for t in range(200):
        g = rng.standard_normal(2000) * 10.0 ** rng.uniform(-8, 8, 2000)
        if t >= 120:
            g = np.full(2000, 1e10 if t == 120 else 1e-12)
        bound = adam.step_bound()
        before = p.copy()
        adam.apply_gradients([("p", p, g)])
        assert np.abs(p - before).max() <= bound * (1 + 1e-9), t
    # with weight decay: |new p| <= |p| + bound (the decay only shrinks p first)
    for wd in (0.3, 1.0, 2.0):
        adamw = cn.optimizers.AdamW(1.0, weight_decay=wd, beta_1=beta_1, beta_2=beta_2, epsilon=1e-30)
        p = rng.standard_normal(2000) * 1e3
        for t in range(50):
            g = rng.standard_normal(2000) * 10.0 ** rng.uniform(-8, 8, 2000)
            bound = adamw.step_bound()
            before = p.copy()
            adamw.apply_gradients([("p", p, g)])
            assert np.all(np.abs(p) <= np.abs(before) + bound * (1 + 1e-9)), (wd, t)
    assert cn.optimizers.Adam(beta_1=0.99, beta_2=0.9).step_bound() is None     # beta_1^2 >= beta_2
    assert cn.optimizers.SGD(0.1, momentum=0.9).step_bound() is None


def test_adamw_survives_a_model_file_and_shrinks_the_weights(tmp_path, rng):
    from convnet import layers as L

    def model(optimizer):
        m = cn.Sequential([L.Dense(3)], input_shape=(4,), seed=0)
        m.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        return m
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    decayed, plain = model("adamw"), model(cn.optimizers.Adam())
    for m in (decayed, plain):
        m.fit(x, y, batch_size=8, epochs=3, verbose=0)
    # same data, same start: the decay alone makes the difference, and it shrinks
    assert np.linalg.norm(decayed.get_weights()[0]) < np.linalg.norm(plain.get_weights()[0])
    decayed.save(tmp_path / "m.npz")
    loaded = cn.load_model(tmp_path / "m.npz")
    assert type(loaded.optimizer) is cn.optimizers.AdamW
    assert loaded.optimizer.get_config() == decayed.optimizer.get_config()
    for m in (decayed, loaded):       # the next step is the same from the file
        m.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_array_equal(loaded.get_weights()[0], decayed.get_weights()[0])
