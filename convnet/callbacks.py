"""Callbacks: hooks called by Sequential.fit (the Keras protocol).

fit calls on_train_begin, then per epoch on_epoch_begin, on_batch_begin/on_batch_end
per batch, on_epoch_end(epoch, logs) with logs such as {"loss", "accuracy",
"val_loss", ...}, and on_train_end. A callback may set model.stop_training = True to
stop after the current epoch, or change model.optimizer.learning_rate.

Order: the callbacks given to fit run first, in the order given, then History,
then the progress display (ProgbarLogger), so History and the progress line see
what the others added to the logs (such as "learning_rate").

    EarlyStopping       stop when a monitored value stops improving
    ModelCheckpoint     save the model every epoch, or only when it improved
    ReduceLROnPlateau   divide the learning rate when a value stops improving
    LearningRateScheduler   lr = schedule(epoch, lr) at the start of each epoch
    CSVLogger           one CSV row of logs per epoch
    TerminateOnNaN      stop (without an error) when the loss or gradients go NaN/inf
    ProgbarLogger       verbose=1: a tqdm bar per epoch; verbose=2: one line per epoch
"""

import csv
import inspect
import math
import os
import sys
import time
import warnings

from .finite import nonfinite_arrays


class Callback:
    """Base class; every hook does nothing."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        """fit passes {"epochs", "steps", "verbose"}; steps may be None (unknown)."""
        self.params = dict(params)

    def get_state(self):
        """(state, arrays) that a model file keeps so a resumed fit continues this
        callback where it was: a JSON-friendly dict (None: this callback keeps no
        state across a resume) and a {name: array} dict."""
        return None, {}

    def set_state(self, state, arrays):
        """Restore what get_state() returned (called on resume, after on_train_begin)."""

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass


class CallbackList:
    """Calls each hook on every callback in order."""

    def __init__(self, callbacks, model):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback objects, got {type(cb).__name__}")
            cb.set_model(model)

    def set_params(self, params):
        for cb in self.callbacks:
            cb.set_params(params)

    def __getattr__(self, hook):
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def call(*args, **kwargs):
            for cb in self.callbacks:
                getattr(cb, hook)(*args, **kwargs)
        return call


class History(Callback):
    """Records the logs of every epoch: history.history["loss"] is a list, one per epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _monitor_mode(monitor, mode, owner):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if any(k in monitor for k in ("acc", "auc", "precision", "recall", "f1")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved by more than `min_delta` for
    `patience` epochs (patience=0: at the first epoch without improvement).

    mode: "min", "max", or "auto" (max for accuracy/AUC/precision/recall/F1 names,
    else min). With restore_best_weights=True the model gets back the weights (and
    BatchNorm state) of its best epoch when training ends, whether it stopped early
    or ran all its epochs. Attributes: best, best_epoch, stopped_epoch (0-based;
    None when it did not stop early), wait.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False, verbose=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.mode = _monitor_mode(monitor, mode, "EarlyStopping")
        self.restore_best_weights = bool(restore_best_weights)
        self.verbose = verbose

    def _improved(self, value):
        # a NaN or inf value is never an improvement and counts as an epoch without
        # one: what Keras does once it has a finite best (np.less(nan, best) is False).
        # Keras 3 takes even a NaN of the first epoch as its best, after which nothing
        # can improve on it; convnet does not.
        if not _finite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        self.stopped_epoch = None

    def get_state(self):
        weights = self.best_weights or []
        return ({"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                 "stopped_epoch": self.stopped_epoch, "best_weights": len(weights)},
                {f"best_weights/{i}": w for i, w in enumerate(weights)})

    def set_state(self, state, arrays):
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_epoch = int(state["wait"]), state["stopped_epoch"]
        count = int(state.get("best_weights", 0))
        self.best_weights = [arrays[f"best_weights/{i}"] for i in range(count)] if count else None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping: monitored quantity {self.monitor!r} is not in the "
                             f"logs; available: {sorted(logs)}")
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience and epoch > 0:      # Keras never stops after the first epoch
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        if self.verbose and self.stopped_epoch is not None:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping "
                  f"(best {self.monitor} {self.best:.4f} at epoch {self.best_epoch + 1})")


class TerminateOnNaN(Callback):
    """Stop training, without an error, when a batch's loss is NaN or inf (Keras'
    TerminateOnNaN); with it, fit also stops (instead of raising) on non-finite
    gradients. The diverged update is never applied, so the model keeps the
    weights of the step before. The epoch ends there (its logs' loss is NaN),
    validation and on_epoch_end still run, as in Keras.

    raise_error=True: raise a RuntimeError instead (Keras 3's option).
    Attribute: message (what stopped training; None while it did not).
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = bool(raise_error)
        self.message = None

    def on_train_begin(self, logs=None):
        self.message = None

    def terminate(self, message):
        """Stop the fit in progress because of `message` (fit calls this on divergence)."""
        if self.raise_error:
            raise RuntimeError(message)
        self.message = message
        print(message, flush=True)
        self.model.stop_training = True

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.message is None and loss is not None and not math.isfinite(float(loss)):
            self.terminate(f"Batch {batch}: Invalid loss, terminating training")


def _finite(value):
    """Keras compares NaN as never better than a finite best; convnet refuses every
    non-finite value as an improvement (see EarlyStopping)."""
    return math.isfinite(value)


class _Monitor:
    """Shared by the callbacks that watch one value of the logs."""

    def _read(self, logs, owner):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"{owner}: monitored quantity {self.monitor!r} is not in the logs; "
                             f"available: {sorted(logs)} (val_* needs validation data)")
        return float(logs[self.monitor])

    def _better(self, value, best, min_delta=0.0):
        # non-finite values never improve (see EarlyStopping._improved)
        if not _finite(value):
            return False
        if best is None:
            return True
        if self.mode == "min":
            return value < best - min_delta
        return value > best + min_delta


def _learning_rate(model, owner):
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"{owner}: the model has no optimizer with a learning_rate; compile it first")
    if getattr(optimizer, "schedule", None) is not None:
        raise ValueError(f"{owner}: the optimizer's learning rate follows a {type(optimizer.schedule).__name__} "
                         f"schedule, which {owner} cannot change; use one or the other")
    return float(optimizer.learning_rate)


class ModelCheckpoint(_Monitor, Callback):
    """Save the model (architecture, weights, optimizer state) at the end of epochs.

    filepath may hold fields filled from the epoch (1-based) and the logs, as in
    Keras: "ckpt/model-{epoch:02d}-{val_loss:.3f}.npz". With save_best_only=True a
    file is written only when `monitor` improved on the best value so far (with a
    fixed filepath, the file always holds the best model). Files are written
    atomically: an interrupted save leaves the previous file intact.
    Attributes: best (best monitored value), last_path (the last file written).

    The file also holds the state of the fit's other callbacks (EarlyStopping's
    wait, ReduceLROnPlateau's counters) as they are when it is written: callbacks
    run in list order, so list ModelCheckpoint last for a file whose states
    include this epoch (a fit resumed from it then continues exactly).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 mode="auto", save_freq="epoch"):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.mode = _monitor_mode(monitor, mode, "ModelCheckpoint")
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq >= 1):
            raise ValueError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive int "
                             f"(every that many epochs), got {save_freq!r}")
        self.save_freq = save_freq
        self.best = None
        self.last_path = None

    def get_state(self):
        return {"best": self.best}, {}

    def set_state(self, state, arrays):
        self.best = state["best"]

    def _format(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **(logs or {}))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"ModelCheckpoint: cannot fill the filepath {self.filepath!r} "
                             f"({type(exc).__name__}: {exc}); available fields: "
                             f"{['epoch'] + sorted(logs or {})}") from exc

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq != "epoch" and (epoch + 1) % self.save_freq:
            return
        path = self._format(epoch, logs)
        # never replace a good file with a diverged model: a NaN/inf loss this epoch
        # (TerminateOnNaN stopped it) or NaN/inf weights skip the save
        bad_logs = [k for k in ("loss", self.monitor) if k in (logs or {}) and not _finite(float(logs[k]))]
        bad_weights = [] if bad_logs else nonfinite_arrays(self.model.named_weights())
        if bad_logs or bad_weights:
            what = (f"{bad_logs[0]} is {float(logs[bad_logs[0]])}" if bad_logs
                    else f"weights {bad_weights[:3]} hold NaN or inf")
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1}: {what}; not saving the model to {path}"
                          f"{' (the previous file is kept)' if os.path.exists(path) else ''}", stacklevel=2)
            return
        if self.save_best_only:
            value = self._read(logs, "ModelCheckpoint")
            if not self._better(value, self.best):
                return
            previous, self.best = self.best, value
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from "
                      f"{'inf' if previous is None else f'{previous:.5f}'} to {value:.5f}, "
                      f"saving model to {path}")
        elif self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        self.model.save(path)
        self.last_path = path


class ReduceLROnPlateau(_Monitor, Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved by more
    than `min_delta` for `patience` epochs; the `cooldown` epochs after a reduction
    do not count towards patience (Keras still counts the last of them, so there
    cooldown=1 has no effect). The rate never goes below `min_lr`. Adds
    "learning_rate" to the logs of every epoch.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        if patience < 0 or cooldown < 0 or min_lr < 0:
            raise ValueError("ReduceLROnPlateau: patience, cooldown and min_lr must be >= 0")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _monitor_mode(monitor, mode, "ReduceLROnPlateau")
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)

    def on_train_begin(self, logs=None):
        _learning_rate(self.model, "ReduceLROnPlateau")
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}, {}

    def set_state(self, state, arrays):
        self.best = state["best"]
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])

    def on_epoch_end(self, epoch, logs=None):
        value = self._read(logs, "ReduceLROnPlateau")
        lr = _learning_rate(self.model, "ReduceLROnPlateau")
        in_cooldown = self.cooldown_counter > 0
        if in_cooldown:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(value, self.best, self.min_delta):
            self.best = value
            self.wait = 0
        elif not in_cooldown:
            self.wait += 1
            if self.wait >= self.patience and lr > self.min_lr:
                new_lr = max(lr * self.factor, self.min_lr)
                self.model.optimizer.learning_rate = new_lr
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                          f"to {new_lr:.4g}")
                self.cooldown_counter = self.cooldown
                self.wait = 0
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch: lr = schedule(epoch, lr).

    `epoch` counts from 0; a schedule of one argument, schedule(epoch), also works.
    Adds "learning_rate" to the logs of every epoch.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, got "
                            f"{type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose
        try:
            params = inspect.signature(schedule).parameters.values()
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            self._one_arg = len(positional) == 1 and not any(
                p.kind == p.VAR_POSITIONAL for p in params)
        except (TypeError, ValueError):
            self._one_arg = False

    def on_epoch_begin(self, epoch, logs=None):
        lr = _learning_rate(self.model, "LearningRateScheduler")
        new_lr = self.schedule(epoch) if self._one_arg else self.schedule(epoch, lr)
        try:
            new_lr = float(new_lr)
        except (TypeError, ValueError):
            raise ValueError(f"LearningRateScheduler: the schedule must return a number, "
                             f"got {new_lr!r}") from None
        if not math.isfinite(new_lr) or new_lr <= 0:
            raise ValueError(f"LearningRateScheduler: the schedule returned {new_lr!r} for epoch "
                             f"{epoch}; a learning rate must be a positive number")
        self.model.optimizer.learning_rate = new_lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new_lr:.4g}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class CSVLogger(Callback):
    """Write one CSV row per epoch: epoch (0-based, as Keras), then the logs by name.

    With append=True rows are added to an existing file (no second header); else
    the file is started afresh. The columns are those of the first epoch; a value
    missing later is written as NA. The file is flushed after every row.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self.keys = None
        self._file = None

    def on_train_begin(self, logs=None):
        directory = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(directory, exist_ok=True)
        has_rows = (self.append and os.path.exists(self.filename)
                    and os.path.getsize(self.filename) > 0)
        self.keys = None
        if has_rows:
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self.keys = header[1:] if header else None
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            self._writer.writerow(csv_header(self.keys))
        self._writer.writerow(csv_row(epoch, logs, self.keys))
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def csv_header(keys):
    """The header row of a history CSV: epoch, then the log names (sorted, as Keras)."""
    return ["epoch", *keys]


def csv_row(epoch, logs, keys):
    """One history CSV row: the 0-based epoch (as Keras' CSVLogger), then the values."""
    return [epoch] + [_csv_value(logs[k]) if k in logs else "NA" for k in keys]


def _csv_value(v):
    return repr(float(v)) if isinstance(v, (int, float)) or hasattr(v, "dtype") else str(v)


def _format_logs(logs):
    return " - ".join(f"{k}: {v:.4g}" if k == "learning_rate" else f"{k}: {v:.4f}"
                      for k, v in logs.items())


class ProgbarLogger(Callback):
    """Progress display for fit, Keras' verbose levels.

    verbose=1: a tqdm bar per epoch showing the running mean loss (and accuracy,
    when compiled with it); at the epoch's
    end the bar stays on screen with every log (loss, metrics, val_*).
    verbose=2: one line per epoch: "Epoch 3/10 - 1.2s - loss: ... - accuracy: ...".
    verbose=0: nothing (fit adds no ProgbarLogger then).
    """

    def __init__(self, verbose=1, file=None):
        super().__init__()
        if verbose not in (0, 1, 2):
            raise ValueError(f"ProgbarLogger: verbose must be 0, 1 or 2, got {verbose!r}")
        self.verbose = verbose
        self.file = file
        self._bar = None

    def _out(self):
        return self.file if self.file is not None else sys.stdout

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._sums = {}
        self._count = 0
        self._epoch_text = f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}"
        if self.verbose == 1:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.params.get("steps"), desc=self._epoch_text, unit="batch",
                             leave=True, file=self._out(), dynamic_ncols=True)

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        size = logs.get("size", 1)
        for key, value in logs.items():
            if key != "size":
                self._sums[key] = self._sums.get(key, 0.0) + float(value) * size
        self._count += size
        if self._bar is None:
            return
        self._bar.update(1)
        if self._sums:
            self._bar.set_postfix_str(_format_logs(self.running_logs()), refresh=False)

    def running_logs(self):
        """Means so far this epoch of the batch logs, weighted by batch size."""
        return {key: total / self._count for key, total in self._sums.items()}

    def on_epoch_end(self, epoch, logs=None):
        text = _format_logs(logs or {})
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.close()
            self._bar = None
        elif self.verbose == 2:
            seconds = time.perf_counter() - self._start
            print(f"{self._epoch_text} - {seconds:.1f}s - {text}", file=self._out(), flush=True)

    def on_train_end(self, logs=None):
        if self._bar is not None:      # training was interrupted inside an epoch
            self._bar.close()
            self._bar = None


CALLBACKS = {cls.__name__: cls for cls in (
    EarlyStopping, History, ModelCheckpoint, ReduceLROnPlateau, LearningRateScheduler,
    CSVLogger, ProgbarLogger, TerminateOnNaN)}


def get(identifier):
    """A Callback from an instance or a class name ("EarlyStopping", ...)."""
    if isinstance(identifier, Callback):
        return identifier
    if isinstance(identifier, str) and identifier in CALLBACKS:
        try:
            return CALLBACKS[identifier]()
        except TypeError as exc:
            raise ValueError(f"callback {identifier!r} needs arguments ({exc}); pass an instance "
                             f"such as {identifier}(...)") from None
    raise ValueError(f"unknown callback {identifier!r}; expected a Callback or one of {sorted(CALLBACKS)}")


def progress_callback(verbose):
    """The ProgbarLogger for fit's verbose argument (None for verbose=0).

    verbose: 0 silent, 1 a progress bar per epoch, 2 one line per epoch; "auto"
    (Keras' default) is 1. True/False are read as 1/0.
    """
    if verbose == "auto" or verbose is True:
        verbose = 1
    if verbose is False:
        verbose = 0
    if verbose not in (0, 1, 2):
        raise ValueError(f"fit: verbose must be 0 (silent), 1 (progress bar), 2 (one line per "
                         f"epoch) or 'auto', got {verbose!r}")
    return ProgbarLogger(verbose) if verbose else None
