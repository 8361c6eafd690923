"""Model (a graph of layers) and Sequential (its linear case): compile / fit /
evaluate / predict / summary / save.

One training step (train_step) is the whole of backpropagation:

    outs  = model.forward(xs, training=True)     every node in topological order
    loss, dys = model.compute_loss(outs, ys)     mean over the batch; dL/d(outs)
    model.backward(dys)                          every node in reverse; fills grads
    model.apply_gradients()                      the optimizer updates in place

The walks over the graph are convnet/graph.py. When an output layer ends in
softmax and its loss is a cross-entropy, the model feeds the loss that layer's
*logits* and skips the softmax's own backward: softmax followed by cross-entropy
has the simple, stable gradient p - t, whereas log(softmax) taken separately
underflows to log(0) for confident predictions.
"""

import copy
import itertools
import math
import os
import warnings

import numpy as np

from . import callbacks as callbacks_module
from . import finite, saving
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .arrays import to_host
from .backend import get_ops
from .data.batching import ArrayBatches
from .graph import Graph, GraphError
from .layers import Layer, deserialize, serialize
from .layers.base import shape_str, unique_name
from .layers.input_layer import InputLayer
from .layers.symbolic import SymbolicTensor

__all__ = ["Model", "Sequential", "load_model"]


def _rng_state(rng):
    return None if rng is None else rng.bit_generator.state


def _set_rng_state(rng, state):
    if rng is not None and state is not None:
        rng.bit_generator.state = state


class Model:
    """A graph of layers from `inputs` to `outputs` (Keras' functional Model).

        x = cn.Input(shape=(32, 32, 3))
        h = L.Conv2D(16, 3, padding="same", activation="relu")(x)
        y = L.Dense(10)(L.Flatten()(L.Add()([h, L.Conv2D(16, 1)(x)])))
        model = cn.Model(inputs=x, outputs=y, seed=0)

    inputs/outputs: one SymbolicTensor or a list of them. seed: when given, every
    layer's weights are drawn again from it (so the same seed gives the same model),
    and it fixes the shuffling and the dropout masks.
    """

    def __init__(self, inputs=None, outputs=None, name=None, seed=None):
        self.name = name or unique_name("functional" if type(self) is Model else _snake_class(self))
        self.seed = seed
        self.graph = None
        self.optimizer = None
        self.losses = []               # one Loss per output
        self.loss_weights = None
        self._metric_specs = []        # compile(metrics=...) as given
        self._train_metrics = []       # per output: Metric objects for the training logs
        self._val_metrics = []         # per output: separate objects for evaluate / val_ logs
        self.compiled = False
        self.stop_training = False
        self.history = None
        self.class_names = None        # labels of the outputs, kept in model files
        self._compile_config = None
        self._loss_on_logits = []      # per output: the loss reads logits
        self._fused = ()               # output positions whose softmax is fused into the loss
        self._callback_states = []     # states read from a file, for the next fit's callbacks
        self._active_callbacks = []    # the callbacks of the fit in progress (saved with the model)
        self._epochs_seen = 0          # epochs trained so far: numbers each epoch's data order
        # copies to undo a training step that went non-finite: (layer state, weights + slots)
        self._undo = (finite.Snapshot(), finite.Snapshot())
        self._rng = np.random.default_rng(seed)
        self._shuffle_entropy = int(np.random.SeedSequence(seed).entropy)
        if inputs is not None or outputs is not None:
            if inputs is None or outputs is None:
                raise ValueError(f"{self.describe()}: give both inputs= and outputs=")
            graph = Graph(inputs, outputs, owner=self.describe())
            self._set_graph(graph)
            if seed is not None:
                self._initialize_weights()
                graph.refresh_views()

    # ------------------------------------------------------------- building
    def _set_graph(self, graph):
        names = [layer.name for layer in graph.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise GraphError(f"{self.describe()}: layer names must be unique within a model; "
                             f"{duplicates} appear more than once")
        self.graph = graph
        self._fused = ()
        if self.compiled:
            self._plan_losses()

    def _initialize_weights(self):
        """Draw every layer's weights again, in graph order, from the model's seed."""
        for layer, rng in zip(self.layers, self._rng.spawn(len(self.layers))):
            layer.build(layer.input_shape, rng=rng)

    @property
    def built(self):
        return self.graph is not None

    @property
    def layers(self):
        """Every layer of the graph, each once, in the order they first run
        (the InputLayers included, as in Keras' functional models)."""
        return list(self.graph.layers) if self.graph else []

    @property
    def inputs(self):
        return list(self.graph.inputs) if self.graph else []

    @property
    def outputs(self):
        return list(self.graph.outputs) if self.graph else []

    @property
    def input_shape(self):
        """Input shape without the batch axis (a list of them for several inputs)."""
        if not self.graph:
            return None
        shapes = [tuple(t.shape[1:]) for t in self.graph.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        if not self.graph:
            return None
        shapes = [tuple(t.shape[1:]) for t in self.graph.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def get_layer(self, name=None, index=None):
        """A layer by name or by position in model.layers (as Keras)."""
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"{self.describe()}: no layer named {name!r}; layers are "
                             f"{[layer.name for layer in self.layers]}")
        if index is not None:
            return self.layers[index]
        raise ValueError(f"{self.describe()}.get_layer: give a name or an index")

    def describe(self):
        return f"{type(self).__name__} '{self.name}'"

    def _ensure_built(self, xs):
        if not self.built:
            raise ValueError(f"{self.describe()}: the model has no graph; build it with "
                             "cn.Model(inputs=..., outputs=...)")

    # ------------------------------------------------------------ compiling
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None,
                loss_weights=None):
        """Choose the optimizer, the loss (one, or one per output: a list or a dict
        by output layer name) and the metrics reported by fit/evaluate.

        metrics: a list of names ("accuracy", "auc", "precision", "categorical_accuracy",
        "exact_macro_auc", "f1", "top5_accuracy", ...), Metric objects
        (cn.metrics.AUC(), ...) or functions fn(y_true, y_pred) -> per-sample values,
        resolved by metrics.get_metric as Keras' compile does; every output gets them."""
        self.optimizer = optimizers_module.get(optimizer)
        self._loss_spec = loss
        self.loss_weights = loss_weights
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"{self.describe()}.compile: metrics must be a list, got {metrics!r}")
        self._metric_specs = list(metrics or [])
        # resolve each once now, so an unknown name fails at compile time
        resolved = [metrics_module.get_metric(m, loss=loss if isinstance(loss, (str, losses_module.Loss))
                                              else None) for m in self._metric_specs]
        self._compile_config = {"loss": loss, "metrics": [_metric_config(m, r) for m, r in
                                                          zip(self._metric_specs, resolved)],
                                "loss_weights": loss_weights}
        self.compiled = True
        if self.built:
            self._plan_losses()

    @property
    def loss(self):
        """The loss of the (first) output."""
        return self.losses[0] if self.losses else None

    @property
    def metrics(self):
        """The Metric objects of the training logs, every output's in turn (Keras' model.metrics)."""
        return [m for per_output in self._train_metrics for m in per_output]

    @property
    def metrics_names(self):
        """"loss" and then each metric's log name, in the order evaluate() lists them."""
        return ["loss"] + [self._log_name(i, m) for i, per_output in enumerate(self._train_metrics)
                           for m in per_output]

    def _log_name(self, i, metric):
        outputs = self.graph.outputs
        return f"{outputs[i].layer.name}_{metric.name}" if len(outputs) > 1 else metric.name

    def _make_metrics(self, specs):
        """Per output, fresh Metric objects for the training logs and for validation.

        "accuracy" resolves by the output's loss, as in Keras. A Metric object the
        user passed is used as it is for the first output's training logs (so the
        user's reference sees the training results); every other use gets a copy."""
        self._train_metrics, self._val_metrics = [], []
        for i, loss_spec in enumerate(specs):
            train, val = [], []
            for m in self._metric_specs:
                if isinstance(m, metrics_module.Metric):
                    train.append(m if i == 0 else copy.deepcopy(m))
                    val.append(copy.deepcopy(m))
                else:
                    train.append(metrics_module.get_metric(m, loss=loss_spec))
                    val.append(metrics_module.get_metric(m, loss=loss_spec))
            self._train_metrics.append(train)
            self._val_metrics.append(val)

    def _plan_losses(self):
        """One Loss per output, and for each whether it reads logits."""
        outputs, spec = self.graph.outputs, self._loss_spec
        names = [t.layer.name for t in outputs]
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - set(names))
            if unknown:
                raise ValueError(f"{self.describe()}.compile: loss names unknown outputs {unknown}; "
                                 f"outputs are {names}")
            missing = [n for n in names if n not in spec]
            if missing:
                raise ValueError(f"{self.describe()}.compile: no loss for outputs {missing}")
            specs = [spec[n] for n in names]
        elif isinstance(spec, (list, tuple)):
            if len(spec) != len(outputs):
                raise ValueError(f"{self.describe()}.compile: {len(spec)} losses for {len(outputs)} outputs")
            specs = list(spec)
        else:
            specs = [spec] * len(outputs)
        self.losses = [losses_module.get(s) for s in specs]
        self._make_metrics(self.losses)
        if self.loss_weights is None:
            self._weights = [1.0] * len(outputs)
        elif isinstance(self.loss_weights, dict):
            self._weights = [float(self.loss_weights.get(n, 1.0)) for n in names]
        else:
            if len(self.loss_weights) != len(outputs):
                raise ValueError(f"{self.describe()}.compile: {len(self.loss_weights)} loss_weights for "
                                 f"{len(outputs)} outputs")
            self._weights = [float(w) for w in self.loss_weights]
        self._loss_on_logits, fused = [], []
        for i, (loss, given_as_name) in enumerate(zip(self.losses, [isinstance(s, str) for s in specs])):
            ends_in_softmax = outputs[i].layer.activation == "softmax"
            cross_entropy = isinstance(loss, (losses_module.SparseCategoricalCrossentropy,
                                              losses_module.CategoricalCrossentropy))
            if ends_in_softmax and cross_entropy and not self.graph.output_has_other_uses(i):
                fused.append(i)
                self._loss_on_logits.append(True)
            elif ends_in_softmax:
                self._loss_on_logits.append(False)
            else:
                self._loss_on_logits.append(given_as_name or loss.from_logits)
        self._fused = tuple(fused)

    def get_compile_config(self):
        """The compile() arguments as JSON-friendly data (None before compile)."""
        if not self.compiled:
            return None
        loss = self._loss_spec

        def loss_config(spec):
            if isinstance(spec, str):
                return spec
            return {"class_name": type(spec).__name__, "config": spec.get_config()}
        if isinstance(loss, dict):
            loss = {k: loss_config(v) for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            loss = [loss_config(v) for v in loss]
        else:
            loss = loss_config(loss)
        return {"optimizer": optimizers_module.serialize(self.optimizer), "loss": loss,
                "metrics": list(self._compile_config["metrics"]),
                "loss_weights": self._compile_config["loss_weights"]}

    def compile_from_config(self, config):
        """compile() from get_compile_config()'s data (unknown metrics are errors)."""
        def loss_object(spec):
            if isinstance(spec, str):
                return spec
            classes = {cls.__name__: cls for cls in losses_module.LOSSES.values()}
            if not isinstance(spec, dict) or spec.get("class_name") not in classes:
                raise ValueError(f"{self.describe()}: unknown loss {spec!r}")
            return classes[spec["class_name"]](**spec.get("config", {}))
        loss = config["loss"]
        metrics = []
        for spec in config.get("metrics") or []:
            try:
                metrics.append(_metric_from_config(spec))
            except (ValueError, TypeError):
                name = spec.get("config", {}).get("name") if isinstance(spec, dict) else spec
                warnings.warn(f"{self.describe()}: metric {name!r} is not a built-in metric and was left "
                              "out; compile the model again to use it", stacklevel=3)
        if isinstance(loss, dict) and "class_name" not in loss:
            loss = {k: loss_object(v) for k, v in loss.items()}
        elif isinstance(loss, list):
            loss = [loss_object(v) for v in loss]
        else:
            loss = loss_object(loss)
        self.compile(optimizer=optimizers_module.get(config["optimizer"]), loss=loss,
                     metrics=metrics, loss_weights=config.get("loss_weights"))

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{self.describe()}: call compile() before {what}()")

    # ----------------------------------------------------- forward/backward
    def forward(self, xs, training=False, trace=None, fold_batchnorm=False):
        """Outputs (a list, one per output) for input arrays xs (a list, one per
        input). Outputs whose softmax the loss fuses come back as logits.
        fold_batchnorm: an inference no backward follows (predict) folds each
        batch normalization after a convolution into it (Graph.forward)."""
        return self.graph.forward(xs, training=training, logits=self._fused, trace=trace,
                                  fold_batchnorm=fold_batchnorm)

    def compute_loss(self, outs, ys, sample_weights=None):
        """(loss as a float, [dL/d out for each output]) for outputs `outs` and
        targets `ys` (lists); the loss is the weighted sum over outputs.
        sample_weights: None, or per output None or (N,) weights, each sample's loss
        multiplied by its weight and summed over N (Keras' sum_over_batch_size)."""
        total, grads = 0.0, []
        sws = sample_weights if sample_weights is not None else [None] * len(outs)
        for out, y, sw, loss, on_logits, w in zip(outs, ys, sws, self.losses, self._loss_on_logits,
                                                  self._weights):
            total += w * loss.forward(out, y, from_logits=on_logits, sample_weight=sw)
            g = loss.backward()
            grads.append(g if w == 1.0 else g * w)
        return total, grads

    def backward(self, output_grads, trace=None, input_grads=False):
        """Backpropagate dL/d(outputs) through the graph: fills every layer's grads.
        input_grads=True also returns dL/d(inputs), a list (training skips them)."""
        return self.graph.backward(output_grads, logits=self._fused, trace=trace, input_grads=input_grads)

    def params_and_grads(self):
        """[(key, param, grad)] for the optimizer; key "layer index/name" is stable
        across saves (the optimizer's slots are keyed by it)."""
        return [(f"{i}/{key}", layer.params[key], layer.grads[key])
                for i, layer in enumerate(self.layers) for key in layer.params]

    def apply_gradients(self):
        """One optimizer update from the grads that backward() left in the layers."""
        self.optimizer.apply_gradients(self.params_and_grads())

    def _train_batch(self, xs, ys, sample_weights=None):
        """One optimisation step; returns (loss, outputs, problem).

        problem is None, or what was not finite (the loss, some gradients, or the
        weights after the update: lr * g can overflow float32 even from finite
        gradients). Then the step is undone: the weights, the optimizer's slots and
        step count, and the layers' state (BatchNorm's moving statistics, which the
        forward pass updates) are put back, so the model keeps its last finite
        weights. When the optimizer bounds its step (Adam), one sum of squares of
        the gradients and weights proves the step finite before it is taken, and
        nothing needs undoing (_step_is_finite). Otherwise the check is one sum over
        the gradients, the updated weights and the state, read back once
        (convnet/finite.py), and the undo copies them into buffers kept from step
        to step (finite.Snapshot).
        """
        state_copy, step_copy = self._undo

        def layer_states():
            return {f"{i}/{key}": value for i, layer in enumerate(self.layers) for key, value in layer.state.items()}

        state_copy.take(layer_states())
        outs = self.forward(xs, training=True)
        loss, grads = self.compute_loss(outs, ys, sample_weights)
        problem = None
        if not math.isfinite(loss):
            problem = f"the loss is {loss}"
        else:
            self.backward(grads)
            pairs = self.params_and_grads()
            if self._step_is_finite(pairs, list(layer_states().values())):
                self.apply_gradients()          # proved finite before it is taken: no undo
            else:
                problem = self._undoable_step(pairs, step_copy, layer_states)
        if problem is not None:
            state_copy.restore(into=layer_states())
        return loss, outs, problem

    def _undoable_step(self, pairs, step_copy, layer_states):
        """The optimizer step with a copy to undo it: the weights and slots are
        copied, the step taken, and the gradients, new weights and layer state
        checked; a non-finite result puts the copies back. Returns the problem or None.
        pairs: params_and_grads() of this step."""
        optimizer = self.optimizer
        slot_names = {key: list(d) for key, d in optimizer.slots.items()}
        step_copy.take({**{("param", key): p for key, p, _ in pairs},
                        **{("slot", key, n): a for key, d in optimizer.slots.items() for n, a in d.items()}})
        grad_sum = finite.total_sum([g for _, _, g in pairs])
        self.apply_gradients()
        # the state as the forward pass left it
        checked = [g for _, _, g in pairs] + [p for _, p, _ in pairs] + list(layer_states().values())
        if finite.all_finite(checked, grad_sum + finite.total_sum(checked[len(pairs):])):
            return None
        problem = self._nonfinite_step(pairs)
        restored = step_copy.restore()
        # the slots as they were: the same arrays, and none the failed step created
        optimizer.slots = {key: {n: restored[("slot", key, n)] for n in names}
                           for key, names in slot_names.items()}
        optimizer.iterations -= 1
        return problem

    def _step_is_finite(self, pairs, states):
        """Can the coming optimizer step, on `pairs` (params_and_grads()), be proved
        finite without taking it? Yes when the optimizer bounds its step
        (Optimizer.step_bound, Adam), the layer state the forward pass left
        (`states`) is finite, and the squares of the gradients
        and weights add up to a finite total: then every |g| and |w| is below
        sqrt(float max) ~ 1.8e19 in float32, the Adam slots stay finite, and
        |new w| <= |w| + bound is far from overflowing. One dot product per array
        and one read of the total (on a GPU), instead of copying the weights and
        slots for an undo. False sends the step down the undoable path, which
        finds out exactly what was not finite."""
        bound = self.optimizer.step_bound()
        dtypes = {a.dtype for _, p, g in pairs for a in (p, g)}
        # float32/float64 only: a float16 weight overflows at 65504, which no
        # float32 sum of squares bounds
        if bound is None or not pairs or not dtypes <= {np.dtype(np.float32), np.dtype(np.float64)}:
            return False
        largest = float(np.finfo(np.float32 if np.dtype(np.float32) in dtypes else np.float64).max)
        if not 2 * bound < math.sqrt(largest):
            return False
        arrays = [g for _, _, g in pairs] + [p for _, p, _ in pairs]
        # a margin of 4 below the largest float keeps each square's rounding clear of inf
        total = float(finite.square_total(arrays) + finite.total_sum(states))
        return math.isfinite(total) and abs(total) < largest / 4

    def _nonfinite_step(self, pairs):
        """What went non-finite in a step that failed its check (for the message)."""
        bad = finite.nonfinite_grads(pairs)
        if bad:
            return "the gradients of " + ", ".join(f"{key} ({n} values)" for key, n in bad) + " hold NaN or inf"
        bad = finite.nonfinite_arrays({f"{i}/{key}": value for i, layer in enumerate(self.layers)
                                       for key, value in layer.state.items()})
        if bad:
            return (f"the layer state {bad} (moving statistics) went NaN or inf: the activations "
                    "overflowed float32")
        return ("the update overflowed (finite gradients, but the new weights would hold NaN or inf: "
                "the learning rate is too large)")

    def _check_finite_input(self, xs, where):
        """ValueError naming `where` (the epoch and step) for NaN/inf in a batch's inputs."""
        found = finite.nonfinite_input(xs)
        if found is not None:
            i, count = found
            name = self.graph.inputs[i].layer.name
            raise ValueError(f"{self.describe()}.{where}: input {name!r} holds {count} NaN or inf "
                             f"values (of {int(xs[i].size)}); clean the data (np.nan_to_num, or drop "
                             "those samples) before training")

    def train_step(self, x, y):
        """Forward, loss, backward and one optimizer update on this batch; returns the loss.
        NaN/inf in x, the loss or the gradients is a FloatingPointError (ValueError for
        x) and the update is not applied."""
        self._require_compiled("train_step")
        xs, ys = self._check_data(x, y, "train_step")
        self._check_finite_input(xs, "train_step")
        loss, _, problem = self._train_batch(xs, ys)
        if problem is not None:
            raise FloatingPointError(f"{self.describe()}.train_step: training diverged at optimizer "
                                     f"step {self.optimizer.iterations + 1}: {problem}; the update "
                                     "was not applied")
        return loss

    def _scores(self, outs):
        """Per output, what metrics and predict see: probabilities where the output
        is a classifier's logits (softmax applied), else the output as it is."""
        ops = get_ops()
        scores = []
        for i, out in enumerate(outs):
            if self._reads_logits(i):
                out = ops.softmax(out)
            scores.append(ops.to_numpy(out))
        return scores

    def _reads_logits(self, i):
        """Is output i logits that predict turns into probabilities? Yes for a fused
        softmax, and for a linear (N, classes) output that the loss reads as logits
        (or that no loss says otherwise about)."""
        if i in self._fused:
            return True
        layer = self.graph.outputs[i].layer
        if layer.activation is not None or len(self.graph.outputs[i].shape) != 2:
            return False
        if self.compiled:
            return bool(self._loss_on_logits[i])
        return True

    # --------------------------------------------------------------- checks
    def _as_list(self, value, count, what, where):
        if count == 1:
            return [value]
        if isinstance(value, dict):
            names = ([t.layer.name for t in self.graph.inputs] if what == "inputs"
                     else [t.layer.name for t in self.graph.outputs])
            missing = [n for n in names if n not in value]
            if missing:
                raise ValueError(f"{self.describe()}.{where}: no {what} given for {missing}")
            return [value[n] for n in names]
        if not isinstance(value, (list, tuple)) or len(value) != count:
            got = f"a list of {len(value)}" if isinstance(value, (list, tuple)) else type(value).__name__
            raise ValueError(f"{self.describe()}.{where}: the model has {count} {what}; give a list of "
                             f"{count} arrays, got {got}")
        return list(value)

    def _check_x(self, x, where):
        """The input arrays as a list, each checked against its Input's shape."""
        if not self.built:
            self._ensure_built(x)
        xs = self._as_list(x, len(self.graph.inputs), "inputs", where)
        checked = []
        for t, xi in zip(self.graph.inputs, xs):
            if isinstance(xi, SymbolicTensor):
                raise TypeError(f"{self.describe()}.{where}: got a symbolic tensor; pass arrays (to "
                                "build a model on symbolic tensors use cn.Model(inputs=..., outputs=...))")
            if not hasattr(xi, "shape"):
                try:
                    xi = np.asarray(xi)
                except ValueError as exc:
                    raise ValueError(f"{self.describe()}.{where}: the input is not a rectangular array "
                                     f"({exc})") from exc
            expected = tuple(t.shape[1:])
            if xi.ndim < 2:
                raise ValueError(f"{self.describe()}.{where}: expected a batch of inputs of shape "
                                 f"{shape_str((None, *expected))}, got shape {tuple(xi.shape)}")
            if xi.shape[0] == 0:
                raise ValueError(f"{self.describe()}.{where}: empty input (0 samples), shape {tuple(xi.shape)}")
            if tuple(xi.shape[1:]) != expected:
                raise ValueError(f"{self.describe()}.{where}: expected input shape "
                                 f"{shape_str((None, *expected))}, got {tuple(xi.shape)}")
            checked.append(xi)
        if len({int(xi.shape[0]) for xi in checked}) != 1:
            raise ValueError(f"{self.describe()}.{where}: the inputs have different numbers of samples "
                             f"{[int(xi.shape[0]) for xi in checked]}")
        return checked

    def _check_y(self, y, n, where):
        if y is None:
            raise ValueError(f"{self.describe()}.{where}: labels y are required")
        ys = self._as_list(y, len(self.graph.outputs), "outputs", where)
        checked = []
        for t, yi, loss in zip(self.graph.outputs, ys, self.losses or [None] * len(ys)):
            yi = np.asarray(to_host(yi))
            if yi.shape[0:1] != (n,):
                raise ValueError(f"{self.describe()}.{where}: x has {n} samples but y has "
                                 f"{yi.shape[0] if yi.ndim else 'no'} (shape {yi.shape})")
            k = t.shape[-1]
            owner = f"{self.describe()}.{where}"
            if isinstance(loss, losses_module.SparseCategoricalCrossentropy):
                yi = losses_module.check_sparse_labels(yi, (n, k), owner)
            elif isinstance(loss, losses_module.CategoricalCrossentropy) and yi.shape != (n, k):
                raise ValueError(f"{owner}: expected one-hot labels of shape ({n}, {k}), got {yi.shape}")
            checked.append(yi)
        return checked

    def _check_data(self, x, y, where):
        xs = self._check_x(x, where)
        return xs, self._check_y(y, int(xs[0].shape[0]), where)

    def check_batch(self, x, y=None, where="check_batch"):
        """(xs, ys): the inputs and (when y is given) the targets as lists, one
        array per model input / output, checked against the model's shapes and
        loss (ValueError naming the model and `where` otherwise)."""
        xs = self._check_x(x, where)
        return xs, (None if y is None else self._check_y(y, int(xs[0].shape[0]), where))

    # ------------------------------------------------------------------ fit
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None):
        """Train for `epochs` epochs; returns a History (history.history: dict of lists).

        x, y: arrays (N, H, W, C) and labels (lists of them for several inputs or
        outputs); or x alone as an iterable of (x, y) or (x, y, sample_weight) batches
        (an ImageDataGenerator iterator, a dataset object; `steps_per_epoch` limits
        the batches per epoch, fractions round up).
        validation_data: (x_val, y_val), (x_val, y_val, w_val) or a batch iterable;
        validation_split takes the last fraction of x, y instead (as Keras does,
        before shuffling).
        class_weight: {class index: weight}; each sample's loss is multiplied by the
        weight of its class (labels or one-hot rows), as in Keras.
        sample_weight: (N,) weights multiplying each sample's loss (with class_weight
        too, the product). The loss of a batch is sum(w * loss) / batch size.
        initial_epoch: the epoch to start from (resuming a run saved at that epoch).
        """
        self._require_compiled("fit")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{self.describe()}.fit: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"{self.describe()}.fit: epochs must be a non-negative int, got {epochs!r}")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int) or initial_epoch < 0:
            raise ValueError(f"{self.describe()}.fit: initial_epoch must be a non-negative int, "
                             f"got {initial_epoch!r}")
        steps_per_epoch = _check_steps(steps_per_epoch, "steps_per_epoch", f"{self.describe()}.fit")
        validation_steps = _check_steps(validation_steps, "validation_steps", f"{self.describe()}.fit")
        class_weight = self._check_class_weight(class_weight)
        train_batches, n_train, x, y, sw = self._training_batches(
            x, y, batch_size, shuffle, steps_per_epoch, validation_split, sample_weight, class_weight)
        val = self._validation_source(x, y, sw, validation_data, validation_split, batch_size)

        history = callbacks_module.History()
        progbar = callbacks_module.progress_callback(verbose)   # verbose 0 / 1 (bar) / 2 (lines)
        # History and the progress display run after the user's callbacks, so they see
        # what those add to the logs (e.g. "learning_rate"), as in Keras
        user_callbacks = [callbacks_module.get(c) for c in (callbacks or [])]
        cbs = callbacks_module.CallbackList(user_callbacks + [history] + ([progbar] if progbar else []), self)
        cbs.set_params({"epochs": epochs, "steps": n_train, "verbose": verbose})
        self.stop_training = False
        self.history = history
        self._active_callbacks = user_callbacks
        try:
            cbs.on_train_begin()
            if initial_epoch > 0:
                self._restore_callback_states(user_callbacks)
            for epoch in range(initial_epoch, epochs):
                cbs.on_epoch_begin(epoch)
                logs = self._run_epoch(train_batches(self._epochs_seen), cbs, epoch)
                self._epochs_seen += 1
                if val is not None:
                    source, checked = val
                    val_logs = self._evaluate_batches(source(), validation_steps, "fit (validation)", checked)
                    logs.update({f"val_{k}": v for k, v in val_logs.items()})
                cbs.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
            cbs.on_train_end()
        finally:
            self._active_callbacks = []
        return history

    def _check_class_weight(self, class_weight):
        """class_weight as {int class: float weight}, or None."""
        if class_weight is None:
            return None
        owner = f"{self.describe()}.fit"
        if not isinstance(class_weight, dict):
            raise TypeError(f"{owner}: class_weight must be a dict {{class index: weight}}, "
                            f"got {type(class_weight).__name__}")
        if len(self.graph.outputs) != 1:
            raise ValueError(f"{owner}: class_weight is only supported for models with one output "
                             f"(this one has {len(self.graph.outputs)}); use sample_weight")
        checked = {}
        for k, v in class_weight.items():
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise ValueError(f"{owner}: class_weight keys must be class indices >= 0, got {k!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not np.isfinite(v) or v < 0:
                raise ValueError(f"{owner}: class_weight[{k}] must be a finite number >= 0, got {v!r}")
            checked[int(k)] = float(v)
        return checked

    def _sample_weights(self, ys, sample_weight, class_weight, where):
        """Per output, (N,) float weights or None: sample_weight times the class
        weight of each sample's label (Keras: classes missing from class_weight
        weigh 1)."""
        n = len(ys[0])
        weights = [None] * len(ys)
        if sample_weight is not None:
            given = self._as_list(sample_weight, len(ys), "outputs", where) if len(ys) > 1 \
                else [sample_weight]
            for i, sw in enumerate(given):
                if sw is None:
                    continue
                sw = np.asarray(to_host(sw))
                if sw.dtype.kind not in "fiub":
                    raise TypeError(f"{self.describe()}.{where}: sample_weight must be numbers, "
                                    f"got dtype {sw.dtype}")
                sw = sw.astype(np.float64).reshape(-1) if sw.ndim == 2 and sw.shape[1] == 1 \
                    else sw.astype(np.float64)
                if sw.shape != (n,):
                    raise ValueError(f"{self.describe()}.{where}: sample_weight must have shape "
                                     f"({n},) (one weight per sample), got {sw.shape}")
                if not np.all(np.isfinite(sw)) or np.any(sw < 0):
                    raise ValueError(f"{self.describe()}.{where}: sample_weight must be finite and >= 0")
                weights[i] = sw
        if class_weight is not None:
            y = np.asarray(to_host(ys[0]))
            labels = y.argmax(axis=1) if y.ndim == 2 and y.shape[1] > 1 else y.reshape(n).astype(np.int64)
            cw = np.array([class_weight.get(int(c), 1.0) for c in labels], dtype=np.float64)
            weights[0] = cw if weights[0] is None else weights[0] * cw
        return None if all(w is None for w in weights) else weights

    def _training_batches(self, x, y, batch_size, shuffle, steps_per_epoch, validation_split,
                          sample_weight=None, class_weight=None):
        """(a function epoch -> iterator of (xs, ys, sample weights) batches, the
        number of batches, checked x, checked y, the sample weights). Arrays go
        through data.ArrayBatches, whose order for epoch k is a pure function of
        (the model's shuffle seed, k): a run resumed at epoch k sees the same
        batches as one never interrupted."""
        if y is None and x is not None and not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
            dataset = x                      # an iterable of (x, y) or (x, y, w) batches
            if sample_weight is not None:
                raise ValueError(f"{self.describe()}.fit: sample_weight cannot be given with a batch "
                                 "iterable; yield (x, y, sample_weight) batches instead")

            def dataset_epoch(_epoch):
                batches = iter(dataset)
                if steps_per_epoch is not None:
                    batches = itertools.islice(batches, steps_per_epoch)
                for batch in batches:
                    bx, by, bw = self._split_batch(batch, "fit")
                    bxs, bys = self._check_data(bx, by, "fit")
                    yield bxs, bys, self._sample_weights(bys, bw, class_weight, "fit")
            total = steps_per_epoch if steps_per_epoch is not None else _len_or_none(dataset)
            return dataset_epoch, total, None, None, None
        xs, ys = self._check_data(x, y, "fit")
        sws = self._sample_weights(ys, sample_weight, class_weight, "fit")
        n = int(xs[0].shape[0])
        if validation_split:
            if not 0 < validation_split < 1:
                raise ValueError(f"{self.describe()}.fit: validation_split must be in (0, 1), "
                                 f"got {validation_split!r}")
            n = int(n * (1 - validation_split))
            if n < 1:
                raise ValueError(f"{self.describe()}.fit: validation_split={validation_split} "
                                 "leaves no training samples")
        # the weights ride along as extra label arrays, so they are shuffled with them
        weighted = [i for i, w in enumerate(sws or []) if w is not None]
        extra = [sws[i][:n] for i in weighted]
        batches = ArrayBatches([a[:n] for a in xs], [a[:n] for a in ys] + extra, batch_size=batch_size,
                               shuffle=shuffle, seed=self._shuffle_entropy)
        steps = len(batches) if steps_per_epoch is None else min(len(batches), steps_per_epoch)
        k = len(ys)

        def array_epoch(epoch):
            for bxs, bys in itertools.islice(batches.iter_epoch(epoch), steps):
                if not weighted:
                    yield bxs, bys, None
                    continue
                bws = [None] * k
                for i, w in zip(weighted, bys[k:]):
                    bws[i] = w
                yield bxs, bys[:k], bws
        return array_epoch, steps, xs, ys, sws

    def _split_batch(self, batch, where):
        """(x, y, sample_weight or None) of a batch from an iterable."""
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            got = f"a sequence of {len(batch)}" if isinstance(batch, (tuple, list)) else type(batch).__name__
            raise ValueError(f"{self.describe()}.{where}: expected the data to yield (x, y) or "
                             f"(x, y, sample_weight) batches, got {got}")
        return batch[0], batch[1], (batch[2] if len(batch) == 3 else None)

    def _validation_source(self, xs, ys, sws, validation_data, validation_split, batch_size):
        if validation_data is not None:
            if isinstance(validation_data, (tuple, list)):
                if len(validation_data) not in (2, 3):
                    raise ValueError(f"{self.describe()}.fit: validation_data must be (x_val, y_val) or "
                                     f"(x_val, y_val, val_sample_weight), got a sequence of "
                                     f"{len(validation_data)} items")
                where = "fit (validation_data)"
                vx, vy = self._check_data(validation_data[0], validation_data[1], where)
                vw = self._sample_weights(vy, validation_data[2] if len(validation_data) == 3 else None,
                                          None, where)
                return (lambda: _array_batches(vx, vy, batch_size, vw)), True
            return (lambda: iter(validation_data)), False
        if validation_split and ys is not None:
            n = int(xs[0].shape[0])
            start = int(n * (1 - validation_split))
            if start >= n:
                raise ValueError(f"{self.describe()}.fit: validation_split={validation_split} "
                                 "leaves no validation samples")
            vw = None if sws is None else [None if w is None else w[start:] for w in sws]
            return (lambda: _array_batches([a[start:] for a in xs], [a[start:] for a in ys],
                                           batch_size, vw)), True
        return None

    def _run_epoch(self, batches, cbs, epoch=0):
        """Train on one epoch's batches; returns the epoch's logs.

        Divergence (docs/reliability.md): NaN/inf in a batch's inputs is a ValueError
        naming the epoch and step; a non-finite loss or gradient is a FloatingPointError
        naming them, unless a TerminateOnNaN callback is given, which only stops
        training. Either way the diverged update is not applied (_train_batch).
        Epochs and steps are counted from 1 in messages, as the progress bar does.
        A callback that sets model.stop_training in on_batch_end stops the epoch
        after that batch (as in Keras).
        """
        # the progress bar is callbacks.ProgbarLogger, fed by on_batch_end
        loss_sum, count = 0.0, 0
        for per_output in self._train_metrics:
            for m in per_output:
                m.reset_state()
        terminators = [cb for cb in cbs.callbacks if isinstance(cb, callbacks_module.TerminateOnNaN)]
        for step, (bxs, bys, bws) in enumerate(batches):
            self._check_finite_input(bxs, f"fit: epoch {epoch + 1}, step {step + 1} (batch index {step})")
            cbs.on_batch_begin(step)
            loss, outs, problem = self._train_batch(bxs, bys, bws)
            n = len(bys[0])
            loss_sum += loss * n
            count += n
            batch_logs = {"loss": loss, "size": n}
            if problem is not None:
                message = (f"{self.describe()}.fit: training diverged at epoch {epoch + 1}, step {step + 1} "
                           f"(batch index {step}, optimizer step {self.optimizer.iterations + 1}): {problem}; "
                           "the update was not applied, the model keeps the weights of the step before")
                if not terminators:
                    raise FloatingPointError(message + ". Lower the learning rate, or pass callbacks="
                                             "[cn.callbacks.TerminateOnNaN()] to stop without an error")
                terminators[0].terminate(message)
                cbs.on_batch_end(step, batch_logs)
                break
            if self._metric_specs:
                batch_logs.update(self._update_metrics(self._train_metrics, bys, self._scores(outs)))
            cbs.on_batch_end(step, batch_logs)
            if self.stop_training:
                break
        if count == 0:
            raise ValueError(f"{self.describe()}.fit: the training data yielded no batches")
        logs = {"loss": loss_sum / count}
        logs.update(self._metric_results(self._train_metrics))
        return logs

    def _update_metrics(self, metric_sets, ys, scores):
        """Feed one batch (labels and host probabilities) to every metric; returns
        this batch's own value of each mean metric (accuracies), which the progress
        bar averages over the epoch. Metrics see no sample weights: as Keras'
        compile(metrics=...), they are unweighted."""
        batch_values = {}
        for i, (per_output, y, p) in enumerate(zip(metric_sets, ys, scores)):
            y = to_host(y)
            for m in per_output:
                inner = getattr(m, "resolved", None) or m
                before = (getattr(inner, "total", None), getattr(inner, "count", None))
                m.update_state(y, p)
                inner = getattr(m, "resolved", None) or m
                if isinstance(inner, metrics_module.MeanMetricWrapper):
                    total0, count0 = before if before[0] is not None else (0.0, 0.0)
                    seen = inner.count - count0
                    if seen:
                        batch_values[self._log_name(i, m)] = (inner.total - total0) / seen
        return batch_values

    def _metric_results(self, metric_sets):
        """{log name: result} of every metric; "<output>_<metric>" for several outputs."""
        return {self._log_name(i, m): float(m.result())
                for i, per_output in enumerate(metric_sets) for m in per_output}

    # ------------------------------------------------------- evaluate/predict
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 return_dict=False):
        """Loss and metrics on (x, y) or a batch iterable (an iterator from
        ImageDataGenerator.flow / flow_from_directory), in inference mode.

        Returns, as Keras: the loss (a float) when the model has no metrics, else
        the list [loss, *metrics] in the order of model.metrics_names;
        return_dict=True gives {"loss": ..., "<metric>": ...}.
        batch_size: None means 32. steps: batches to read from an iterable (fractions
        round up). sample_weight: (N,) weights of the samples' losses.
        """
        self._require_compiled("evaluate")
        steps = _check_steps(steps, "steps", f"{self.describe()}.evaluate")
        batch_size = _check_batch_size(batch_size, f"{self.describe()}.evaluate")
        if y is None and x is not None and not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
            if sample_weight is not None:
                raise ValueError(f"{self.describe()}.evaluate: sample_weight cannot be given with a batch "
                                 "iterable; yield (x, y, sample_weight) batches instead")
            logs = self._evaluate_batches(iter(x), steps, "evaluate")
        else:
            xs, ys = self._check_data(x, y, "evaluate")
            sws = self._sample_weights(ys, sample_weight, None, "evaluate")
            logs = self._evaluate_batches(_array_batches(xs, ys, batch_size, sws), steps, "evaluate",
                                          checked=True)
        if verbose and verbose != "auto":     # "auto": quiet (convnet has no evaluate progress bar)
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def _evaluate_batches(self, batches, steps, where, checked=False):
        """Loss and metrics (as a dict) over batches; `checked`: they are (xs, ys,
        sample weights) that already passed the checks (array data split by
        _array_batches). Uses the validation metric objects, reset first."""
        loss_sum, count = 0.0, 0
        for per_output in self._val_metrics:
            for m in per_output:
                m.reset_state()
        for step, batch in enumerate(batches):
            if steps is not None and step >= steps:
                break
            if checked:
                bxs, bys, bws = batch
            else:
                bx, by, bw = self._split_batch(batch, where)
                bxs, bys = self._check_data(bx, by, where)
                bws = self._sample_weights(bys, bw, None, where)
            outs = self.forward(bxs, training=False, fold_batchnorm=True)
            n = len(bys[0])
            total = 0.0
            sws = bws if bws is not None else [None] * len(outs)
            for out, yi, sw, loss, on_logits, w in zip(outs, bys, sws, self.losses, self._loss_on_logits,
                                                       self._weights):
                total += w * loss.forward(out, yi, from_logits=on_logits, sample_weight=sw)
            loss_sum += total * n
            count += n
            if self._metric_specs:
                self._update_metrics(self._val_metrics, bys, self._scores(outs))
        if count == 0:
            raise ValueError(f"{self.describe()}.{where}: no samples to evaluate")
        logs = {"loss": loss_sum / count}
        logs.update(self._metric_results(self._val_metrics))
        return logs

    def predict(self, x, batch_size=None, verbose="auto", steps=None):
        """Per output, (N, ...) numpy arrays: class probabilities for a classifier
        (softmax applied to logits), the raw values otherwise. One output gives one
        array, several give a list.

        x: arrays, or a batch iterable (an ImageDataGenerator iterator: its (x, y)
        batches give their x); steps: batches to read from it (fractions round up).
        batch_size: None means 32. verbose is accepted for Keras' signature.

        The rows come in the order the iterable yields them, as in Keras. An
        iterator made with shuffle=True yields a new random order, so its rows do
        NOT line up with `iterator.classes` (keras-team/keras #4225, #6234):
        predict warns once per call then; make the iterator with shuffle=False to
        compare predictions with `.classes`.
        """
        batch_size = _check_batch_size(32 if batch_size is None else batch_size, f"{self.describe()}.predict")
        steps = _check_steps(steps, "steps", f"{self.describe()}.predict")
        if not hasattr(x, "shape") and not isinstance(x, (list, tuple, dict)):
            if getattr(x, "shuffle", False) is True and getattr(x, "classes", None) is not None:
                warnings.warn(
                    f"{self.describe()}.predict: the iterator shuffles (shuffle=True), so the rows of "
                    "the predictions follow its random order, not the order of its .classes and "
                    ".filenames; comparing them gives meaningless accuracy. Make the iterator with "
                    "shuffle=False to line them up (keras-team/keras #4225).", UserWarning, stacklevel=2)
            batches = iter(x)
            if steps is not None:
                batches = itertools.islice(batches, steps)
            parts = []
            for batch in batches:
                bx = batch[0] if isinstance(batch, (tuple, list)) and len(batch) in (2, 3) \
                    and len(self.graph.inputs) == 1 else batch
                parts.append(self._predict_arrays(self._check_x(bx, "predict"), batch_size))
            if not parts:
                raise ValueError(f"{self.describe()}.predict: no samples to predict")
            return self._unwrap([np.concatenate(p) for p in zip(*parts)])
        return self._unwrap(self._predict_arrays(self._check_x(x, "predict"), batch_size))

    def _predict_arrays(self, xs, batch_size):
        batch_size = _check_batch_size(batch_size, f"{self.describe()}.predict")
        outs = [[] for _ in self.graph.outputs]
        for start in range(0, int(xs[0].shape[0]), batch_size):
            batch = [a[start:start + batch_size] for a in xs]
            for part, score in zip(outs, self._scores(self.forward(batch, training=False, fold_batchnorm=True))):
                part.append(score)
        return [np.concatenate(part) for part in outs]

    def _unwrap(self, values):
        return values[0] if len(values) == 1 else values

    def __call__(self, x, training=False):
        """The raw outputs (no softmax added) as numpy arrays: one array for one
        output, a list for several. A feature extractor built as
        cn.Model(inputs=model.inputs, outputs=[layer.output, ...]) returns the
        listed activations."""
        xs = self._check_x(x, "__call__")
        outs = self.graph.forward(xs, training=training)
        return self._unwrap([get_ops().to_numpy(out) for out in outs])

    # -------------------------------------------------------------- weights
    def _stores(self):
        return [(i, layer, kind, store) for i, layer in enumerate(self.layers)
                for kind, store in (("param", layer.params), ("state", layer.state))]

    def get_weights(self):
        """Copies of every parameter and state array, in layer order (host numpy)."""
        return [np.array(to_host(store[key])) for _, _, _, store in self._stores() for key in store]

    def set_weights(self, weights):
        """Assign arrays in the order of get_weights (shapes must match)."""
        targets = [(layer, store, key) for _, layer, _, store in self._stores() for key in store]
        if len(weights) != len(targets):
            raise ValueError(f"{self.describe()}.set_weights: expected {len(targets)} arrays, "
                             f"got {len(weights)}")
        ops = get_ops()
        for (layer, store, key), w in zip(targets, weights):
            w = np.asarray(w)
            if w.shape != tuple(store[key].shape):
                raise ValueError(f"{layer.describe()}: weight {key!r} has shape "
                                 f"{tuple(store[key].shape)}, got {w.shape}")
            # C order: the kernels read weights as contiguous blocks
            store[key] = ops.asarray(np.ascontiguousarray(w), dtype=layer.dtype)

    def named_weights(self):
        """{"param/<layer index>/<name>" or "state/...": host array}: the weights as
        a model file stores them."""
        return {f"{kind}/{i}/{key}": to_host(store[key]) for i, _, kind, store in self._stores()
                for key in store}

    def set_named_weights(self, arrays, source="set_named_weights"):
        """Assign weights from named_weights()-style names; every one must be present
        with the shape the architecture gives."""
        ops = get_ops()
        for i, layer, kind, store in self._stores():
            for key in store:
                name = f"{kind}/{i}/{key}"
                if name not in arrays:
                    raise ValueError(f"{source} is missing array {name!r} ({layer.describe()})")
                value = arrays[name]
                if tuple(value.shape) != tuple(store[key].shape):
                    raise ValueError(f"{source}: array {name!r} has shape {tuple(value.shape)}, "
                                     f"expected {tuple(store[key].shape)} for {layer.describe()}")
                store[key] = ops.asarray(np.asarray(value), dtype=layer.dtype)

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    # ---------------------------------------------------------------- state
    def get_state(self):
        """(state, arrays): everything but the weights that training changes.

        state (JSON-friendly): the compile settings (get_compile_config), random
        generators, epochs trained, optimizer step counter and the internal counters
        of the running fit's callbacks; arrays: the optimizer's slots and
        array-valued callback state (EarlyStopping's best weights), as host numpy
        arrays keyed by name. Callbacks that keep no state (Callback.get_state
        returns None) are not recorded.
        """
        state = {"compile": self.get_compile_config(),
                 "rng": {"model": _rng_state(self._rng),
                         "layers": [_rng_state(layer.rng) for layer in self.layers]},
                 "shuffle_entropy": str(self._shuffle_entropy),
                 "epochs_seen": self._epochs_seen, "optimizer": None, "callbacks": []}
        arrays = {}
        if self.compiled:
            iterations, slots = self.optimizer.get_state()
            state["optimizer"] = {"iterations": iterations}
            arrays.update({f"optimizer/{k}": v for k, v in slots.items()})
        callbacks = self._active_callbacks or []
        for i, cb in enumerate(callbacks):
            cb_state, cb_arrays = cb.get_state()
            if cb_state is None:
                continue
            state["callbacks"].append({"class_name": type(cb).__name__, "index": i, "state": cb_state})
            arrays.update({f"callback/{i}/{k}": v for k, v in cb_arrays.items()})
        if not callbacks and self._callback_states:
            # loaded but not yet resumed: keep what the file had
            state["callbacks"] = [dict(s, arrays=None) for s in self._callback_states]
            for s in self._callback_states:
                arrays.update({f"callback/{s['index']}/{k}": v for k, v in (s.get("arrays") or {}).items()})
            for s in state["callbacks"]:
                s.pop("arrays")
        return state, arrays

    def set_state(self, state, arrays=None, compile=True):
        """Restore what get_state() returned; with compile=True the model is first
        compiled from the recorded settings (when there are any), so the optimizer's
        slots and step count can be restored."""
        arrays = arrays or {}
        if compile and state.get("compile"):
            self.compile_from_config(state["compile"])
        rng = state.get("rng") or {}
        _set_rng_state(self._rng, rng.get("model"))
        for layer, s in zip(self.layers, rng.get("layers") or []):
            _set_rng_state(layer.rng, s)
        if state.get("shuffle_entropy") is not None:
            self._shuffle_entropy = int(state["shuffle_entropy"])
        self._epochs_seen = int(state.get("epochs_seen", 0))
        if state.get("optimizer") is not None and self.compiled:
            slots = {k[len("optimizer/"):]: v for k, v in arrays.items() if k.startswith("optimizer/")}
            self.optimizer.set_state(state["optimizer"]["iterations"], slots)
        self._callback_states = []
        for s in state.get("callbacks") or []:
            prefix = f"callback/{s['index']}/"
            self._callback_states.append(dict(s, arrays={k[len(prefix):]: v for k, v in arrays.items()
                                                         if k.startswith(prefix)}))

    def _restore_callback_states(self, callbacks):
        """On resume, give each callback the state its namesake at the same position
        had when the model was saved (EarlyStopping's wait and best, ...)."""
        for s in self._callback_states:
            i = s["index"]
            if i < len(callbacks) and type(callbacks[i]).__name__ == s["class_name"]:
                callbacks[i].set_state(s["state"], s.get("arrays") or {})
        self._callback_states = []

    # -------------------------------------------------------------- summary
    def summary(self, print_fn=print):
        """Keras-style table: layer (type), output shape, parameters, forward FLOPs
        and activation memory per image, and for graphs the "Connected to" column;
        then the totals."""
        if not self.built:
            raise ValueError(f"{self.describe()}.summary: the model is not built yet; give "
                             "input_shape=... or call fit/build first")
        graph = self.graph
        show_links = not isinstance(self, Sequential)
        rows = []
        total_flops = total_act = 0
        calls = {}
        for node in graph.nodes:
            calls.setdefault(node.layer, []).append(node)
        for layer in self.layers:
            if isinstance(layer, InputLayer) and not show_links:
                continue
            nodes = calls[layer]
            flops_fn = getattr(layer, "flops_per_image", None)
            per_call = int(flops_fn()) if flops_fn else int(np.prod(layer.output_shape))
            flops = per_call * len(nodes)
            act = sum(int(np.prod(n.outputs[0].shape[1:])) for n in nodes) * layer.dtype.itemsize
            total_flops += flops
            total_act += act
            shapes = {n.outputs[0].shape for n in nodes}
            shape = shape_str(next(iter(shapes))).replace("N", "None") if len(shapes) == 1 else "multiple"
            links = ", ".join(f"{t.layer.name}[{t.node.call_index}][0]" for n in nodes for t in n.inputs)
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}",
                         _human(flops, "FLOP"), _human(act, "B"), links or "-"))
        head = ["Layer (type)", "Output Shape", "Param #", "FLOPs/img", "Act. mem/img"]
        widths = [max(30, *(len(r[0]) + 2 for r in rows)), 22, 12, 14, 14]
        if show_links:
            head.append("Connected to")
            widths.append(max(14, *(len(r[5]) + 2 for r in rows)))
        else:
            rows = [r[:5] for r in rows]
        line = "".join(h.ljust(w) for h, w in zip(head, widths))
        width = sum(widths)
        trainable = self.count_params()
        non_trainable = sum(int(np.prod(a.shape)) for layer in self.layers for a in layer.state.values())
        out = [f'Model: "{self.name}"', "_" * width, line, "=" * width]
        for r in rows:
            out.append("".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        out += ["=" * width,
                f"Total params: {trainable + non_trainable:,}",
                f"Trainable params: {trainable:,}",
                f"Non-trainable params: {non_trainable:,}",
                f"Forward FLOPs per image: {_human(total_flops, 'FLOP')}",
                f"Activation memory per image: {_human(total_act, 'B')}",
                "_" * width]
        print_fn("\n".join(out))

    # ------------------------------------------------------ config/save/load
    def get_config(self):
        """The architecture as JSON-friendly data: every layer's config, and each
        node as the layer it calls and the [layer name, call index] of its inputs."""
        if not self.built:
            raise ValueError(f"{self.describe()}: cannot describe a model that is not built yet")
        calls = {}
        layers = []
        for node in self.graph.nodes:
            if node.layer not in calls:
                calls[node.layer] = []
                layers.append(node.layer)
            calls[node.layer].append(node)
        specs = []
        for layer in layers:
            spec = serialize(layer)
            spec["inbound_nodes"] = [[[t.layer.name, t.node.call_index] for t in node.inputs]
                                     for node in calls[layer]]
            specs.append(spec)

        def ref(t):
            return [t.layer.name, t.node.call_index]
        return {"name": self.name, "seed": self.seed, "class_names": self.class_names, "layers": specs,
                "inputs": [ref(t) for t in self.graph.inputs], "outputs": [ref(t) for t in self.graph.outputs]}

    @classmethod
    def from_config(cls, config):
        """A model with the architecture of get_config() (fresh weights)."""
        if not isinstance(config, dict) or "layers" not in config:
            raise ValueError("Model.from_config: expected a dict with 'layers'")
        tensors = {}          # (layer name, call index) -> SymbolicTensor
        pending = []
        for spec in config["layers"]:
            calls = spec.get("inbound_nodes", [])
            if spec.get("class_name") == "InputLayer":
                layer = InputLayer(**spec["config"])
                tensors[(layer.name, 0)] = layer.output
            else:
                layer = deserialize({"class_name": spec["class_name"], "config": spec["config"]})
                pending.extend((layer, i, links) for i, links in enumerate(calls))
        # call the layers in the order their inputs become available; a round that
        # makes no progress means some node waits on its own output (a cycle) or on
        # a tensor no layer makes
        while pending:
            waiting = []
            for layer, i, links in pending:
                keys = [tuple(link) for link in links]
                if all(k in tensors for k in keys):
                    args = [tensors[k] for k in keys]
                    tensors[(layer.name, i)] = layer(args[0] if len(args) == 1 else args)
                else:
                    waiting.append((layer, i, links))
            if len(waiting) == len(pending):
                layer, _, links = waiting[0]
                missing = [tuple(k) for k in links if tuple(k) not in tensors]
                raise GraphError(f"Model.from_config: layer {layer.name!r} waits on {missing}, which no "
                                 "layer produces before it: the graph has a cycle or a missing layer")
            pending = waiting
        try:
            inputs = [tensors[tuple(r)] for r in config["inputs"]]
            outputs = [tensors[tuple(r)] for r in config["outputs"]]
        except KeyError as exc:
            raise GraphError(f"Model.from_config: inputs/outputs name an unknown tensor {exc}") from exc
        model = Model(inputs=inputs, outputs=outputs, name=config.get("name"))
        model.seed = config.get("seed")
        model._rng = np.random.default_rng(model.seed)
        model.class_names = config.get("class_names")
        return model

    def save(self, path):
        """Write architecture, weights, compile settings and training state to one
        .npz file (JSON + arrays; never pickle)."""
        if not self.built:
            raise ValueError(f"{self.describe()}: cannot save a model that is not built yet")
        state, state_arrays = self.get_state()
        meta = {"class_name": type(self).__name__, "model": self.get_config(), "state": state}
        saving.write_model_file(path, meta, {**self.named_weights(), **state_arrays})


def _snake_class(model):
    return "sequential" if isinstance(model, Sequential) else "model"


class Sequential(Model):
    """A linear stack of layers (Keras' Sequential): the graph is a chain.

    Sequential(layers, input_shape=(28, 28, 1), seed=0): `input_shape` has no batch
    axis (or start the list / .add() with cn.Input(shape=...)); `seed` fixes the
    initial weights, the shuffling and dropout masks. Without an input shape the
    model is built on the first data it sees.
    """

    def __init__(self, layers=None, input_shape=None, name=None, seed=None):
        super().__init__(name=name or unique_name("sequential"), seed=seed)
        self._stack = []             # the layers, InputLayer excluded
        self._input = None           # the InputLayer's output tensor, once known
        for layer in layers or []:
            self.add(layer)
        if input_shape is None and self._input is None and self._stack \
                and self._stack[0].input_shape is not None:
            input_shape = self._stack[0].input_shape
        if input_shape is not None and not self.built:
            self.build(input_shape)

    @property
    def layers(self):
        """The layers in order (the InputLayer left out, as in Keras)."""
        return list(self._stack)

    def add(self, layer):
        """Append a layer (or start with cn.Input(shape=...)); it is built at once
        when the model already is."""
        if isinstance(layer, SymbolicTensor):
            if not isinstance(layer.layer, InputLayer):
                raise TypeError(f"{self.describe()}.add: expected a Layer or cn.Input(...), got the output "
                                f"of {layer.layer.describe()}")
            if self._input is not None or self._stack:
                raise ValueError(f"{self.describe()}.add: an Input can only come first")
            self._input = layer
            self.build(layer.shape[1:])
            return
        if isinstance(layer, InputLayer):
            return self.add(layer.output)
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a Layer, got {type(layer).__name__}")
        if any(existing is layer for existing in self._stack):
            raise ValueError(f"Sequential.add: layer {layer.name!r} is already in the model")
        self._stack.append(layer)
        if self._input is not None:
            previous = self.graph.outputs[0] if self.graph else self._input
            layer.build(tuple(previous.shape[1:]), rng=self._rng.spawn(1)[0])
            self._set_graph(Graph([self._input], [layer(previous)], owner=self.describe()))

    def build(self, input_shape):
        """Build every layer in turn, each from the previous one's output shape,
        and record the chain as a graph."""
        if self.built:
            raise ValueError(f"{self.describe()}: already built for input shape {self.input_shape}")
        input_shape = tuple(int(d) for d in input_shape)
        if self._input is None:
            self._input = InputLayer(input_shape, name=unique_name("input_layer"))
            self._input = self._input.output
        elif tuple(self._input.shape[1:]) != input_shape:
            raise ValueError(f"{self.describe()}: built for input shape {self._input.shape[1:]}, "
                             f"got {input_shape}")
        if not self._stack:
            self.graph = None
            return
        out = self._input
        for layer, rng in zip(self._stack, self._rng.spawn(len(self._stack))):
            layer.build(tuple(out.shape[1:]), rng=rng)
            out = layer(out)
        self._set_graph(Graph([self._input], [out], owner=self.describe()))

    def _ensure_built(self, x):
        if not self._stack:
            raise ValueError(f"{self.describe()}: the model has no layers")
        if not self.built:
            first = x[0] if isinstance(x, (list, tuple)) and x and hasattr(x[0], "shape") else x
            self.build(np.shape(first)[1:])

    def get_config(self):
        config = super().get_config()
        config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        """A Sequential from get_config(): the layers in order (both the graph form
        and the older list-of-layers form, which has no InputLayer)."""
        specs = [s for s in config["layers"] if s.get("class_name") != "InputLayer"]
        layers = [deserialize({"class_name": s["class_name"], "config": s["config"]}) for s in specs]
        model = cls(layers, input_shape=config.get("input_shape"), name=config.get("name"),
                    seed=config.get("seed"))
        model.class_names = config.get("class_names")
        return model


def load_model(path, compile=True, allow_nonfinite=False):
    """Rebuild a model (Sequential or graph), its weights, compile settings and
    training state from a file written by model.save()."""
    meta, arrays = saving.read_model_file(path, allow_nonfinite=allow_nonfinite)
    try:
        if meta["version"] == 1:
            meta = saving.upgrade_v1(meta)
        cls = {"Sequential": Sequential, "Model": Model}.get(meta.get("class_name"))
        if cls is None:
            raise ValueError(f"load_model: {path} holds an unknown model class {meta.get('class_name')!r}")
        model = cls.from_config(meta["model"])
        model.set_named_weights(arrays, source=f"load_model: {path}")
        model.set_state(meta.get("state") or {}, arrays, compile=compile)
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as exc:
        raise ValueError(f"load_model: {path} has missing or malformed metadata ({exc!r})") from exc
    except ValueError as exc:
        # a layer config a constructor refuses, a random-generator state numpy refuses, ...
        if os.fspath(path) in str(exc):
            raise
        raise ValueError(f"load_model: {path}: {exc}") from exc
    return model


def _check_batch_size(batch_size, owner):
    """A positive int; None means Keras' default, 32."""
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"{owner}: batch_size must be a positive int, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"{owner}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _check_steps(steps, what, owner):
    """A step count as an int: fractional counts (samples / batch_size, as the Keras
    course passes them) round up, as Keras runs ceil(steps) batches."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, (int, float, np.integer, np.floating)) \
            or not np.isfinite(steps) or steps <= 0:
        raise ValueError(f"{owner}: {what} must be a positive number of batches, got {steps!r}")
    return int(math.ceil(steps))


def _len_or_none(obj):
    try:
        return len(obj)
    except TypeError:
        return None


def _array_batches(xs, ys, batch_size, sws=None):
    """(xs, ys, sample weights or None) batches of checked arrays, in order."""
    for start in range(0, int(xs[0].shape[0]), batch_size):
        part = slice(start, start + batch_size)
        yield ([a[part] for a in xs], [a[part] for a in ys],
               None if sws is None else [None if w is None else w[part] for w in sws])


def _metric_config(spec, resolved):
    """How a compile() metric is stored in a model file: a string as given; a
    built-in Metric object as its class name and config; a function by its name
    (which loading then reports as not built in)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, metrics_module.Metric):
        try:
            return {"class_name": type(spec).__name__, "config": spec.get_config()}
        except NotImplementedError:
            return spec.name
    if isinstance(spec, type):
        return spec.__name__
    return resolved.name


def _metric_from_config(spec):
    """The compile() metric of a stored _metric_config entry (ValueError if unknown)."""
    if isinstance(spec, dict):
        from . import metric_objects
        cls = getattr(metric_objects, str(spec.get("class_name")), None)
        if not (isinstance(cls, type) and issubclass(cls, metrics_module.Metric)) \
                or cls in (metrics_module.Metric, metrics_module.MeanMetricWrapper, metrics_module.EpochMetric):
            raise ValueError(f"unknown metric class {spec.get('class_name')!r}")
        return cls.from_config(spec.get("config") or {})
    metrics_module.get_metric(spec)
    return spec


def _human(value, unit):
    for prefix in ("", "K", "M", "G", "T"):
        if abs(value) < 1000 or prefix == "T":
            return f"{value:.0f} {prefix}{unit}" if prefix == "" else f"{value:.2f} {prefix}{unit}"
        value /= 1000.0

