"""Callbacks driven through Sequential.fit on a tiny model (numpy backend)."""

import csv

import numpy as np
import pytest

import convnet as cn
from convnet.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
)


@pytest.fixture(autouse=True)
def _numpy(numpy_backend):
    yield


def tiny_model(lr=0.1, seed=0):
    model = cn.Sequential([cn.layers.Dense(3)], input_shape=(6,), seed=seed)
    model.compile(optimizer=cn.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def tiny_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    return x, y


class Feed(Callback):
    """Puts a scripted value into the logs under `key` (runs before the callback under test)
    and records the weights at the end of every epoch."""

    def __init__(self, values, key="score"):
        super().__init__()
        self.values, self.key, self.weights = values, key, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


# ------------------------------------------------------------------ EarlyStopping
def test_early_stopping_stops_and_restores_best_weights():
    x, y = tiny_data()
    model = tiny_model()
    # best at epoch 1 (0.5); epochs 2 and 3 do not improve -> stop after epoch 3
    feed = Feed([1.0, 0.5, 0.7, 0.6, 0.1, 0.1])
    stop = EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=6, batch_size=8, verbose=0, callbacks=[feed, stop])
    assert len(history.history["loss"]) == 4
    assert history.history["score"] == [1.0, 0.5, 0.7, 0.6]
    assert (stop.best, stop.best_epoch, stop.stopped_epoch) == (0.5, 1, 3)
    assert same(model.get_weights(), feed.weights[1])
    assert not same(model.get_weights(), feed.weights[3])     # training really moved on


def test_early_stopping_without_restore_keeps_last_weights_and_min_delta():
    x, y = tiny_data()
    model = tiny_model()
    # with min_delta=0.1, 0.95 and 0.92 are not improvements on 1.0
    feed = Feed([1.0, 0.95, 0.92, 0.5, 0.5])
    stop = EarlyStopping(monitor="score", patience=2, min_delta=0.1)
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[feed, stop])
    assert len(history.history["score"]) == 3 and stop.stopped_epoch == 2
    assert same(model.get_weights(), feed.weights[2])


def test_early_stopping_mode_max_and_patience_zero():
    x, y = tiny_data()
    feed = Feed([0.5, 0.6, 0.55, 0.9])
    stop = EarlyStopping(monitor="val_accuracy_like", patience=0, mode="max")
    feed.key = "val_accuracy_like"
    history = tiny_model().fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[feed, stop])
    assert len(history.history["loss"]) == 3 and stop.best == 0.6
    assert EarlyStopping(monitor="val_auc").mode == "max"
    assert EarlyStopping(monitor="val_loss").mode == "min"


def test_early_stopping_on_real_val_loss():
    # a learning rate so large that val_loss blows up after the first epochs
    x, y = tiny_data()
    model = tiny_model(lr=50.0)
    stop = EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    weights = Feed([0.0] * 30, key="unused")
    history = model.fit(x, y, epochs=30, batch_size=4, verbose=0, validation_data=(x, y),
                        callbacks=[weights, stop])
    val = history.history["val_loss"]
    assert len(val) < 30
    assert stop.best == min(val) and stop.best_epoch == int(np.argmin(val))
    assert same(model.get_weights(), weights.weights[stop.best_epoch])
    assert model.evaluate(x, y)[0] == pytest.approx(min(val), rel=1e-5)


def test_missing_monitor_is_a_clear_error():
    x, y = tiny_data()
    with pytest.raises(ValueError, match="'val_loss' is not in the logs"):
        tiny_model().fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping()])


# ---------------------------------------------------------------- ModelCheckpoint
def test_model_checkpoint_formats_path_every_epoch(tmp_path):
    x, y = tiny_data()
    feed = Feed([0.25, 0.125, 0.5])
    ckpt = ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{score:.3f}.npz"), monitor="score")
    model = tiny_model()
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[feed, ckpt])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["m-01-0.250.npz", "m-02-0.125.npz", "m-03-0.500.npz"]
    loaded = cn.load_model(tmp_path / "m-02-0.125.npz")
    assert same(loaded.get_weights(), feed.weights[1])


def test_model_checkpoint_save_best_only(tmp_path):
    x, y = tiny_data()
    feed = Feed([0.9, 0.4, 0.6, 0.3, 0.8])
    path = tmp_path / "best.npz"
    ckpt = ModelCheckpoint(path, monitor="score", save_best_only=True)
    model = tiny_model()
    model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[feed, ckpt])
    assert ckpt.best == 0.3
    assert same(cn.load_model(path).get_weights(), feed.weights[3])
    assert [p.name for p in tmp_path.iterdir()] == ["best.npz"]      # no temporary files left


def test_model_checkpoint_bad_field(tmp_path):
    x, y = tiny_data()
    ckpt = ModelCheckpoint(str(tmp_path / "m-{val_acc:.2f}.npz"), monitor="loss")
    with pytest.raises(ValueError, match="cannot fill the filepath.*available fields"):
        tiny_model().fit(x, y, epochs=1, verbose=0, callbacks=[ckpt])


# -------------------------------------------------------------- learning rates
def test_reduce_lr_on_plateau_by_hand():
    x, y = tiny_data()
    model = tiny_model(lr=0.08)
    # factor 0.5, patience 2, cooldown 1, min_lr 0.015, min_delta 0.01:
    # e0 1.0    best                        lr .08
    # e1 0.995  not better by 0.01: wait 1  lr .08
    # e2 1.0    wait 2 -> reduce            lr .04, cooldown 1
    # e3 1.0    cooldown epoch              lr .04
    # e4 1.0    wait 1                      lr .04
    # e5 1.0    wait 2 -> reduce            lr .02, cooldown 1
    # e6 0.5    cooldown epoch, new best    lr .02
    # e7 0.5    wait 1
    # e8 0.5    wait 2 -> .01, clamped to min_lr .015
    # e9..      cooldown, wait 1, wait 2 but lr is at min_lr: stays .015
    feed = Feed([1.0, 0.995, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    cb = ReduceLROnPlateau(monitor="score", factor=0.5, patience=2, cooldown=1, min_lr=0.015,
                           min_delta=0.01)
    history = model.fit(x, y, epochs=13, batch_size=40, verbose=0, callbacks=[feed, cb])
    np.testing.assert_allclose(history.history["learning_rate"],
                               [.08, .08, .04, .04, .04, .02, .02, .02, .015, .015, .015, .015, .015])
    assert model.optimizer.learning_rate == pytest.approx(0.015)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.5)


def test_learning_rate_scheduler_changes_the_step():
    x, y = tiny_data()
    seen = []

    class Spy(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.optimizer.learning_rate)

    sched = LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr * 0.5)
    model = tiny_model(lr=0.2)
    history = model.fit(x, y, epochs=3, batch_size=40, verbose=0, callbacks=[sched, Spy()])
    assert seen == [0.2, 0.1, 0.05]
    assert history.history["learning_rate"] == [0.2, 0.1, 0.05]

    # the step really used the scheduled rate: one SGD step of lr 0.05 == the update seen
    model = tiny_model(lr=1.0)
    w0 = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=40, verbose=0, shuffle=False,
              callbacks=[LearningRateScheduler(lambda epoch: 0.05)])
    ref = tiny_model(lr=0.05)
    ref.set_weights(w0)
    ref.train_step(x, y)
    assert same(model.get_weights(), ref.get_weights())
    with pytest.raises(ValueError, match="positive number"):
        tiny_model().fit(x, y, epochs=1, verbose=0,
                         callbacks=[LearningRateScheduler(lambda e, lr: -1.0)])


# ------------------------------------------------------------------- CSVLogger
def test_csv_logger_rows_and_append(tmp_path):
    x, y = tiny_data()
    path = tmp_path / "log.csv"
    model = tiny_model()
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_data=(x, y),
                        callbacks=[CSVLogger(path)])
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    assert [float(r[2]) for r in rows[1:]] == history.history["loss"]      # exact round trip
    model.fit(x, y, epochs=5, initial_epoch=3, batch_size=8, verbose=0, validation_data=(x, y),
              callbacks=[CSVLogger(path, append=True)])
    rows = list(csv.reader(open(path)))
    assert len(rows) == 6 and rows.count(rows[0]) == 1 and rows[-1][0] == "4"
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[CSVLogger(path)])
    rows = list(csv.reader(open(path)))
    assert rows[0] == ["epoch", "accuracy", "loss"] and len(rows) == 2


# --------------------------------------------------------------------- verbose
def test_verbose_levels(capsys):
    x, y = tiny_data()
    tiny_model().fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert capsys.readouterr().out == ""

    tiny_model().fit(x, y, epochs=2, batch_size=8, verbose=2, validation_data=(x, y))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Epoch 1/2 - ") and lines[1].startswith("Epoch 2/2 - ")
    for key in ("loss: ", "accuracy: ", "val_loss: ", "val_accuracy: "):
        assert key in lines[1]

    tiny_model().fit(x, y, epochs=2, batch_size=8, verbose=1)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Epoch 1/2" in text and "Epoch 2/2" in text and "5/5" in text
    assert "accuracy: " in text

    with pytest.raises(ValueError, match="verbose must be"):
        tiny_model().fit(x, y, epochs=1, verbose=3)


def test_progbar_counts_running_means_weighted_by_batch_size():
    bar = ProgbarLogger(verbose=2)
    bar.set_params({"epochs": 1, "steps": 2})
    bar.on_epoch_begin(0)
    bar.on_batch_end(0, {"loss": 1.0, "accuracy": 0.5, "size": 3})
    bar.on_batch_end(1, {"loss": 3.0, "accuracy": 1.0, "size": 1})
    assert bar.running_logs() == pytest.approx({"loss": 1.5, "accuracy": 0.625})


def test_fit_passes_batch_accuracy_to_callbacks():
    x, y = tiny_data()
    seen = []

    class Record(cn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

    model = tiny_model()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[Record()])
    assert seen and all(set(logs) == {"loss", "size", "accuracy"} for logs in seen)
    assert all(0.0 <= logs["accuracy"] <= 1.0 for logs in seen)


def test_callback_names():
    assert isinstance(cn.callbacks.get("EarlyStopping"), EarlyStopping)
    with pytest.raises(ValueError, match="unknown callback 'EarlyStop'"):
        cn.callbacks.get("EarlyStop")
    with pytest.raises(ValueError, match="needs arguments"):
        cn.callbacks.get("ModelCheckpoint")
    x, y = tiny_data()
    with pytest.raises(ValueError, match="unknown callback"):
        tiny_model().fit(x, y, epochs=1, verbose=0, callbacks=["nope"])


def test_cli_history_csv_is_the_csv_logger_format(tmp_path):
    """One history CSV format: the run directory's history.csv reads like CSVLogger's."""
    from convnet.cli import write_history

    logs = [{"loss": 1.5, "accuracy": 0.25, "val_loss": 1.75}, {"loss": 1.0, "accuracy": 0.5, "val_loss": 1.25}]
    logger = cn.callbacks.CSVLogger(tmp_path / "logger.csv")
    logger.on_train_begin()
    for epoch, log in enumerate(logs):
        logger.on_epoch_end(epoch, dict(log))
    logger.on_train_end()
    history = {k: [log[k] for log in logs] for k in logs[0]}
    write_history(tmp_path, history)
    assert (tmp_path / "history.csv").read_text() == (tmp_path / "logger.csv").read_text()
    assert (tmp_path / "history.csv").read_text().splitlines()[1].startswith("0,")
