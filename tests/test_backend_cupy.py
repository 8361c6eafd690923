"""CupyOps: real GPU tests (marked `gpu`, skipped without a working CuPy device)
and, everywhere, the same code run against a stand-in module that looks like CuPy
but computes with numpy, so the CuPy code paths stay exercised on CPU-only CI."""

import sys
import types

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet.backend import cupy_ops
from convnet.synthetic import make_shapes


def gpu_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def fake_cupy():
    mod = types.ModuleType("cupy")
    for name in dir(np):
        if not name.startswith("__"):
            setattr(mod, name, getattr(np, name))
    mod.asnumpy = lambda a: np.asarray(a)
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    return mod


@pytest.fixture
def stand_in_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy())
    return cupy_ops.CupyOps()


def tiny_model(seed=0):
    model = cn.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                           L.BatchNormalization(), L.Flatten(), L.Dense(3)],
                          input_shape=(12, 12, 1), seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_cupy_code_path_matches_numpy(stand_in_cupy, monkeypatch):
    x, y = make_shapes(32, size=12)
    with cn.use_backend("numpy"):
        ref = tiny_model()
        ref_losses = [ref.train_step(x, y) for _ in range(3)]
    monkeypatch.setattr("convnet.backend._active", stand_in_cupy)
    model = tiny_model()
    losses = [model.train_step(x, y) for _ in range(3)]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert cn.get_backend() == "cupy"
    probs = model.predict(x)
    assert isinstance(probs, np.ndarray) and probs.shape == (32, 3)


def test_missing_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(ValueError, match="CuPy is not installed"):
        cupy_ops.CupyOps()


def test_cupy_without_device_is_a_clear_error(monkeypatch):
    mod = fake_cupy()

    def no_driver():
        raise RuntimeError("cudaErrorNoDevice")
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver))
    monkeypatch.setitem(sys.modules, "cupy", mod)
    with pytest.raises(ValueError, match="no CUDA device works"):
        cupy_ops.CupyOps()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CuPy GPU")
def test_gpu_gradients_and_training():
    with cn.use_backend("cupy"):
        rng = np.random.default_rng(0)
        for layer, shape in [(L.Conv2D(3, 3, strides=2, padding="same", dtype="float64"), (2, 7, 6, 2)),
                             (L.MaxPooling2D(2, dtype="float64"), (2, 6, 6, 2)),
                             (L.Dense(4, activation="tanh", dtype="float64"), (3, 5))]:
            x = rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0
            report = cn.gradcheck(layer, x)
            assert report.passed, str(report)
        x, y = make_shapes(600, size=12, seed=0)
        model = tiny_model()
        model.fit(x, y, epochs=5, batch_size=32, verbose=0)
        assert model.evaluate(*make_shapes(200, size=12, seed=1))["accuracy"] > 0.9
