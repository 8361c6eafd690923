"""Per-layer microbenchmarks: each layer's forward and backward GFLOP/s per backend.

For every workload (W1-W5) and backend, runs convnet.profile.profile_model on a
batch (default 128) and prints the per-layer table; then, for the conv layers,
compares the rate of their whole training work (forward + backward FLOPs over
forward + backward time) with numpy's float32 GEMM rate measured on this
machine (a large square product, and the layer's own forward GEMM shape), and
names the algorithm each conv layer ran (Conv2D.algorithm()).
Layer times are the minimum over the repeats by default (--stat), the run least
disturbed by other processes on a shared machine.

    python benchmarks/layers.py                       # numba, all workloads, batch 128
    python benchmarks/layers.py --backend numpy numba --workload W2
"""

import argparse
import json
import statistics
import time

import common  # noqa: F401  (puts the repository on sys.path)

import convnet  # noqa: F401  (before numpy: it sets OpenBLAS's thread timeout)

# isort: split
import numpy as np
import workloads as wl


def gemm_rate(m, k, n, min_time=0.3, windows=5):
    """numpy float32 GEMM GFLOP/s for (m, k) @ (k, n), median of timing windows."""
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    np.matmul(a, b, out=out)
    rates = []
    for _ in range(windows):
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < min_time:
            np.matmul(a, b, out=out)
            count += 1
        rates.append(2.0 * m * k * n * count / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def run(backends, workloads, batch, repeats, print_tables=True, stat="min"):
    import convnet as cn
    from convnet.layers import Conv2D
    from convnet.profile import profile_model
    square = gemm_rate(2048, 2048, 2048)
    rows = []
    for backend in backends:
        with cn.use_backend(backend):
            for w in workloads:
                model = wl.build(w)
                x, y = wl.batch(w, batch)
                prof = profile_model(model, x, y, repeats=repeats, warmup=2, stat=stat,
                                     print_fn=print if print_tables else None)
                # profile rows are named after the layers (a graph's nodes are not
                # in model.layers' order, so rows are matched by name, not position)
                by_name = {r["name"]: r for r in prof}
                for node in model.graph.nodes:
                    layer = node.layer
                    if not isinstance(layer, Conv2D):
                        continue
                    r = by_name[layer.name]
                    oh, ow, f = layer.output_shape
                    kh, kw = layer.kernel_size
                    k = kh * kw * layer.input_shape[2]
                    fwd_flops = layer.flops_per_image() * batch
                    # dW always; dx too unless nothing upstream learns (the first layer)
                    bwd_flops = fwd_flops * (2 if model.graph.input_grad_needed(node) else 1)
                    total = (fwd_flops + bwd_flops) / ((r["fwd_ms"] + r["bwd_ms"]) / 1e3) / 1e9
                    rows.append({"backend": backend, "workload": w, "layer": layer.name,
                                 "algorithm": layer.algorithm((batch, *layer.input_shape)),
                                 "gemm_shape": [batch * oh * ow, k, f],
                                 "fwd_gflops": r["fwd_gflops"], "bwd_gflops": r["bwd_gflops"],
                                 "train_gflops": total,
                                 "shape_gemm_gflops": gemm_rate(batch * oh * ow, k, f, 0.2, 3),
                                 "square_gemm_gflops": square})
    return square, rows


def format_rows(square, rows):
    lines = [f"numpy float32 GEMM, 2048x2048x2048: {square:.0f} GFLOP/s",
             "", "| backend | workload | layer | algorithm | GEMM (M, K, N) | fwd GF/s | bwd GF/s "
             "| fwd+bwd GF/s | % of square GEMM | same-shape GEMM GF/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, k, n = r["gemm_shape"]
        lines.append(f"| {r['backend']} | {r['workload']} | {r['layer']} | {r.get('algorithm', '?')} | "
                     f"({m}, {k}, {n}) | "
                     f"{r['fwd_gflops']:.0f} | {r['bwd_gflops']:.0f} | {r['train_gflops']:.0f} | "
                     f"{100 * r['train_gflops'] / square:.0f}% | {r['shape_gemm_gflops']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", nargs="+", default=["numba"])
    parser.add_argument("--workload", nargs="+", default=["W1", "W2", "W3", "W4", "W5"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--stat", choices=["min", "median"], default="min",
                        help="per-layer time over the repeats (min: least disturbed by other processes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    square, rows = run(args.backend, args.workload, args.batch, args.repeats, not args.json, args.stat)
    if args.json:
        print("JSON " + json.dumps({"square_gemm_gflops": square, "rows": rows}))
    else:
        print()
        print(format_rows(square, rows))


if __name__ == "__main__":
    main()
