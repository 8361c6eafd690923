"""What the graph bookkeeping costs: a W1 training step through Model.train_step
(the graph walk) against the same step written as a plain loop over the layers.

    python benchmarks/graph_overhead.py [--batch-size 128] [--rounds 7] [--steps 20]

Both run in one process on the same layers and batch, alternating round by round;
the table gives the median step time of each and their ratio. The plain loop is
what Sequential did before models became graphs: forward through the list, the
fused softmax cross-entropy, backward in reverse (the first layer skips its input
gradient), one optimizer update.
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
    graph = lambda: model.train_step(x, y)          # noqa: E731
    plain = lambda: plain_step(model, xs[0], ys[0])  # noqa: E731
    for fn in (graph, plain):
        timed(fn, 3)                                 # compile and warm up
    graph_t, plain_t = [], []
    for _ in range(args.rounds):
        graph_t.append(timed(graph, args.steps))
        plain_t.append(timed(plain, args.steps))
    g, s = statistics.median(graph_t), statistics.median(plain_t)
    print(f"W1 training step, batch {args.batch_size}, backend {cn.get_backend()}, "
          f"median of {args.rounds} rounds of {args.steps} steps")
    print(f"{'path':<34}{'ms/step':>10}{'img/s':>10}")
    print(f"{'Model.train_step (graph walk)':<34}{1e3 * g:>10.2f}{args.batch_size / g:>10,.0f}")
    print(f"{'plain loop over the layers':<34}{1e3 * s:>10.2f}{args.batch_size / s:>10,.0f}")
    print(f"graph / plain: {g / s:.3f}  (bookkeeping {100 * (g / s - 1):+.1f}%)")
    return g / s


if __name__ == "__main__":
    main()
