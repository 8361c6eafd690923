"""convnet.profile.profile_model: a per-layer table of forward/backward times."""

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L


def _model():
    model = cn.Sequential([L.Conv2D(4, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                           L.Flatten(), L.Dense(3)], input_shape=(8, 8, 1), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def test_training_profile_rows(backend):
    model = _model()
    rng = np.random.default_rng(0)
    x = rng.random((4, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 4)
    printed = []
    rows = cn.profile.profile_model(model, x, y, repeats=2, print_fn=printed.append)
    names = [r["name"] for r in rows]
    assert names == [layer.name for layer in model.layers] + ["loss", "optimizer", "total"]
    conv = rows[0]
    assert conv["fwd_ms"] > 0 and conv["bwd_ms"] > 0
    assert conv["fwd_gflops"] > 0 and conv["bwd_gflops"] > 0
    assert rows[-1]["images_per_s"] > 0
    assert abs(sum(r["share"] for r in rows[:-1]) - 1) < 1e-6
    assert printed and "conv2d" in printed[0] and "GF/s" in printed[0]
    # the first layer's flag is restored after profiling
    assert model.layers[0].skip_input_grad is False


def test_inference_profile_and_stat(backend):
    model = _model()
    x = np.zeros((2, 8, 8, 1), np.float32)
    rows = cn.profile.profile_model(model, x, repeats=3, stat="min", print_fn=None)
    assert [r["name"] for r in rows][-1] == "total"
    assert all(r["bwd_ms"] is None for r in rows)
    with pytest.raises(ValueError, match="repeats"):
        cn.profile.profile_model(model, x, repeats=0)
    with pytest.raises(ValueError, match="stat"):
        cn.profile.profile_model(model, x, stat="mean")
