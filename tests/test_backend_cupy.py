"""The CuPy backend, on the CPU through a strict stand-in, and on a real GPU where one works.

What running CupyOps on tests/strict_cupy.py PROVES:
- no code path of the layers, losses, optimizers, training loop, gradcheck or
  model files that these tests (and the layer grid and training tests run on
  "strict-cupy") reach mixes a host numpy array into a device-array operation,
  converts device data to numpy implicitly (np.asarray, __array__), or writes a
  host array into a device array with basic indexing: each of those raises here
  as it raises in real CuPy (the rules are CuPy's own, quoted in strict_cupy.py);
- every copy between host and device goes through CupyOps.asarray/to_numpy (the
  stand-in's own counts equal CupyOps.transfers), and how many a training step
  makes is counted, not guessed;
- CupyOps computes what NumpyOps computes (the stand-in computes with numpy, so
  equal results show the dispatch and data flow are right, nothing more).

What it does NOT prove about a real GPU:
- that CuPy's kernels give the same numbers (cuBLAS, reductions and atomics
  round differently; float32 tolerances must be checked on the device);
- anything about speed, memory, streams, asynchronous execution or
  synchronisation points (the stand-in is synchronous; its "scalar reads" only
  mark where CuPy would synchronise);
- CuPy behaviour the stand-in does not copy: out-of-bounds indices wrapping,
  undefined results of duplicate indices in scatter, dtype promotion details,
  functions CuPy lacks (the stand-in has all of numpy's), the CUDA driver and
  device selection.
Those need the tests marked `gpu`, run where a GPU is (benchmarks/gpu.py --tests).
"""

import json
import sys
import types

import numpy as np
import pytest
import strict_cupy as stand_in
from conftest import GPU
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import convnet as cn
from convnet import layers as L
from convnet.arrays import is_device_array, to_host
from convnet.backend import cupy_ops
from convnet.synthetic import make_shapes

cp = stand_in.module
HOST_MIX = r"Unsupported type <class 'numpy\.ndarray'>"


def tiny_model(seed=0, depth=1, dropout=True):
    layers = [L.Conv2D(4, 3, padding="same", activation="relu") for _ in range(depth)]
    layers += [L.MaxPooling2D(2), L.BatchNormalization(), L.Flatten()]
    layers += [L.Dropout(0.2)] if dropout else []
    model = cn.Sequential(layers + [L.Dense(3)], input_shape=(12, 12, 1), seed=seed, name="tiny")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# ------------------------------------------------------- the stand-in keeps CuPy's rules
def test_stand_in_arrays_are_not_numpy_arrays_and_refuse_implicit_conversion(strict_cupy):
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    assert not isinstance(a, np.ndarray) and isinstance(a, cp.ndarray)
    for convert in (np.asarray, np.array, lambda v: v.__array__(), lambda v: np.float64(1.0) * np.asarray(v)):
        with pytest.raises(TypeError, match=r"Implicit conversion to a NumPy array is not allowed\. "
                                            r"Please use `\.get\(\)` to construct a NumPy array explicitly\."):
            convert(a)
    for host in (cp.asnumpy(a), a.get(), to_host(a)):
        assert type(host) is np.ndarray
        np.testing.assert_array_equal(host, np.arange(6.0).reshape(2, 3))


def test_stand_in_refuses_every_mix_of_host_and_device_arrays():
    dev, host = cp.ones((2, 3)), np.ones((2, 3))
    mixes = [lambda: dev + host, lambda: host + dev, lambda: host * dev, lambda: dev @ host.T,
             lambda: np.add(host, dev), lambda: np.exp(host, out=dev), lambda: cp.exp(host),
             lambda: cp.where(dev > 0, dev, host), lambda: cp.concatenate([dev, host]),
             lambda: cp.maximum(host, 0, out=dev)]
    for mix in mixes:
        with pytest.raises(TypeError, match=HOST_MIX):
            mix()
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        dev[...] = host                        # basic indexing: CuPy refuses (cupy gh-2079)


def test_stand_in_allows_what_cupy_allows():
    dev = cp.arange(6.0).reshape(2, 3)
    assert isinstance(dev + 1.0, cp.ndarray) and isinstance(np.float32(2) * dev, cp.ndarray)
    both = np.concatenate([dev, dev])          # numpy functions dispatch to the device
    assert isinstance(both, cp.ndarray) and both.shape == (4, 3)
    total = np.sum(dev)
    assert isinstance(total, cp.ndarray) and total.ndim == 0 and float(total) == 15.0
    dev[np.array([0, 1]), np.array([2, 0])] = np.array([10.0, 20.0])   # advanced indexing copies over
    np.testing.assert_array_equal(cp.asnumpy(dev), [[0, 1, 10], [20, 4, 5]])
    dev[...] = 0.5
    assert float(dev.sum()) == 3.0


def test_stand_in_counts_its_transfers():
    stand_in.stats.reset()
    dev = cp.asarray(np.zeros(10, np.float32))
    cp.asnumpy(dev * 2)
    float(dev.sum())
    assert stand_in.stats.snapshot() == {"h2d": 1, "h2d_bytes": 40, "d2h": 1, "d2h_bytes": 40, "scalar_reads": 1}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8]),
                  hnp.array_shapes(min_dims=0, max_dims=4, max_side=5)))
def test_a_round_trip_through_cupy_ops_is_exact_and_counted(strict_cupy, host):
    """Any array, any dtype and shape (0-d and empty included): to the device and
    back gives the same values, one copy each way, its size in bytes."""
    strict_cupy.transfers.reset()
    stand_in.stats.reset()
    dev = strict_cupy.asarray(host)
    assert is_device_array(dev) and strict_cupy.asarray(dev) is dev      # no second copy
    back = strict_cupy.to_numpy(dev)
    np.testing.assert_array_equal(back, host)
    assert back.dtype == host.dtype and back.shape == host.shape
    assert strict_cupy.transfers.as_dict() == {"to_device": 1, "to_device_bytes": host.nbytes,
                                               "to_host": 1, "to_host_bytes": host.nbytes}
    assert (stand_in.stats.h2d, stand_in.stats.d2h) == (1, 1)


# ----------------------------------------------- the stand-in catches an injected mix
class HostMaskDense(L.Dense):
    """A Dense whose backward multiplies by a mask built with numpy: correct
    numbers on the CPU, a host/device mix on a GPU."""

    def _backward(self, dy):
        keep = np.ones(dy.shape, dtype=dy.dtype)
        return super()._backward(dy * keep)


class ImplicitHostDense(L.Dense):
    """A Dense whose forward inspects its input with np.asarray."""

    def _forward(self, x, training):
        assert np.isfinite(np.asarray(x)).all()
        return super()._forward(x, training)


@pytest.mark.parametrize("layer_class,error", [(HostMaskDense, HOST_MIX),
                                               (ImplicitHostDense, "Implicit conversion to a NumPy array")])
def test_an_injected_host_device_mix_passes_on_numpy_and_fails_on_the_stand_in(strict_cupy, layer_class, error):
    x = np.random.default_rng(0).standard_normal((3, 4))
    with cn.use_backend("numpy"):
        layer = layer_class(2, seed=0)
        y = layer.forward(x, training=True)
        layer.backward(np.ones_like(y))        # fine where host and device are the same memory
    with cn.use_backend("cupy"):
        layer = layer_class(2, seed=0)
        with pytest.raises(TypeError, match=error):
            y = layer.forward(x, training=True)
            layer.backward(cp.ones_like(y))


# ------------------------------------------------------------ training through CupyOps
def test_cupy_code_path_matches_numpy(strict_cupy):
    x, y = make_shapes(32, size=12)
    with cn.use_backend("numpy"):
        ref = tiny_model()
        ref_losses = [ref.train_step(x, y) for _ in range(3)]
    with cn.use_backend("cupy"):
        assert cn.get_backend() == "cupy"
        model = tiny_model()
        losses = [model.train_step(x, y) for _ in range(3)]
        probs = model.predict(x)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    assert type(probs) is np.ndarray and probs.shape == (32, 3)
    np.testing.assert_allclose(probs, ref.predict(x), rtol=1e-5, atol=1e-7)


def test_parameters_gradients_and_optimizer_state_stay_on_the_device(strict_cupy):
    x, y = make_shapes(64, size=12)
    with cn.use_backend("cupy"):
        model = tiny_model()
        history = model.fit(x, y, epochs=1, batch_size=16, verbose=0, validation_data=(x, y))
        for layer in model.layers:
            for store in (layer.params, layer.grads, layer.state):
                assert all(is_device_array(a) for a in store.values()), layer.name
        slots = [a for per_key in model.optimizer.slots.values() for a in per_key.values()]
        assert slots and all(is_device_array(a) for a in slots)
        # what the user gets back is host data
        assert all(type(v) is float for values in history.history.values() for v in values)
        assert all(type(v) is float for v in model.evaluate(x, y, return_dict=True).values())
        assert type(model.predict(x)) is np.ndarray
        assert all(type(w) is np.ndarray for w in model.get_weights())


@pytest.mark.parametrize("depth", [1, 3])
def test_a_training_step_moves_the_batch_in_and_the_loss_out_whatever_the_depth(strict_cupy, depth):
    """Per step: x and y in, one dropout mask in (drawn on the host from the layer's
    seeded Generator, so every backend draws the same masks), the loss and the
    step's finiteness check out as two scalar reads, and the probabilities out
    for the metrics. Nothing per layer:
    parameters never cross. Every copy goes through CupyOps (the stand-in's own
    counts agree), so CupyOps.transfers is the complete record on a real GPU too."""
    x, y = make_shapes(16, size=12)
    with cn.use_backend("cupy") as ops:
        model = tiny_model(depth=depth)
        model.train_step(x, y)                   # the first step creates the Adam slots
        stand_in.stats.reset()
        ops.transfers.reset()
        model.train_step(x, y)
    counts = stand_in.stats.snapshot()
    assert counts["h2d"] == ops.transfers.to_device == 3                  # x, y, dropout mask
    assert counts["h2d_bytes"] == ops.transfers.to_device_bytes == x.nbytes + 16 * 8 + 16 * 144 * 4
    assert counts["d2h"] == ops.transfers.to_host <= 1                    # probabilities (see below)
    # the loss, and the finiteness check of the step (gradients and updated weights
    # summed on the device, one read: convnet/finite.py)
    assert counts["scalar_reads"] == 2


def test_train_step_copies_back_only_the_loss(strict_cupy):
    x, y = make_shapes(16, size=12)
    with cn.use_backend("cupy") as ops:
        model = tiny_model(dropout=False)
        model.train_step(x, y)
        ops.transfers.reset()
        model.train_step(x, y)
    assert ops.transfers.to_host == 0


def test_evaluate_and_predict_copy_once_per_batch(strict_cupy):
    x, y = make_shapes(64, size=12)
    with cn.use_backend("cupy") as ops:
        model = tiny_model()
        ops.transfers.reset()
        model.predict(x, batch_size=16)
        assert ops.transfers.as_dict() == {"to_device": 4, "to_device_bytes": x.nbytes,
                                           "to_host": 4, "to_host_bytes": 64 * 3 * 4}
        ops.transfers.reset()
        stand_in.stats.reset()
        model.evaluate(x, y, batch_size=16)
        assert ops.transfers.to_device == 8 and ops.transfers.to_host == 4    # x, y in; probabilities out
        assert stand_in.stats.scalar_reads == 4                              # one loss per batch


def without_layer_names(meta):
    """The model file's JSON, less the automatic layer names (conv2d, conv2d_1, ...)."""
    meta = json.loads(str(meta))
    for spec in meta["model"]["layers"]:
        spec["config"].pop("name")
        spec.pop("inbound_nodes", None)       # the topology refers to layers by name
    meta["model"].pop("inputs", None)
    meta["model"].pop("outputs", None)
    return meta


def test_save_on_the_device_load_anywhere(strict_cupy, tmp_path):
    """The file written from the device holds the same arrays and metadata as the
    one written from the CPU for the same run, and loads onto either backend."""
    x, y = make_shapes(48, size=12, seed=2)
    files = {}
    for name in ("numpy", "cupy"):
        with cn.use_backend(name):
            model = tiny_model(seed=3)
            model.fit(x, y, epochs=1, batch_size=16, verbose=0)
            model.save(tmp_path / f"{name}.npz")
        with np.load(tmp_path / f"{name}.npz", allow_pickle=False) as data:
            files[name] = {k: data[k] for k in data.files}
    assert files["numpy"].keys() == files["cupy"].keys()
    for key, value in files["numpy"].items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(files["cupy"][key], value, rtol=1e-5, atol=1e-7, err_msg=key)
        else:                                  # the JSON metadata: architecture, rng states, ...
            assert without_layer_names(files["cupy"][key]) == without_layer_names(value)
    with cn.use_backend("cupy"):
        on_device = cn.load_model(tmp_path / "numpy.npz")
        assert all(is_device_array(p) for layer in on_device.layers for p in layer.params.values())
        from_device = on_device.predict(x)
    with cn.use_backend("numpy"):
        np.testing.assert_allclose(cn.load_model(tmp_path / "cupy.npz").predict(x), from_device, rtol=1e-5)


# --------------------------------------------------------------------------- dispatch
def test_a_model_moves_between_backends_with_its_weights(strict_cupy):
    """Built and trained on numpy, run on cupy: the parameters move to the device on
    the first forward (and back to the host on numpy again), same predictions."""
    x, y = make_shapes(32, size=12)
    with cn.use_backend("numpy"):
        model = tiny_model()
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        expected = model.predict(x)
    with cn.use_backend("cupy"):
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6)
        assert all(is_device_array(p) for layer in model.layers for p in layer.params.values())
        model.train_step(x, y)                   # and trains there, optimizer state included
    with cn.use_backend("numpy"):
        after = model.predict(x)
        assert all(type(p) is np.ndarray for layer in model.layers for p in layer.params.values())
    assert not np.allclose(after, expected)


def test_to_host_copies_device_arrays_through_cupy_ops(strict_cupy):
    dev = cp.asarray(np.arange(4.0))
    strict_cupy.transfers.reset()
    host = to_host(dev)
    assert type(host) is np.ndarray and strict_cupy.transfers.to_host == 1
    assert to_host(host) is host and not is_device_array(host) and is_device_array(dev)


def test_set_backend_cupy_gives_cupy_ops(strict_cupy):
    with cn.use_backend("cupy") as ops:
        assert ops is strict_cupy and isinstance(ops, cupy_ops.CupyOps) and ops.xp is cp
        assert "cupy" in cn.available_backends()


def test_missing_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(ValueError, match=r"CuPy is not installed.*convnet\[gpu\].*CUDA 12.*gpu-cuda13"):
        cupy_ops.CupyOps()


def test_cupy_without_device_is_a_clear_error(monkeypatch):
    mod = types.ModuleType("cupy")

    def no_driver():
        raise RuntimeError("cudaErrorNoDevice")
    mod.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver))
    monkeypatch.setitem(sys.modules, "cupy", mod)
    with pytest.raises(ValueError, match="no CUDA device works.*cudaErrorNoDevice"):
        cupy_ops.CupyOps()
    mod.cuda.runtime.getDeviceCount = lambda: 0
    with pytest.raises(ValueError, match="found no CUDA GPU"):
        cupy_ops.CupyOps()


# ---------------------------------------------------------------------- a real GPU
@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs CuPy and a working CUDA device")
def test_gpu_training_matches_the_cpu_loss_curve():
    """Three epochs on the GPU and on numpy from the same seed: the loss curves
    agree within float32 tolerance, and the GPU run learns."""
    x, y = make_shapes(600, size=12, seed=0)
    curves = {}
    for name in ("numpy", "cupy"):
        with cn.use_backend(name):
            model = tiny_model(dropout=False)
            curves[name] = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history["loss"]
            if name == "cupy":
                accuracy = model.evaluate(*make_shapes(200, size=12, seed=1), return_dict=True)["accuracy"]
    np.testing.assert_allclose(curves["cupy"], curves["numpy"], rtol=1e-3)
    assert accuracy > 0.9
