"""What the graph bookkeeping costs: a W1 training step through Model.train_step
(the graph walk) against the same step written as a plain loop over the layers.

    python benchmarks/graph_overhead.py [--batch-size 128] [--rounds 7] [--steps 20]

Three paths run in one process on the same layers and batch, alternating round by
round; the table gives the median step time of each and the ratios to the plain
loop. The plain loop is what Sequential did before models became graphs: forward
through the list, the fused softmax cross-entropy, backward in reverse (the first
layer skips its input gradient), one optimizer update. "graph walk" is the same
step through the graph (model.forward, compute_loss, backward, apply_gradients):
its ratio is the graph bookkeeping. train_step adds the input checks and the
divergence guard (docs/reliability.md: finiteness sums, and a copy of the weights
and optimizer slots to undo a non-finite step).
"""

import argparse
import statistics
import time

import numpy as np

import convnet as cn
from convnet import presets


def plain_step(model, x, y):
    layers = model.layers
    h = x
    for layer in layers[:-1]:
        h = layer.forward(h, training=True)
    out = layers[-1].forward(h, training=True)
    model.loss.forward(out, y, from_logits=True)
    grad = model.loss.backward()
    layers[0].skip_input_grad = True
    for layer in reversed(layers):
        grad = layer.backward(grad)
    layers[0].skip_input_grad = False
    model.optimizer.apply_gradients(model.params_and_grads())


def graph_step(model, xs, ys):
    _, grads = model.compute_loss(model.forward(xs, training=True), ys)
    model.backward(grads)
    model.apply_gradients()


def timed(fn, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    model = presets.build("fmnist-cnn", seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.batch_size)
    xs, ys = model.check_batch(x, y)
    paths = {"Model.train_step (checks + guard)": lambda: model.train_step(x, y),
             "graph walk (forward..apply)": lambda: graph_step(model, xs, ys),
             "plain loop over the layers": lambda: plain_step(model, xs[0], ys[0])}
    for fn in paths.values():
        timed(fn, 3)                                 # compile and warm up
    times = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            times[name].append(timed(fn, args.steps))
    med = {name: statistics.median(t) for name, t in times.items()}
    plain = med["plain loop over the layers"]
    print(f"W1 training step, batch {args.batch_size}, backend {cn.get_backend()}, "
          f"median of {args.rounds} rounds of {args.steps} steps")
    print(f"{'path':<36}{'ms/step':>10}{'img/s':>10}{'vs plain':>10}")
    for name, t in med.items():
        print(f"{name:<36}{1e3 * t:>10.2f}{args.batch_size / t:>10,.0f}{t / plain:>10.3f}")
    g = med["graph walk (forward..apply)"]
    print(f"graph bookkeeping: {100 * (g / plain - 1):+.1f}%; train_step's checks and guard: "
          f"{100 * (med['Model.train_step (checks + guard)'] / g - 1):+.1f}% more")
    return g / plain


if __name__ == "__main__":
    main()
