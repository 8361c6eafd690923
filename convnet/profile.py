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
the other layers (a first Conv2D computes only its weight gradient: Sequential
never asks for the gradient of the model's input). Without labels `y` only the forward passes are timed
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


def _backward_flops(layer, forward_flops, first):
    from .layers import Conv2D, Dense
    if isinstance(layer, Conv2D) and first:
        return forward_flops          # the first layer computes no input gradient
    return 2 * forward_flops if isinstance(layer, (Conv2D, Dense)) else forward_flops


def profile_model(model, x, y=None, repeats=5, warmup=1, print_fn=print, stat="median"):
    """Time each layer's forward and backward pass on batch (x, y).

    model: a built Sequential (compiled when y is given); x: (N, ...) one batch;
    y: labels for the model's loss, or None to time inference (forward only).
    Returns a list of dicts, one per layer plus "loss", "optimizer" and "total"
    rows: name, type, output_shape, fwd_ms, bwd_ms, fwd_gflops, bwd_gflops,
    share (fraction of the step). Prints the table with `print_fn` (None: silent).
    `stat` is "median" (default) or "min": on a busy machine the minimum over the
    repeats shows what the code can do, the median what it did.
    """
    if stat not in ("median", "min"):
        raise ValueError(f"profile_model: stat must be 'median' or 'min', got {stat!r}")
    reduce = np.median if stat == "median" else np.min
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"profile_model: repeats must be a positive int, got {repeats!r}")
    ops = get_ops()
    x = model._check_x(x, "profile_model")
    training = y is not None
    if training:
        model._require_compiled("profile_model")
        y = model._check_y(y, x.shape[0], "profile_model")
    layers = model.layers
    skip_softmax = model._ends_in_softmax() if training else False
    on_logits = model._loss_on_logits() if training else False
    nl = len(layers)
    fwd = np.zeros((repeats, nl))
    bwd = np.zeros((repeats, nl))
    loss_t = np.zeros(repeats)
    opt_t = np.zeros(repeats)

    for rep in range(-warmup, repeats):
        h = x
        row_f = np.zeros(nl)
        row_b = np.zeros(nl)
        for i, layer in enumerate(layers):
            _sync(ops)
            t0 = time.perf_counter()
            if i == nl - 1 and skip_softmax:
                h = layer.forward_logits(h, training)
            else:
                h = layer.forward(h, training=training)
            _sync(ops)
            row_f[i] = time.perf_counter() - t0
        t_loss = t_opt = 0.0
        if training:
            t0 = time.perf_counter()
            model.loss.forward(h, y, from_logits=on_logits)
            grad = model.loss.backward()
            _sync(ops)
            t_loss = time.perf_counter() - t0
            # as in Sequential._backward: the first layer may skip its input gradient
            layers[0].skip_input_grad = True
            try:
                for i in range(nl - 1, -1, -1):
                    layer = layers[i]
                    _sync(ops)
                    t0 = time.perf_counter()
                    if i == nl - 1 and skip_softmax:
                        grad = layer.backward_logits(grad)
                    else:
                        grad = layer.backward(grad)
                    _sync(ops)
                    row_b[i] = time.perf_counter() - t0
            finally:
                layers[0].skip_input_grad = False
            t0 = time.perf_counter()
            model.optimizer.apply_gradients(model._params_and_grads())
            _sync(ops)
            t_opt = time.perf_counter() - t0
        else:
            to_host(h)
        if rep >= 0:
            fwd[rep], bwd[rep], loss_t[rep], opt_t[rep] = row_f, row_b, t_loss, t_opt

    n = x.shape[0]
    f_med = reduce(fwd, axis=0)
    b_med = reduce(bwd, axis=0)
    total = float(reduce(fwd.sum(1) + bwd.sum(1) + loss_t + opt_t))
    rows = []
    for i, layer in enumerate(layers):
        flops_fn = getattr(layer, "flops_per_image", None)
        flops = float(flops_fn()) * n if flops_fn else 0.0
        bflops = _backward_flops(layer, flops, i == 0) if training else 0.0
        rows.append({
            "name": layer.name, "type": type(layer).__name__,
            "output_shape": (n, *layer.output_shape),
            "fwd_ms": 1e3 * f_med[i], "bwd_ms": 1e3 * b_med[i] if training else None,
            "fwd_gflops": flops / f_med[i] / 1e9 if f_med[i] > 0 and flops else None,
            "bwd_gflops": bflops / b_med[i] / 1e9 if training and b_med[i] > 0 and bflops else None,
            "share": (f_med[i] + b_med[i]) / total if total > 0 else 0.0,
        })
    if training:
        for name, t in (("loss", loss_t), ("optimizer", opt_t)):
            med = float(reduce(t))
            rows.append({"name": name, "type": "", "output_shape": None, "fwd_ms": 1e3 * med,
                         "bwd_ms": None, "fwd_gflops": None, "bwd_gflops": None,
                         "share": med / total if total > 0 else 0.0})
    rows.append({"name": "total", "type": "", "output_shape": None, "fwd_ms": 1e3 * total,
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

    head = f"{'layer':<28}{'output':<22}{'fwd ms':>9}{'fwd GF/s':>10}{'bwd ms':>9}{'bwd GF/s':>10}{'share':>8}"
    lines = [title, head, "-" * len(head)] if title else [head, "-" * len(head)]
    for r in rows:
        label = f"{r['name']} ({r['type']})" if r["type"] else r["name"]
        shape = "" if r["output_shape"] is None else str(tuple(r["output_shape"]))
        if r["name"] == "total":
            lines.append("-" * len(head))
            ips = r.get("images_per_s")
            label = f"total ({ips:,.0f} img/s)" if ips else "total"
        lines.append(f"{label:<28.28}{shape:<22}{num(r['fwd_ms'], '9.3f')}{num(r['fwd_gflops'], '10.1f')}"
                     f"{num(r['bwd_ms'], '9.3f')}{num(r['bwd_gflops'], '10.1f')}{100 * r['share']:7.1f}%")
    return "\n".join(lines)
