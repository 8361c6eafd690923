"""Learning-rate schedules: Keras' CosineDecay and ExponentialDecay, worked out by
hand, and an optimizer that follows one step by step, in and out of model files."""

import math

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet.optimizers import schedules


def test_cosine_decay_values_by_hand():
    cosine = schedules.CosineDecay(1.0, decay_steps=4)
    # 0.5 * (1 + cos(pi * t / 4)) for t = 0..4, then flat at the end value
    expected = [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2, 0.0, 0.0]
    np.testing.assert_allclose([cosine(t) for t in range(6)], expected, atol=1e-15)
    floor = schedules.CosineDecay(2.0, decay_steps=2, alpha=0.1)
    # 2 * (0.9 * 0.5 * (1 + cos(pi * t / 2)) + 0.1): 2, 1.1, 0.2
    np.testing.assert_allclose([floor(t) for t in range(4)], [2.0, 1.1, 0.2, 0.2], atol=1e-15)


def test_cosine_decay_warmup_rises_then_decays_from_the_target():
    warm = schedules.CosineDecay(0.0, decay_steps=2, warmup_target=1.0, warmup_steps=2)
    np.testing.assert_allclose([warm(t) for t in range(6)], [0.0, 0.5, 1.0, 0.5, 0.0, 0.0], atol=1e-15)


def test_exponential_decay_smooth_and_staircase():
    smooth = schedules.ExponentialDecay(1.0, decay_steps=2, decay_rate=0.5)
    np.testing.assert_allclose([smooth(t) for t in range(4)], [1.0, 0.5 ** 0.5, 0.5, 0.5 ** 1.5])
    stairs = schedules.ExponentialDecay(1.0, decay_steps=2, decay_rate=0.5, staircase=True)
    assert [stairs(t) for t in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_each_step_uses_the_schedule_at_the_steps_made_before_it(backend):
    # plain SGD with gradient 1: p drops by exactly the rate of each step
    cosine = schedules.CosineDecay(0.1, decay_steps=3)
    sgd = cn.optimizers.SGD(cosine)
    p = backend.asarray(np.zeros(2))
    for _ in range(4):
        sgd.apply_gradients([("p", p, backend.asarray(np.ones(2)))])
    expected = -sum(cosine(t) for t in range(4))      # rates 0.1, 0.075, 0.025, 0
    np.testing.assert_allclose(backend.to_numpy(p), [expected, expected], rtol=1e-12)
    assert sgd.iterations == 4 and sgd.learning_rate == 0.0


def test_a_scheduled_rate_cannot_be_set_to_a_number():
    adam = cn.optimizers.Adam(schedules.CosineDecay(1e-3, decay_steps=10))
    with pytest.raises(TypeError, match="follows a CosineDecay schedule and cannot be set"):
        adam.learning_rate = 1e-4
    adam.learning_rate = schedules.ExponentialDecay(1e-3, 10, 0.5)    # another schedule may replace it
    assert isinstance(adam.schedule, schedules.ExponentialDecay)
    assert cn.optimizers.Adam(1e-3).schedule is None


def small_model():
    model = cn.Sequential([L.Input(shape=(4,)), L.Dense(3)], seed=0)
    return model


@pytest.mark.parametrize("callback", [cn.callbacks.ReduceLROnPlateau(monitor="loss"),
                                      cn.callbacks.LearningRateScheduler(lambda epoch: 1e-3)])
def test_callbacks_that_set_the_rate_refuse_a_schedule_before_training(callback):
    model = small_model()
    model.compile(optimizer=cn.optimizers.Adam(schedules.CosineDecay(1e-2, 5)),
                  loss="sparse_categorical_crossentropy")
    before = model.get_weights()
    x, y = np.ones((8, 4), np.float32), np.zeros(8, np.int64)
    with pytest.raises(ValueError, match=f"{type(callback).__name__}: the optimizer's learning rate "
                                         "follows a CosineDecay schedule"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_schedule_and_its_step_survive_a_model_file(tmp_path, rng):
    model = small_model()
    model.compile(optimizer=cn.optimizers.Adam(schedules.CosineDecay(1e-2, 20, alpha=0.05)),
                  loss="sparse_categorical_crossentropy")
    x, y = rng.standard_normal((32, 4)).astype(np.float32), rng.integers(0, 3, 32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = cn.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == 4
    assert loaded.optimizer.learning_rate == pytest.approx(model.optimizer.learning_rate, rel=1e-15)


@pytest.mark.parametrize("make,message", [
    (lambda: schedules.CosineDecay(1e-3, decay_steps=0), "CosineDecay: decay_steps must be >= 1"),
    (lambda: schedules.CosineDecay(1e-3, 10, alpha=2.0), r"CosineDecay: alpha must be in \[0, 1\]"),
    (lambda: schedules.ExponentialDecay(1e-3, 10, decay_rate=0.0), "ExponentialDecay: decay_rate must be a positive"),
    (lambda: schedules.deserialize({"class_name": "OneCycle", "config": {}}),
     "unknown learning-rate schedule 'OneCycle'"),
    (lambda: cn.optimizers.Adam(-1.0), "Adam: learning_rate must be a positive number"),
    (lambda: cn.optimizers.SGD({"class_name": "CosineDecay", "config": {"decay_steps": 5}}),
     "SGD: learning_rate: .*initial_learning_rate"),
    (lambda: cn.optimizers.SGD({}), "SGD: learning_rate: unknown learning-rate schedule None"),
])
def test_bad_schedules_name_what_is_wrong(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()
