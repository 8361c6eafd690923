"""Keras' fit/evaluate/predict contract as the course's code uses it: evaluate's
return shapes, metric objects and their history names, sample and class weights,
iterators from ImageDataGenerator in fit/evaluate/predict (validation included),
and the warning for predict on a shuffling iterator (keras-team/keras #4225)."""

import warnings

import numpy as np
import pytest

import convnet as cn
from convnet import layers as L
from convnet.data import ImageDataGenerator


def data(n=48, seed=0, k=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4, 4, 1)).astype(np.float32)
    y = (x[:, 0, 0, 0] > 0).astype(np.int64) + (x[:, 1, 1, 0] > 0) * (k - 2)
    return x, y


def model(metrics=None, loss="sparse_categorical_crossentropy", optimizer=None, seed=0):
    m = cn.Sequential([L.Flatten(), L.Dense(3)], input_shape=(4, 4, 1), seed=seed)
    m.compile(optimizer=optimizer or cn.optimizers.Adam(1e-2), loss=loss, metrics=metrics)
    return m


# ----------------------------------------------------------- evaluate's shapes
def test_evaluate_returns_a_scalar_without_metrics(numpy_backend):
    x, y = data()
    result = model().evaluate(x, y)
    assert isinstance(result, float)
    assert model().evaluate(x, y, return_dict=True) == {"loss": result}


def test_evaluate_returns_loss_then_metrics_in_metrics_names_order(numpy_backend):
    x, y = data()
    m = model(metrics=["accuracy", "auc"])
    result = m.evaluate(x, y)
    logs = m.evaluate(x, y, return_dict=True)
    assert m.metrics_names == ["loss", "accuracy", "auc"]
    assert isinstance(result, list) and result == [logs["loss"], logs["accuracy"], logs["auc"]]
    probs = m.predict(x)
    assert logs["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y))
    assert logs["auc"] == pytest.approx(cn.metrics.AUC()(np.eye(3)[y], probs))


# ---------------------------------------------------------- metric objects
def test_history_uses_keras_metric_names_and_separate_validation_objects(numpy_backend):
    x, y = data()
    y1 = np.eye(3, dtype=np.float32)[y]
    auc = cn.metrics.AUC()
    m = model(metrics=["categorical_accuracy", auc, "precision"], loss="categorical_crossentropy")
    history = m.fit(x[:32], y1[:32], epochs=3, batch_size=8, verbose=0, validation_data=(x[32:], y1[32:]))
    assert set(history.history) == {"loss", "categorical_accuracy", "auc", "precision", "val_loss",
                                    "val_categorical_accuracy", "val_auc", "val_precision"}
    probs = m.predict(x[32:])
    # validation metrics are reset every epoch: the last one is exactly the final model's
    assert history.history["val_auc"][-1] == pytest.approx(cn.metrics.AUC()(y1[32:], probs))
    assert history.history["val_precision"][-1] == pytest.approx(cn.metrics.Precision()(y1[32:], probs))
    # the object the user passed holds the training results of the last epoch
    assert auc.result() == pytest.approx(history.history["auc"][-1])
    assert auc.result() != pytest.approx(history.history["val_auc"][-1])


def test_accuracy_string_resolves_by_loss(numpy_backend):
    x, y = data()
    m = model(metrics=["accuracy", "acc"], loss="categorical_crossentropy")
    assert [type(o).__name__ for o in m.metrics] == ["CategoricalAccuracy", "CategoricalAccuracy"]
    assert m.metrics_names == ["loss", "accuracy", "acc"]
    m = model(metrics=["accuracy"])
    assert type(m.metrics[0]).__name__ == "SparseCategoricalAccuracy"


def test_metric_objects_save_and_load_by_config(tmp_path, numpy_backend):
    x, y = data()
    m = model(metrics=["accuracy", cn.metrics.AUC(curve="PR", name="pr_auc"), "exact_macro_auc"])
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    m.save(tmp_path / "m.npz")
    loaded = cn.load_model(tmp_path / "m.npz")
    assert loaded.metrics_names == ["loss", "accuracy", "pr_auc", "exact_macro_auc"]
    assert loaded.metrics[1].curve == "PR"
    assert loaded.evaluate(x, y) == pytest.approx(m.evaluate(x, y))


def test_unknown_metric_fails_at_compile(numpy_backend):
    with pytest.raises(ValueError, match="unknown metric 'nope'"):
        model(metrics=["nope"])


# ------------------------------------------------------ sample/class weights
def test_weighted_loss_is_sum_of_weighted_losses_over_batch_size(numpy_backend):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 3))
    y = np.array([0, 2, 1, 1, 0])
    w = np.array([1.0, 0.0, 2.0, 0.5, 3.0])
    loss = cn.losses.SparseCategoricalCrossentropy(from_logits=True)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    per_sample = -np.log(p[np.arange(5), y])
    assert loss.forward(logits, y, sample_weight=w) == pytest.approx((w * per_sample).sum() / 5)
    grad = loss.backward()
    expected = (p - np.eye(3)[y]) * w[:, None] / 5
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy: sample_weight must have shape \(5,\)"):
        loss.forward(logits, y, sample_weight=np.ones(4))


def one_step(sample_weight=None, class_weight=None, x=None, y=None, lr=0.5):
    xd, yd = data()
    x = xd if x is None else x
    y = yd if y is None else y
    m = model(optimizer=cn.optimizers.SGD(learning_rate=lr))
    m.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0, sample_weight=sample_weight,
          class_weight=class_weight)
    return m.get_weights()


def test_zero_sample_weight_removes_samples(numpy_backend):
    # one full-batch SGD step: weights 0 drop the samples; the loss still divides by
    # the full batch, so the kept samples' step equals their own step at lr * kept/N
    x, y = data()
    w = np.r_[np.ones(30), np.zeros(18)]
    weighted = one_step(sample_weight=w)
    subset = one_step(x=x[:30], y=y[:30], lr=0.5 * 30 / 48)
    for a, b in zip(weighted, subset):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_class_weight_equals_the_sample_weights_of_the_labels(numpy_backend):
    x, y = data()
    class_weight = {0: 1.0, 1: 3.0, 2: 0.5}
    by_class = one_step(class_weight=class_weight)
    by_sample = one_step(sample_weight=np.array([class_weight[c] for c in y]))
    for a, b in zip(by_class, by_sample):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    both = one_step(class_weight=class_weight, sample_weight=np.full(len(y), 2.0))
    doubled = one_step(sample_weight=2.0 * np.array([class_weight[c] for c in y]))
    for a, b in zip(both, doubled):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match=r"class_weight\[1\] must be a finite number"):
        one_step(class_weight={0: 1.0, 1: -2.0})


def test_flow_with_sample_weight_trains_as_arrays_with_sample_weight(numpy_backend):
    x, y = data()
    w = np.linspace(0.0, 2.0, len(y))
    m = model(optimizer=cn.optimizers.SGD(learning_rate=0.5))
    it = ImageDataGenerator().flow(x, y, sample_weight=w, batch_size=len(x), shuffle=False)
    m.fit(it, epochs=1, verbose=0)
    for a, b in zip(m.get_weights(), one_step(sample_weight=w)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------- iterators
def test_iterators_in_fit_evaluate_and_predict_with_fractional_steps(numpy_backend):
    x, y = data(n=50)
    gen = ImageDataGenerator()
    m = model(metrics=["accuracy"])
    train = gen.flow(x[:40], y[:40], batch_size=16, seed=0)
    val = gen.flow(x[40:], y[40:], batch_size=4, shuffle=False)
    history = m.fit(train, steps_per_epoch=40 / 16, epochs=2, validation_data=val,
                    validation_steps=10 / 4, verbose=0)
    assert len(history.history["val_accuracy"]) == 2
    # validation_steps=2.5 reads ceil(2.5) = 3 batches: rows 40..49 (4 + 4 + 2)
    assert history.history["val_loss"][-1] == pytest.approx(m.evaluate(x[40:], y[40:])[0], rel=1e-6)
    assert m.evaluate(val, steps=10 / 4) == pytest.approx(m.evaluate(x[40:], y[40:]), rel=1e-6)
    probs = m.predict(gen.flow(x, batch_size=8, shuffle=False), steps=50 / 8)
    np.testing.assert_allclose(probs, m.predict(x), rtol=1e-6)
    assert m.predict(gen.flow(x, batch_size=8, shuffle=False), steps=1).shape == (8, 3)


def test_predict_warns_once_on_a_shuffling_iterator(numpy_backend):
    x, y = data()
    m = model()
    gen = ImageDataGenerator()
    with pytest.warns(UserWarning, match="shuffle=False") as record:
        m.predict(gen.flow(x, y, batch_size=8, shuffle=True, seed=1))
    assert len([r for r in record if "shuffle" in str(r.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = m.predict(gen.flow(x, y, batch_size=8, shuffle=False))
    # without shuffling the rows line up with .classes
    assert probs.shape == (48, 3)
    np.testing.assert_allclose(probs, m.predict(x), rtol=1e-6)


def test_fit_refuses_sample_weight_with_an_iterator(numpy_backend):
    x, y = data()
    with pytest.raises(ValueError, match=r"yield \(x, y, sample_weight\) batches"):
        model().fit(ImageDataGenerator().flow(x, y), sample_weight=np.ones(len(y)), verbose=0)


def test_weights_and_metric_objects_on_every_backend(backend):
    """Sample weights and class weights reach the loss on the device, metrics read
    host probabilities: nothing mixes host and device arrays (strict stand-in)."""
    x, y = data()
    m = model(metrics=["accuracy", "auc"], optimizer=cn.optimizers.SGD(learning_rate=0.5))
    it = ImageDataGenerator().flow(x, y, sample_weight=np.linspace(0, 2, len(y)), batch_size=16, shuffle=False)
    history = m.fit(it, epochs=2, verbose=0, validation_data=(x, y), class_weight={0: 2.0})
    assert set(history.history) == {"loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc"}
    loss, accuracy, auc = m.evaluate(x, y, sample_weight=np.ones(len(y)))
    assert loss == pytest.approx(m.evaluate(x, y)[0], rel=1e-5)
    assert history.history["val_auc"][-1] == pytest.approx(auc)
