"""Per-layer profile: where does the time of a training step go?

    import convnet as cn
    from convnet.profile import profile_model
    rows = profile_model(model, x_batch, y_batch, repeats=5)

runs the model's training step layer by layer (forward, loss, backward, optimizer
update) `repeats` times after `warmup` untimed steps, and prints a table of the
median time of each layer's forward and backward pass with the rate it achieved:

    GFLOP/s = floating-point operations / time,

where a layer's forward FLOPs are `layer.flops_per_image() * N` (a multiply-add
counts 2) and its backward FLOPs are twice that for Conv2D and Dense (one product
for the weight gradient, one for the input gradient) and the same as forward for
the other layers (the first Conv2D computes only its weight gradient: nothing asks
for the gradient of the model's input, and layers before it run no backward at
all, exactly as in training). Without labels `y` only the forward passes are timed
(inference). The optimizer update is really applied: profile a copy of a model
you care about, or accept that it takes `warmup + repeats` steps.
"""

import time

import numpy as np

from .arrays import to_host
from .backend import get_ops

__all__ = ["profile_model", "format_profile"]


def _sync(ops):
    sync = getattr(ops, "synchronize", None)
    if sync is not None:
        sync()


def _backward_flops(layer, forward_flops, input_grad):
    from .layers import Conv2D, Dense
    if isinstance(layer, (Conv2D, Dense)):
        # one product for the weight gradient, one more for the input gradient
        return 2 * forward_flops if input_grad else forward_flops
    return forward_flops


class _NodeTimer:
    """The trace object of Graph.forward/backward: wall time of each layer call."""

    def __init__(self, ops):
        self.ops = ops
        self.times = {}
        self._t0 = 0.0

    def start(self, node, phase):
        _sync(self.ops)
        self._t0 = time.perf_counter()

    def stop(self, node, phase):
        _sync(self.ops)
        self.times[(id(node), phase)] = time.perf_counter() - self._t0


def profile_model(model, x, y=None, repeats=5, warmup=1, print_fn=print, stat="median"):
    """Time each node's forward and backward pass on batch (x, y).

    model: a built model (compiled when y is given); x: (N, ...) one batch;
    y: labels for the model's loss, or None to time inference (forward only).
    The step timed is train_step's own: model.forward, model.compute_loss,
    model.backward, model.apply_gradients, with a timer around each layer call.
    Returns a list of dicts, one per node plus "loss", "optimizer" and "total"
    rows: name, type, output_shape, fwd_ms, bwd_ms, fwd_gflops, bwd_gflops,
    share (fraction of the step), algorithm (the convolution algorithm a conv
    layer ran, Conv2D.algorithm(); None for other rows). Prints the table with `print_fn` (None: silent).
    `stat` is "median" (default) or "min": on a busy machine the minimum over the
    repeats shows what the code can do, the median what it did.
    """
    if stat not in ("median", "min"):
        raise ValueError(f"profile_model: stat must be 'median' or 'min', got {stat!r}")
    reduce = np.median if stat == "median" else np.min
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"profile_model: repeats must be a positive int, got {repeats!r}")
    ops = get_ops()
    training = y is not None
    if training and not model.compiled:
        raise RuntimeError(f"{model.describe()}: call compile() before profile_model()")
    xs, ys = model.check_batch(x, y, "profile_model")
    nodes = [node for node in model.graph.nodes if type(node.layer).__name__ != "InputLayer"]
    nn = len(nodes)
    fwd = np.zeros((repeats, nn))
    bwd = np.zeros((repeats, nn))
    loss_t = np.zeros(repeats)
    opt_t = np.zeros(repeats)

    for rep in range(-warmup, repeats):
        timer = _NodeTimer(ops)
        t_loss = t_opt = 0.0
        if training:
            outs = model.forward(xs, training=True, trace=timer)
            t0 = time.perf_counter()
            _, grads = model.compute_loss(outs, ys)
            _sync(ops)
            t_loss = time.perf_counter() - t0
            model.backward(grads, trace=timer)
            t0 = time.perf_counter()
            model.apply_gradients()
            _sync(ops)
            t_opt = time.perf_counter() - t0
        else:
            for out in model.forward(xs, training=False, trace=timer, fold_batchnorm=True):   # as predict runs
                to_host(out)
        if rep >= 0:
            fwd[rep] = [timer.times.get((id(node), "forward"), 0.0) for node in nodes]
            bwd[rep] = [timer.times.get((id(node), "backward"), 0.0) for node in nodes]
            loss_t[rep], opt_t[rep] = t_loss, t_opt

    n = int(xs[0].shape[0])
    f_med = reduce(fwd, axis=0)
    b_med = reduce(bwd, axis=0)
    total = float(reduce(fwd.sum(1) + bwd.sum(1) + loss_t + opt_t))
    rows = []
    for i, node in enumerate(nodes):
        layer = node.layer
        flops_fn = getattr(layer, "flops_per_image", None)
        flops = float(flops_fn()) * n if flops_fn else 0.0
        ran_backward = training and model.graph.runs_backward(node)
        bflops = _backward_flops(layer, flops, model.graph.input_grad_needed(node)) if ran_backward else 0.0
        name = layer.name if len(layer.inbound_nodes) == 1 else f"{layer.name}[{node.call_index}]"
        algorithm = getattr(layer, "algorithm", None)
        rows.append({
            "algorithm": algorithm() if callable(algorithm) else None,
            "name": name, "type": type(layer).__name__,
            "output_shape": (n, *node.outputs[0].shape[1:]),
            "fwd_ms": 1e3 * f_med[i], "bwd_ms": 1e3 * b_med[i] if training else None,
            "fwd_gflops": flops / f_med[i] / 1e9 if f_med[i] > 0 and flops else None,
            "bwd_gflops": bflops / b_med[i] / 1e9 if ran_backward and b_med[i] > 0 and bflops else None,
            "share": (f_med[i] + b_med[i]) / total if total > 0 else 0.0,
        })
    if training:
        for name, t in (("loss", loss_t), ("optimizer", opt_t)):
            med = float(reduce(t))
            rows.append({"name": name, "type": "", "output_shape": None, "fwd_ms": 1e3 * med, "algorithm": None,
                         "bwd_ms": None, "fwd_gflops": None, "bwd_gflops": None,
                         "share": med / total if total > 0 else 0.0})
    rows.append({"name": "total", "type": "", "output_shape": None, "fwd_ms": 1e3 * total, "algorithm": None,
                 "bwd_ms": None, "fwd_gflops": None, "bwd_gflops": None, "share": 1.0,
                 "images_per_s": n / total if total > 0 else None})
    if print_fn is not None:
        print_fn(format_profile(rows, title=f"{model.name}: batch {n}, backend {ops.name}, "
                                f"{'training step' if training else 'inference'}, "
                                f"{stat} of {repeats}"))
    return rows


def format_profile(rows, title=""):
    """The profile rows as a text table."""
    def num(v, fmt):
        return "" if v is None else format(v, fmt)

    head = (f"{'layer':<28}{'output':<22}{'fwd ms':>9}{'fwd GF/s':>10}{'bwd ms':>9}{'bwd GF/s':>10}{'share':>8}"
            "  algorithm")
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for r in rows:
        label = f"{r['name']} ({r['type']})" if r["type"] else r["name"]
        shape = "" if r["output_shape"] is None else str(tuple(r["output_shape"]))
        if r["name"] == "total":
            lines.append("-" * len(head))
            ips = r.get("images_per_s")
            label = f"total ({ips:,.0f} img/s)" if ips else "total"
        lines.append(f"{label:<28.28}{shape:<22}{num(r['fwd_ms'], '9.3f')}{num(r['fwd_gflops'], '10.1f')}"
                     f"{num(r['bwd_ms'], '9.3f')}{num(r['bwd_gflops'], '10.1f')}{100 * r['share']:7.1f}%"
                     f"  {r.get('algorithm') or ''}".rstrip())
    return "\n".join(lines)
