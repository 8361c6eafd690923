"""Finite-difference gradient checking, for learners as much as for tests.

For a layer, pick a random upstream gradient dy and define the scalar
    f(x, params) = sum(forward(x) * dy)
whose gradient is exactly what backward(dy) returns (dx and layer.grads). Each
checked entry t of each tensor is compared with the central difference
    (f(t + h) - f(t - h)) / 2h        error O(h^2), in float64.
For a model, f is the loss on a batch and every parameter is checked.

The error of a tensor is normwise:  max|analytic - numeric| / max(max|analytic|,
max|numeric|), so entries near zero do not blow it up; a correct backward pass
gives about 1e-9 to 1e-11 here, a wrong one 1e-2 or more.
"""

import numpy as np

from ._checks import check_int, check_real
from .arrays import to_host
from .backend import get_ops
from .layers import Layer
from .losses import Loss


class GradcheckReport:
    """Errors per checked tensor: report.errors["W"] -> max relative error."""

    def __init__(self, name, rows, tolerance):
        self.name = name
        self.rows = rows            # {tensor: (relative error, abs error, entries checked)}
        self.tolerance = tolerance

    @property
    def errors(self):
        return {key: rel for key, (rel, _, _) in self.rows.items()}

    @property
    def max_error(self):
        return max(self.errors.values()) if self.rows else 0.0

    @property
    def passed(self):
        return self.max_error < self.tolerance

    def __bool__(self):
        return self.passed

    def __str__(self):
        lines = [f"gradcheck {self.name}: {'PASS' if self.passed else 'FAIL'} "
                 f"(max relative error {self.max_error:.2e}, tolerance {self.tolerance:.0e})",
                 f"  {'tensor':<24}{'rel. error':>12}{'abs. error':>12}{'checked':>9}"]
        for key, (rel, abs_err, count) in self.rows.items():
            lines.append(f"  {key:<24}{rel:>12.2e}{abs_err:>12.2e}{count:>9}")
        return "\n".join(lines)

    __repr__ = __str__


def _indices(size, max_checks, rng):
    if max_checks is None or size <= max_checks:
        return np.arange(size)
    return np.sort(rng.choice(size, size=max_checks, replace=False))


def _compare(analytic, numeric):
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    abs_err = float(np.max(np.abs(analytic - numeric))) if analytic.size else 0.0
    scale = max(float(np.max(np.abs(analytic), initial=0)), float(np.max(np.abs(numeric), initial=0)))
    return (abs_err / scale if scale > 0 else abs_err), abs_err


def _numeric_grad(f, tensor, indices, h):
    """Central differences of scalar f() w.r.t. tensor.flat[indices] (tensor edited in place).

    Each entry is addressed by its multi-index, so a tensor of any memory layout
    (a transposed or strided view) is perturbed in place, never in a copy."""
    out = np.empty(len(indices))
    for n, i in enumerate(indices):
        at = np.unravel_index(i, tensor.shape)
        old = float(tensor[at])
        tensor[at] = old + h
        plus = f()
        tensor[at] = old - h
        minus = f()
        tensor[at] = old
        out[n] = (plus - minus) / (2 * h)
    return out


def _float64_copy(layer, input_shape):
    # from the layer's own class, so a learner's custom layer can be checked too
    config = dict(layer.get_config(), dtype="float64")
    twin = type(layer).from_config(config)
    twin.build(input_shape, rng=np.random.default_rng(0))
    for store, src in ((twin.params, layer.params), (twin.state, layer.state)):
        for key in store:
            store[key][...] = get_ops().asarray(np.asarray(to_host(src[key]), dtype=np.float64))
    return twin


def check_layer(layer, x, *, h=1e-6, training=True, max_checks=200, seed=0, tolerance=1e-6):
    """Gradient check of one layer at input x (N, ...); returns a GradcheckReport.

    x is a list of arrays for a merge layer (each input is checked: "input_0", ...).
    The layer's own dtype does not matter: a float64 twin with the same weights is
    checked. At most `max_checks` random entries per tensor are perturbed.
    """
    rng = np.random.default_rng(seed)
    several = isinstance(x, (list, tuple))
    xs = [np.array(to_host(a), dtype=np.float64) for a in (x if several else [x])]
    if not layer.built:
        layer.build([a.shape[1:] for a in xs] if several else xs[0].shape[1:])
    twin = _float64_copy(layer, layer.input_shape)
    twin.rng = np.random.default_rng(seed)
    rng_state = twin.rng.bit_generator.state
    ops = get_ops()

    def run():
        # the same dropout mask on every evaluation: rewind the layer's generator
        twin.rng.bit_generator.state = rng_state
        inp = list(xs) if several else xs[0]
        return np.asarray(ops.to_numpy(twin.forward(inp, training=training)), dtype=np.float64)

    y = run()
    dy = rng.standard_normal(y.shape)
    dx = twin.backward(dy)
    names = [f"input_{i}" for i in range(len(xs))] if several else ["input"]
    analytic = {name: np.asarray(ops.to_numpy(d)) for name, d in zip(names, dx if several else [dx])}
    analytic.update({key: np.asarray(ops.to_numpy(g)) for key, g in twin.grads.items()})

    host_params = {key: np.array(ops.to_numpy(p)) for key, p in twin.params.items()}
    tensors = {**dict(zip(names, xs)), **host_params}

    def objective():
        for key, value in host_params.items():
            twin.params[key] = ops.asarray(value)
        return float(np.sum(run() * dy))

    rows = {}
    for key, tensor in tensors.items():
        idx = _indices(tensor.size, max_checks, rng)
        numeric = _numeric_grad(objective, tensor, idx, h)
        rel, abs_err = _compare(analytic[key].reshape(-1)[idx], numeric)
        rows[key] = (rel, abs_err, len(idx))
    return GradcheckReport(f"{type(layer).__name__} '{layer.name}'", rows, tolerance)


def check_loss(loss, logits, targets, *, h=1e-6, tolerance=1e-6):
    """Gradient check of loss.forward(logits, targets) against loss.backward()."""
    z = np.array(to_host(logits), dtype=np.float64)
    loss.forward(z, targets)
    analytic = np.asarray(to_host(loss.backward()))
    numeric = _numeric_grad(lambda: loss.forward(z, targets), z, np.arange(z.size), h)
    rel, abs_err = _compare(analytic.reshape(-1), numeric)
    return GradcheckReport(type(loss).__name__, {"logits": (rel, abs_err, z.size)}, tolerance)


def float64_twin(model):
    """A float64 copy of a model (same architecture, weights and loss), through
    the model's public config methods; used by check_model."""
    config = model.get_config()
    for spec in config["layers"]:
        spec["config"] = dict(spec["config"], dtype="float64")
    twin = type(model).from_config(config)
    twin.set_weights(model.get_weights())
    compile_config = model.get_compile_config()
    if compile_config is not None:
        twin.compile_from_config(dict(compile_config, optimizer="sgd"))
    return twin


def check_model(model, x, y, *, h=1e-6, max_checks=50, seed=0, tolerance=1e-6):
    """Gradient check of a compiled model's training loss w.r.t. every parameter.

    The loss is the one training minimises: model.forward, model.compute_loss,
    model.backward (the same walk over the graph as train_step), on a float64 twin.
    """
    if not model.compiled:
        raise RuntimeError(f"gradcheck: compile {model.describe()} before checking it")
    xs, ys = model.check_batch(x, y, "gradcheck")
    twin = float64_twin(model)
    xs = [np.asarray(to_host(a), dtype=np.float64) for a in xs]
    states = [layer.rng.bit_generator.state for layer in twin.layers]
    ops = get_ops()

    def loss_and_grads():
        # the same dropout masks at every evaluation: rewind every generator
        for layer, state in zip(twin.layers, states):
            layer.rng.bit_generator.state = state
        return twin.compute_loss(twin.forward(xs, training=True), ys)

    def loss_value():
        return loss_and_grads()[0]

    twin.backward(loss_and_grads()[1])
    rng = np.random.default_rng(seed)
    rows = {}
    for layer in twin.layers:
        analytic = {key: np.asarray(ops.to_numpy(g)) for key, g in layer.grads.items()}
        for key in list(layer.params):
            host = np.array(ops.to_numpy(layer.params[key]))

            def objective(layer=layer, key=key, host=host):
                layer.params[key] = ops.asarray(host)
                return loss_value()
            idx = _indices(host.size, max_checks, rng)
            numeric = _numeric_grad(objective, host, idx, h)
            layer.params[key] = ops.asarray(host)
            rel, abs_err = _compare(analytic[key].reshape(-1)[idx], numeric)
            rows[f"{layer.name}/{key}"] = (rel, abs_err, len(idx))
    return GradcheckReport(f"model '{model.name}'", rows, tolerance)


def gradcheck(target, x, y=None, **kwargs):
    """Check a Layer (at input x), a Loss (at logits x, targets y) or a compiled model
    (on batch x, y). Returns a GradcheckReport; print it for a table."""
    if "h" in kwargs:
        kwargs["h"] = check_real(kwargs["h"], "h (the finite-difference step)", "gradcheck", low=0, low_open=True)
    if kwargs.get("max_checks") is not None:
        kwargs["max_checks"] = check_int(kwargs["max_checks"], "max_checks", "gradcheck", low=1)
    if isinstance(target, Loss) and y is None:
        raise ValueError(f"gradcheck: checking the loss {type(target).__name__} needs targets y "
                         "(gradcheck(loss, logits, y))")
    if isinstance(target, Layer):
        return check_layer(target, x, **kwargs)
    if isinstance(target, Loss):
        return check_loss(target, x, y, **kwargs)
    if hasattr(target, "layers") and hasattr(target, "train_step"):
        return check_model(target, x, y, **kwargs)
    raise TypeError(f"gradcheck: expected a Layer, a Loss or a model, got {type(target).__name__}")
