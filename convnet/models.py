"""Sequential: a stack of layers trained with compile / fit / evaluate / predict.

One training step (train_step) is the whole of backpropagation:

    out  = layer_L(... layer_1(x))           forward, keeping what backward needs
    loss = cross_entropy(out, y)              mean over the batch
    d    = d loss / d out                     (softmax(z) - onehot(y)) / N
    d    = layer.backward(d) for L..1         each layer fills layer.grads
    optimizer.apply_gradients(params, grads)  in place

When the last layer ends in softmax and the loss is a cross-entropy, the model
feeds the loss the last layer's *logits* and skips the softmax's own backward:
softmax followed by cross-entropy has the simple, stable gradient p - t, whereas
log(softmax) taken separately underflows to log(0) for confident predictions.
"""

import math

import numpy as np

from . import callbacks as callbacks_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .arrays import to_host
from .backend import get_ops
from .layers import Layer
from .layers.base import shape_str, unique_name


class Sequential:
    """A linear stack of layers (Keras' Sequential).

    Sequential(layers, input_shape=(28, 28, 1), seed=0): `input_shape` has no batch
    axis; `seed` fixes the initial weights, the shuffling and dropout masks.
    """

    def __init__(self, layers=None, input_shape=None, name=None, seed=None):
        self.name = name or unique_name("sequential")
        self.layers = []
        self.seed = seed
        self.built = False
        self.input_shape = None
        self.optimizer = None
        self.loss = None
        self.metric_fns = []
        self.compiled = False
        self.stop_training = False
        self.history = None
        self.class_names = None      # labels of the outputs, kept in model files
        self._rng = np.random.default_rng(seed)
        self._shuffle_rng = self._rng.spawn(1)[0]
        for layer in layers or []:
            self.add(layer)
        if input_shape is None and self.layers and self.layers[0].input_shape is not None:
            input_shape = self.layers[0].input_shape
        if input_shape is not None:
            self.build(input_shape)

    # ------------------------------------------------------------- building
    def add(self, layer):
        """Append a layer; it is built at once when the model already is."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        if any(existing is layer for existing in self.layers):
            raise ValueError(f"Sequential.add: layer {layer.name!r} is already in the model")
        if self.built:
            layer.build(self.output_shape, rng=self._rng.spawn(1)[0])
        self.layers.append(layer)

    def build(self, input_shape):
        """Build every layer in turn, each from the previous one's output shape."""
        input_shape = tuple(int(d) for d in input_shape)
        shape = input_shape
        for layer, rng in zip(self.layers, self._rng.spawn(len(self.layers))):
            layer.build(shape, rng=rng)
            shape = layer.output_shape
        self.input_shape = input_shape
        self.built = True

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.layers else self.input_shape

    def describe(self):
        return f"Sequential '{self.name}'"

    # ------------------------------------------------------------ compiling
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None):
        """Choose the optimizer, the loss and the metrics reported by fit/evaluate."""
        self.optimizer = optimizers_module.get(optimizer)
        self._loss_given_as_name = isinstance(loss, str)
        self.loss = losses_module.get(loss)
        self.metric_fns = [metrics_module.get(m) for m in (metrics or [])]
        self.compiled = True

    def _ends_in_softmax(self):
        return bool(self.layers) and self.layers[-1].activation == "softmax"

    def _outputs_logits(self):
        """True when the last layer's output is logits (no softmax at the end)."""
        if self._ends_in_softmax():
            return False
        if self.loss is None or self._loss_given_as_name:
            return True
        return self.loss.from_logits

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{self.describe()}: call compile() before {what}()")

    # ----------------------------------------------------- forward/backward
    def _forward(self, x, training, logits):
        """Run the layers; with logits=True the last layer's activation is skipped."""
        for layer in self.layers[:-1]:
            x = layer.forward(x, training=training)
        last = self.layers[-1]
        return last.forward_logits(x, training) if logits else last.forward(x, training)

    def _backward(self, grad, logits):
        # Nothing uses the gradient w.r.t. the model's input. So backpropagation stops
        # at the first layer with parameters (those before it, e.g. Rescaling, have
        # nothing to learn), and that layer may skip its own input gradient
        # (Conv2D then computes neither dcols nor col2im) and return None.
        first = next((i for i, layer in enumerate(self.layers) if layer.params), len(self.layers) - 1)
        stop = self.layers[first]
        stop.skip_input_grad = True
        try:
            last = self.layers[-1]
            grad = last.backward_logits(grad) if logits else last.backward(grad)
            for layer in reversed(self.layers[first:-1]):
                grad = layer.backward(grad)
        finally:
            stop.skip_input_grad = False
        return grad

    def _loss_on_logits(self):
        """Does training feed the loss logits? (always, unless an explicit
        from_logits=False loss is used on a model without a final softmax)."""
        return self._ends_in_softmax() or self._outputs_logits()

    def _train_batch(self, x, y):
        """One optimisation step; returns (loss, class probabilities on the host)."""
        on_logits = self._loss_on_logits()
        skip_softmax = self._ends_in_softmax()
        out = self._forward(x, training=True, logits=skip_softmax)
        loss = self.loss.forward(out, y, from_logits=on_logits)
        self._backward(self.loss.backward(), logits=skip_softmax)
        self.optimizer.apply_gradients(self._params_and_grads())
        return loss, self._probabilities(out, on_logits)

    def _probabilities(self, out, is_logits):
        ops = get_ops()
        return ops.to_numpy(ops.softmax(out) if is_logits else out)

    def _params_and_grads(self):
        return [(f"{i}/{key}", layer.params[key], layer.grads[key])
                for i, layer in enumerate(self.layers) for key in layer.params]

    def train_step(self, x, y):
        """Forward, loss, backward and one optimizer update on this batch; returns the loss."""
        self._require_compiled("train_step")
        x, y = self._check_data(x, y, "train_step")
        loss, _ = self._train_batch(x, y)
        return loss

    # --------------------------------------------------------------- checks
    def _ensure_built(self, x):
        if not self.layers:
            raise ValueError(f"{self.describe()}: the model has no layers")
        if not self.built:
            self.build(np.shape(x)[1:])

    def _check_x(self, x, where):
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"{self.describe()}.{where}: expected a batch of inputs of shape "
                             f"{shape_str((None, *(self.input_shape or ('...',))))}, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{self.describe()}.{where}: empty input (0 samples), shape {tuple(x.shape)}")
        self._ensure_built(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.describe()}.{where}: expected input shape "
                             f"{shape_str((None, *self.input_shape))}, got {tuple(x.shape)}")
        return x

    def _check_y(self, y, n, where):
        if y is None:
            raise ValueError(f"{self.describe()}.{where}: labels y are required")
        y = np.asarray(to_host(y))
        if y.shape[0:1] != (n,):
            raise ValueError(f"{self.describe()}.{where}: x has {n} samples but y has "
                             f"{y.shape[0] if y.ndim else 'no'} (shape {y.shape})")
        k = self.output_shape[-1]
        owner = f"{self.describe()}.{where}"
        if isinstance(self.loss, losses_module.SparseCategoricalCrossentropy):
            return losses_module.check_sparse_labels(y, (n, k), owner)
        if isinstance(self.loss, losses_module.CategoricalCrossentropy) and y.shape != (n, k):
            raise ValueError(f"{owner}: expected one-hot labels of shape ({n}, {k}), got {y.shape}")
        return y

    def _check_data(self, x, y, where):
        x = self._check_x(x, where)
        return x, self._check_y(y, x.shape[0], where)

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, steps_per_epoch=None,
            validation_steps=None, initial_epoch=0):
        """Train for `epochs` epochs; returns a History (history.history: dict of lists).

        x, y: arrays (N, H, W, C) and labels; or x alone as an iterable of (x, y) batches
        (a dataset object; `steps_per_epoch` limits the batches per epoch).
        validation_data: (x_val, y_val) or a batch iterable; validation_split takes the
        last fraction of x, y instead (as Keras does, before shuffling).
        """
        self._require_compiled("fit")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{self.describe()}.fit: batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"{self.describe()}.fit: epochs must be a non-negative int, got {epochs!r}")
        train_batches, n_train = self._training_batches(x, y, batch_size, shuffle, steps_per_epoch,
                                                        validation_split)
        val = self._validation_source(x, y, validation_data, validation_split, batch_size)

        history = callbacks_module.History()
        progbar = callbacks_module.progress_callback(verbose)   # verbose 0 / 1 (bar) / 2 (lines)
        # History and the progress display run after the user's callbacks, so they see
        # what those add to the logs (e.g. "learning_rate"), as in Keras
        cbs = callbacks_module.CallbackList(
            [callbacks_module.get(c) for c in (callbacks or [])] + [history]
            + ([progbar] if progbar else []), self)
        cbs.set_params({"epochs": epochs, "steps": n_train, "verbose": verbose})
        self.stop_training = False
        self.history = history
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            logs = self._run_epoch(train_batches(), cbs)
            if val is not None:
                val_logs = self._evaluate_batches(val(), validation_steps)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end()
        return history

    def _training_batches(self, x, y, batch_size, shuffle, steps_per_epoch, validation_split):
        """A function returning one epoch's iterator of (x, y) batches, and its length."""
        if y is None and x is not None and not hasattr(x, "shape"):
            dataset = x                      # an iterable of (x, y) batches

            def epoch_iter():
                for step, batch in enumerate(dataset):
                    if steps_per_epoch is not None and step >= steps_per_epoch:
                        break
                    bx, by = batch
                    yield self._check_data(bx, by, "fit")
            total = steps_per_epoch if steps_per_epoch is not None else _len_or_none(dataset)
            return epoch_iter, total
        x, y = self._check_data(x, y, "fit")
        n = x.shape[0]
        if validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"{self.describe()}.fit: validation_split must be in (0, 1), "
                                 f"got {validation_split!r}")
            n = int(n * (1 - validation_split))
            if n < 1:
                raise ValueError(f"{self.describe()}.fit: validation_split={validation_split} "
                                 "leaves no training samples")
        steps = math.ceil(n / batch_size)
        if steps_per_epoch is not None:
            steps = min(steps, steps_per_epoch)

        def epoch_iter():
            order = self._shuffle_rng.permutation(n) if shuffle else np.arange(n)
            for step in range(steps):
                idx = order[step * batch_size:(step + 1) * batch_size]
                if shuffle:
                    idx = np.sort(idx)   # sorted gathers read memory in order
                yield x[idx], y[idx]
        return epoch_iter, steps

    def _validation_source(self, x, y, validation_data, validation_split, batch_size):
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                if len(validation_data) != 2:
                    raise ValueError(f"{self.describe()}.fit: validation_data must be (x_val, y_val), "
                                     f"got a sequence of {len(validation_data)} items")
                vx, vy = self._check_data(validation_data[0], validation_data[1], "fit (validation_data)")
                return lambda: _array_batches(vx, vy, batch_size)
            return lambda: iter(validation_data)
        if validation_split and y is not None:
            n = x.shape[0]
            start = int(n * (1 - validation_split))
            if start >= n:
                raise ValueError(f"{self.describe()}.fit: validation_split={validation_split} "
                                 "leaves no validation samples")
            return lambda: _array_batches(x[start:], y[start:], batch_size)
        return None

    def _run_epoch(self, batches, cbs):
        # the progress bar is callbacks.ProgbarLogger, fed by on_batch_end
        loss_sum, count = 0.0, 0
        y_parts, p_parts = [], []
        batch_accuracy = dict(self.metric_fns).get("accuracy")
        for step, (bx, by) in enumerate(batches):
            cbs.on_batch_begin(step)
            loss, probs = self._train_batch(bx, by)
            n = len(by)
            loss_sum += loss * n
            count += n
            if self.metric_fns:
                y_parts.append(by)
                p_parts.append(probs)
            batch_logs = {"loss": loss, "size": n}
            if batch_accuracy is not None:    # cheap, so the progress bar can show it
                batch_logs["accuracy"] = batch_accuracy(by, probs)
            cbs.on_batch_end(step, batch_logs)
        if count == 0:
            raise ValueError(f"{self.describe()}.fit: the training data yielded no batches")
        logs = {"loss": loss_sum / count}
        logs.update(self._metric_logs(y_parts, p_parts))
        return logs

    def _metric_logs(self, y_parts, p_parts):
        if not self.metric_fns or not y_parts:
            return {}
        y_all = np.concatenate([np.asarray(to_host(part)) for part in y_parts])
        p_all = np.concatenate(p_parts)
        return {name: float(fn(y_all, p_all)) for name, fn in self.metric_fns}

    # ------------------------------------------------------- evaluate/predict
    def evaluate(self, x=None, y=None, batch_size=32, verbose=0, steps=None, return_dict=True):
        """Loss and metrics on (x, y) or a batch iterable, in inference mode.

        Returns {"loss": ..., "<metric>": ...} (a list in that order with return_dict=False).
        """
        self._require_compiled("evaluate")
        if y is None and x is not None and not hasattr(x, "shape"):
            logs = self._evaluate_batches(iter(x), steps)
        else:
            x, y = self._check_data(x, y, "evaluate")
            logs = self._evaluate_batches(_array_batches(x, y, batch_size), steps)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        return logs if return_dict else list(logs.values())

    def _evaluate_batches(self, batches, steps=None):
        on_logits = self._loss_on_logits()
        skip_softmax = self._ends_in_softmax()
        loss_sum, count = 0.0, 0
        y_parts, p_parts = [], []
        for step, (bx, by) in enumerate(batches):
            if steps is not None and step >= steps:
                break
            bx, by = self._check_data(bx, by, "evaluate")
            out = self._forward(bx, training=False, logits=skip_softmax)
            n = len(by)
            loss_sum += self.loss.forward(out, by, from_logits=on_logits) * n
            count += n
            y_parts.append(by)
            p_parts.append(self._probabilities(out, on_logits))
        if count == 0:
            raise ValueError(f"{self.describe()}.evaluate: no samples to evaluate")
        logs = {"loss": loss_sum / count}
        logs.update(self._metric_logs(y_parts, p_parts))
        return logs

    def predict(self, x, batch_size=32, verbose=0):
        """Class probabilities (N, classes) as a numpy array (softmax applied to logits)."""
        if not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
            parts = [self.predict(bx, batch_size) for bx, *_ in x]
            if not parts:
                raise ValueError(f"{self.describe()}.predict: no samples to predict")
            return np.concatenate(parts)
        x = self._check_x(x, "predict")
        is_logits = self._outputs_logits()
        skip_softmax = self._ends_in_softmax()
        outs = []
        for start in range(0, x.shape[0], batch_size):
            out = self._forward(x[start:start + batch_size], training=False, logits=skip_softmax)
            outs.append(self._probabilities(out, is_logits or skip_softmax))
        return np.concatenate(outs)

    def __call__(self, x, training=False):
        """The raw output of the last layer (logits when it has no softmax)."""
        self._ensure_built(x)
        return self._forward(x, training=training, logits=False)

    # -------------------------------------------------------------- weights
    def get_weights(self):
        """Copies of every parameter and state array, in layer order (host numpy)."""
        return [np.array(to_host(store[key])) for layer in self.layers
                for store in (layer.params, layer.state) for key in store]

    def set_weights(self, weights):
        """Assign arrays in the order of get_weights (shapes must match)."""
        targets = [(layer, store, key) for layer in self.layers
                   for store in (layer.params, layer.state) for key in store]
        if len(weights) != len(targets):
            raise ValueError(f"{self.describe()}.set_weights: expected {len(targets)} arrays, "
                             f"got {len(weights)}")
        ops = get_ops()
        for (layer, store, key), w in zip(targets, weights):
            w = np.asarray(w)
            if w.shape != tuple(store[key].shape):
                raise ValueError(f"{layer.describe()}: weight {key!r} has shape "
                                 f"{tuple(store[key].shape)}, got {w.shape}")
            store[key] = ops.asarray(w, dtype=layer.dtype)

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    # -------------------------------------------------------------- summary
    def summary(self, print_fn=print):
        """Keras-style table: layer (type), output shape, parameters, forward FLOPs
        and activation memory per image; then the totals."""
        if not self.built:
            raise ValueError(f"{self.describe()}.summary: the model is not built yet; give "
                             "input_shape=... or call fit/build first")
        rows = []
        total_flops = total_act = 0
        for layer in self.layers:
            flops_fn = getattr(layer, "flops_per_image", None)
            flops = int(flops_fn()) if flops_fn else int(np.prod(layer.output_shape))
            act = int(np.prod(layer.output_shape)) * layer.dtype.itemsize
            total_flops += flops
            total_act += act
            rows.append((f"{layer.name} ({type(layer).__name__})",
                         shape_str((None, *layer.output_shape)).replace("N", "None"),
                         f"{layer.count_params():,}", _human(flops, "FLOP"), _human(act, "B")))
        widths = [max(30, *(len(r[0]) + 2 for r in rows)), 22, 12, 14, 12]
        head = ("Layer (type)", "Output Shape", "Param #", "FLOPs/img", "Act. mem/img")
        line = "".join(h.ljust(w) for h, w in zip(head, widths))
        width = sum(widths)
        trainable = self.count_params()
        non_trainable = sum(int(np.prod(a.shape)) for layer in self.layers for a in layer.state.values())
        out = [f'Model: "{self.name}"', "_" * width, line, "=" * width]
        for r in rows:
            out.append("".join(c.ljust(w) for c, w in zip(r, widths)))
        out += ["=" * width,
                f"Total params: {trainable + non_trainable:,}",
                f"Trainable params: {trainable:,}",
                f"Non-trainable params: {non_trainable:,}",
                f"Forward FLOPs per image: {_human(total_flops, 'FLOP')}",
                f"Activation memory per image: {_human(total_act, 'B')}",
                "_" * width]
        print_fn("\n".join(out))

    # ----------------------------------------------------------- save/load
    def save(self, path):
        """Write architecture, weights and optimizer state to one .npz file."""
        from .saving import save_model
        save_model(self, path)

    def get_config(self):
        from .layers import serialize
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "seed": self.seed, "class_names": self.class_names,
                "layers": [serialize(layer) for layer in self.layers]}


def _len_or_none(obj):
    try:
        return len(obj)
    except TypeError:
        return None


def _array_batches(x, y, batch_size):
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size], y[start:start + batch_size]


def _human(value, unit):
    for prefix in ("", "K", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            return f"{value:.0f} {prefix}{unit}" if prefix == "" else f"{value:.2f} {prefix}{unit}"
        value /= 1000.0
