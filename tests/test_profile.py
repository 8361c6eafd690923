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
    # each conv row names the algorithm it ran (the backend's choice); other rows none
    assert conv["algorithm"] == model.layers[0].algorithm(x.shape, training=True)
    assert conv["algorithm"] in printed[0].splitlines()[3] and "algorithm" in printed[0].splitlines()[1]
    assert all(r["algorithm"] is None for r in rows[1:])
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


def test_profile_times_the_backward_pass_training_runs(backend):
    """With a leading Rescaling, training runs no backward for it and the first
    Conv2D computes only its weight gradient: the profile must time the same."""
    model = cn.Sequential([L.Rescaling(1 / 255), L.Conv2D(4, 3, padding="same"), L.Flatten(), L.Dense(3)],
                          input_shape=(6, 6, 1), seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    calls = []
    conv = model.layers[1]
    original = conv.backward

    def spy(dy):
        calls.append(conv.skip_input_grad)
        return original(dy)
    conv.backward = spy
    x = np.zeros((2, 6, 6, 1), np.float32)
    rows = cn.profile.profile_model(model, x, np.array([0, 1]), repeats=2, warmup=0, print_fn=None)
    assert calls == [True, True]                # no input gradient, as in train_step
    rescale, conv_row = rows[0], rows[1]
    assert rescale["bwd_ms"] == 0 and rescale["bwd_gflops"] is None
    forward_flops = conv.flops_per_image() * 2
    assert conv_row["bwd_gflops"] * conv_row["bwd_ms"] == pytest.approx(conv_row["fwd_gflops"] * conv_row["fwd_ms"])
    assert forward_flops > 0


def test_profile_a_graph_model(backend):
    x = cn.Input(shape=(6, 6, 2))
    h = L.Add()([L.Conv2D(2, 3, padding="same")(x), x])
    model = cn.Model(x, L.Dense(3)(L.Flatten()(h)), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rows = cn.profile.profile_model(model, np.zeros((2, 6, 6, 2), np.float32), np.array([0, 1]),
                                    repeats=1, print_fn=None)
    assert [r["type"] for r in rows[:4]] == ["Conv2D", "Add", "Flatten", "Dense"]
