"""Divergence: NaN/inf in the inputs, the loss, the gradients or an update stops fit
with an error naming the epoch and the step (or, with TerminateOnNaN, only stops),
and the model keeps the weights of the last finite step (docs/reliability.md)."""

import numpy as np
import pytest

import convnet as cn
from convnet import finite
from convnet import layers as L
from convnet.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)


def dense_model(optimizer=None, seed=0, batchnorm=False):
    layers = [cn.layers.BatchNormalization()] if batchnorm else []
    model = cn.Sequential(layers + [cn.layers.Dense(3)], input_shape=(6,), seed=seed)
    model.compile(optimizer=optimizer or cn.optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)


class Recorder(Callback):
    """The weights (and optimizer state) after every completed step."""

    def __init__(self):
        super().__init__()
        self.weights, self.slots = [], []

    def on_batch_end(self, batch, logs=None):
        self.weights.append(self.model.get_weights())
        self.slots.append({k: v.copy() for k, v in self.model.optimizer.get_state()[1].items()})


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def all_finite(weights):
    return all(np.isfinite(w).all() for w in weights)


# ------------------------------------------------------------------ inputs
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_nonfinite_pixel_is_reported_at_the_first_batch_holding_it(numpy_backend, bad):
    x, y = data()
    x[27, 3] = bad                               # batch index 3 of 8-sample batches, in order
    model, rec = dense_model(), Recorder()
    with pytest.raises(ValueError, match=r"fit: epoch 1, step 4 \(batch index 3\): input 'input_layer\w*' "
                                         r"holds 1 NaN or inf values \(of 48\)"):
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[rec])
    assert len(rec.weights) == 3                 # three steps ran, the fourth never started
    assert same(model.get_weights(), rec.weights[-1])


def test_a_nonfinite_pixel_in_a_shuffled_run_names_its_epoch_and_step(numpy_backend):
    x, y = data()
    x[5, 0] = np.nan
    model = dense_model()
    # where sample 5 lands: the position ArrayBatches gives it in epoch 0
    order = cn.data.ArrayBatches([np.arange(40)], [y], batch_size=8, shuffle=True,
                                 seed=model._shuffle_entropy)
    step = next(i for i, (bx, _) in enumerate(order.iter_epoch(0)) if 5 in bx[0])
    with pytest.raises(ValueError, match=fr"epoch 1, step {step + 1} \(batch index {step}\)"):
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_integer_images_are_not_checked_and_train(numpy_backend):
    x = np.random.default_rng(0).integers(0, 256, (16, 6), dtype=np.uint8)
    model = dense_model()
    model.fit(x, np.zeros(16, np.int64), batch_size=8, epochs=1, verbose=0)
    assert all_finite(model.get_weights())


def test_train_step_refuses_nonfinite_inputs(numpy_backend):
    x, y = data(8)
    x[0, 0] = np.inf
    model = dense_model()
    before = model.get_weights()
    with pytest.raises(ValueError, match="train_step: input .* holds 1 NaN or inf"):
        model.train_step(x, y)
    assert same(model.get_weights(), before) and model.optimizer.iterations == 0


# ------------------------------------------------------------------ loss
def test_a_nonfinite_loss_stops_fit_with_the_epoch_and_step_and_keeps_the_last_weights(backend):
    x, y = data()
    x[24:32] = 1e38                              # finite inputs whose logits overflow to inf
    model, rec = dense_model(), Recorder()
    with pytest.raises(FloatingPointError, match=r"training diverged at epoch 1, step 4 \(batch index 3, "
                                                 r"optimizer step 4\): the loss is (nan|inf)"):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[rec])
    assert model.optimizer.iterations == 3
    assert same(model.get_weights(), rec.weights[-1]) and all_finite(model.get_weights())


def test_batchnorm_state_of_a_diverged_step_is_put_back(numpy_backend):
    x, y = data(16)
    model = dense_model(batchnorm=True)
    model.train_step(x[:8], y[:8])
    before = model.get_weights()                 # gamma, beta, moving mean/variance, W, b
    x_bad = x[8:].copy()
    x_bad[0] = 3e38                              # the batch variance overflows: NaN activations
    with pytest.raises(FloatingPointError, match=r"train_step: training diverged at optimizer step 2: the layer "
                                                 r"state \[.0/moving_variance.\] \(moving statistics\) went NaN"):
        model.train_step(x_bad, y[8:])
    assert same(model.get_weights(), before) and all_finite(model.get_weights())


# ------------------------------------------------------------------ gradients
def poison_gradients_at(model, call):
    """Make the backward pass of the `call`-th step (1-based) leave NaN in W's gradient."""
    original, calls = model.backward, []

    def backward(grads, **kwargs):
        result = original(grads, **kwargs)
        calls.append(1)
        if len(calls) == call:
            model.layers[-1].grads["W"][0, 0] = np.nan
        return result
    model.backward = backward


def test_nonfinite_gradients_stop_fit_and_the_update_is_not_applied(numpy_backend):
    x, y = data()
    model, rec = dense_model(), Recorder()
    poison_gradients_at(model, 7)                # epoch 2 (5 steps per epoch), step 2
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 2 \(batch index 1, optimizer step 7\): "
                                                 r"the gradients of 0/W \(1 values\) hold NaN or inf"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[rec])
    assert same(model.get_weights(), rec.weights[-1])
    # the Adam slots and step count were put back too
    iterations, slots = model.optimizer.get_state()
    assert iterations == 6 and slots.keys() == rec.slots[-1].keys()
    assert all(np.array_equal(slots[k], rec.slots[-1][k]) for k in slots)


def test_an_overflowing_update_from_finite_gradients_is_undone(numpy_backend):
    model = dense_model(optimizer=cn.optimizers.SGD(learning_rate=1e38))
    dense = model.layers[0]
    x, y = np.zeros((1, 6), np.float32), np.array([1])
    dense.params["b"][...] = [3.3e38, 3.0e38, 0.0]   # p(class 1) = 0: d loss / d b1 = -1
    before = model.get_weights()
    with pytest.raises(FloatingPointError, match="the update overflowed .* learning rate is too large"):
        model.train_step(x, y)                   # b1 + 1e38 would be inf in float32
    assert same(model.get_weights(), before) and model.optimizer.iterations == 0


def test_adam_steps_that_cannot_be_proved_finite_keep_the_undo(numpy_backend):
    # Adam's bounded step lets the guard skip its undo copy (Model._step_is_finite);
    # where the bound proves nothing, the step is still checked and undone
    model = dense_model(optimizer=cn.optimizers.Adam(learning_rate=1e38))   # a bound past float32
    x, y = np.zeros((1, 6), np.float32), np.array([1])
    model.layers[0].params["b"][...] = [3.3e38, 3.0e38, 0.0]
    before = model.get_weights()
    with pytest.raises(FloatingPointError, match="the update overflowed"):
        model.train_step(x, y)
    assert same(model.get_weights(), before) and model.optimizer.iterations == 0 and model.optimizer.slots == {}
    # gradients of up to 1.5e19: finite, with finite squares (2.25e38) whose sum
    # overflows float32, so nothing is proved; the step is taken on the undoable
    # path and, being finite, kept
    model = dense_model()
    x = np.full((2, 6), 1.5e19, np.float32)
    before = model.get_weights()
    model.train_step(x, np.array([0, 1]))
    after = model.get_weights()
    assert model.optimizer.iterations == 1 and all(np.isfinite(w).all() for w in after)
    grads = [g for _, _, g in model.params_and_grads()]
    assert all(np.isfinite(g).all() for g in grads) and not np.isfinite(finite.square_total(grads))
    # Adam's first step moves every weight with a gradient by lr = 0.01
    moved = np.abs(after[0] - before[0])
    assert moved.max() > 0
    np.testing.assert_allclose(moved[moved > 0], 0.01, rtol=1e-3)


def test_an_overflow_in_the_first_step_leaves_no_optimizer_slots(numpy_backend):
    model = dense_model(optimizer=cn.optimizers.SGD(learning_rate=1e38, momentum=0.9))
    x, y = np.zeros((1, 6), np.float32), np.array([1])
    model.layers[0].params["b"][...] = [3.3e38, 3.0e38, 0.0]
    with pytest.raises(FloatingPointError, match="the update overflowed"):
        model.train_step(x, y)
    # the velocity the failed step created is gone, as if the step never ran
    assert model.optimizer.slots == {} and model.optimizer.iterations == 0


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_a_state_array_replaced_by_the_forward_pass_is_checked_and_put_back(numpy_backend, bad):
    # a layer may assign a new state array instead of updating it in place: the
    # check reads the state as the forward pass left it, and the undo writes there
    model = cn.Sequential([L.Flatten(), L.BatchNormalization(), L.Dense(3)], input_shape=(2, 2, 1), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    bn = model.layers[1]
    before = bn.state["moving_mean"].copy()
    forward = bn.forward

    def forward_then_replace(x, training=False):
        y = forward(x, training=training)
        bn.state["moving_mean"] = np.full_like(before, bad)
        return y

    bn.forward = forward_then_replace
    with pytest.raises(FloatingPointError, match=r"layer state \['1/moving_mean'\]"):
        model.train_step(np.ones((4, 2, 2, 1), np.float32), np.array([0, 1, 2, 0]))
    assert np.array_equal(bn.state["moving_mean"], before) and model.optimizer.iterations == 0


def test_finite_weights_whose_float32_sum_overflows_train_on(numpy_backend):
    # the check sums in float32 (finite.all_finite): 3.3e38 + 3.0e38 overflows to inf
    # although every value is finite; that must not be taken for a divergence
    model = dense_model(optimizer=cn.optimizers.SGD(learning_rate=1e-3))
    x, y = np.zeros((1, 6), np.float32), np.array([0])   # class 0 already has p = 1
    model.layers[0].params["b"][...] = [3.3e38, 3.0e38, 0.0]
    assert not np.isfinite(model.layers[0].params["b"].sum())
    for _ in range(2):
        loss = model.train_step(x, y)
    assert loss == 0.0 and model.optimizer.iterations == 2


def test_all_finite_and_snapshot():
    big = np.full(4, 3e38, np.float32)
    assert finite.all_finite([big, np.ones(3, np.float16)])
    for bad in (np.nan, np.inf, -np.inf):
        assert not finite.all_finite([big, np.array([1.0, bad], np.float32)])
    a, b = np.arange(3.0), np.ones((2, 2), np.float32)
    snap = finite.Snapshot()
    snap.take({"a": a, "b": b})
    a += 5
    b[0, 0] = np.nan
    restored = snap.restore()
    assert restored["a"] is a and np.array_equal(a, np.arange(3.0)) and np.array_equal(b, np.ones((2, 2)))
    buffer = snap._buffers["a"]
    snap.take({"a": a, "b": b})                  # the same shapes: the same buffers, refilled
    assert snap._buffers["a"] is buffer


# ------------------------------------------------------------------ TerminateOnNaN
class PoisonAtEpoch(Callback):
    """At the start of epoch `epoch`, weights whose logits overflow: the loss is NaN."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.layers[-1].params["W"][...] = 3e38


def test_terminate_on_nan_stops_without_an_error(numpy_backend, capsys):
    x, y = data()
    model, rec = dense_model(), Recorder()
    history = model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0,
                        callbacks=[PoisonAtEpoch(2), rec, TerminateOnNaN()], validation_data=(x[:8], y[:8]))
    assert history.epoch == [0, 1, 2]            # stopped in the third epoch
    assert np.isnan(history.history["loss"][2]) and np.isfinite(history.history["loss"][:2]).all()
    assert "val_loss" in history.history and len(history.history["val_loss"]) == 3   # as Keras: validation runs
    assert "training diverged at epoch 3, step 1" in capsys.readouterr().out
    assert model.optimizer.iterations == 10
    # the weights are the poisoned ones of epoch 3's start (no update applied), finite
    assert np.all(model.layers[-1].params["W"] == np.float32(3e38))


def test_terminate_on_nan_also_stops_on_nonfinite_gradients(numpy_backend, capsys):
    x, y = data()
    model, rec = dense_model(), Recorder()
    poison_gradients_at(model, 3)
    terminate = TerminateOnNaN()
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[rec, terminate, "TerminateOnNaN"])
    assert history.epoch == [0]
    assert "the gradients of 0/W (1 values) hold NaN or inf" in terminate.message
    assert same(model.get_weights(), rec.weights[1]) and model.optimizer.iterations == 2
    # a loss that was finite still reads as finite in the history: the divergence was in the gradients
    assert np.isfinite(history.history["loss"][0])
    assert terminate.message in capsys.readouterr().out


def test_terminate_on_nan_raise_error_is_a_runtime_error(numpy_backend):
    x, y = data()
    model = dense_model()
    with pytest.raises(RuntimeError, match="training diverged at epoch 2, step 1"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[PoisonAtEpoch(1), TerminateOnNaN(True)])


# ------------------------------------------------------------------ ModelCheckpoint
def test_checkpoint_never_overwrites_a_good_file_with_a_diverged_model(numpy_backend, tmp_path):
    x, y = data()
    path = tmp_path / "ckpt.npz"
    model = dense_model()
    checkpoint = ModelCheckpoint(path, monitor="loss")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[checkpoint])
    good = path.read_bytes()
    with pytest.warns(UserWarning, match=r"ModelCheckpoint: epoch 2: loss is nan; not saving the model to .*"
                                         r"\(the previous file is kept\)"):
        model.fit(x, y, batch_size=8, epochs=2, initial_epoch=1, verbose=0,
                  callbacks=[PoisonAtEpoch(1), TerminateOnNaN(), checkpoint])
    assert path.read_bytes() == good
    assert all_finite(cn.load_model(path).get_weights())


class NaNWeightsAtEnd(Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            self.model.layers[-1].params["b"][0] = np.nan


@pytest.mark.parametrize("save_best_only", [False, True])
def test_checkpoint_skips_nonfinite_weights(numpy_backend, tmp_path, save_best_only):
    x, y = data()
    path = tmp_path / "ckpt.npz"
    model = dense_model()
    with pytest.warns(UserWarning, match=r"epoch 2: weights \['param/0/b'\] hold NaN or inf"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
            NaNWeightsAtEnd(), ModelCheckpoint(path, monitor="loss", save_best_only=save_best_only)])
    assert all_finite(cn.load_model(path).get_weights())


# ------------------------------------------------------------------ monitors
class Feed(Callback):
    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]


def fit_with(values, callback):
    x, y = data(16)
    model = dense_model(optimizer=cn.optimizers.SGD(learning_rate=0.1))
    history = model.fit(x, y, batch_size=8, epochs=len(values), verbose=0, callbacks=[Feed(values), callback])
    return model, history


def test_early_stopping_counts_nonfinite_values_as_no_improvement():
    # Keras: np.less(nan, best) is False, so NaN/inf epochs are epochs without improvement
    stop = EarlyStopping(monitor="score", mode="min", patience=2)
    _, history = fit_with([1.0, np.nan, np.inf, 0.5, 0.4], stop)
    assert history.epoch == [0, 1, 2] and stop.best == 1.0 and stop.stopped_epoch == 2


def test_early_stopping_never_takes_a_first_nan_as_its_best():
    # Keras 3 would take this NaN as best and then never see an improvement; convnet waits for a number
    stop = EarlyStopping(monitor="score", mode="max", patience=1, restore_best_weights=True)
    model, history = fit_with([np.nan, 0.5, 0.6, -np.inf], stop)
    assert stop.best == 0.6 and stop.best_epoch == 2 and history.epoch == [0, 1, 2, 3]


def test_reduce_lr_on_plateau_counts_nonfinite_values_as_no_improvement():
    reduce = ReduceLROnPlateau(monitor="score", factor=0.5, patience=2, mode="min")
    model, history = fit_with([np.nan, 1.0, np.nan, -np.inf, 0.9], reduce)
    assert reduce.best == 0.9
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05])


def test_checkpoint_save_best_only_ignores_nan_monitored_values(numpy_backend, tmp_path):
    path = tmp_path / "best.npz"
    checkpoint = ModelCheckpoint(path, monitor="score", save_best_only=True, mode="min")
    with pytest.warns(UserWarning, match="score is nan"):
        fit_with([2.0, np.nan, 3.0], checkpoint)
    assert checkpoint.best == 2.0


def test_convnet_train_reports_divergence_with_the_epoch_and_step(numpy_backend, tmp_path, monkeypatch, capsys):
    from convnet import cli
    monkeypatch.chdir(tmp_path)
    code = cli.main(["train", "synthetic", "--model", "fmnist-cnn", "--limit", "32", "--batch-size", "16",
                     "--epochs", "2", "--learning-rate", "1e30", "--backend", "numpy", "--verbose", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "convnet train: error: " in err and "training diverged at epoch 1, step 2 (batch index 1" in err
