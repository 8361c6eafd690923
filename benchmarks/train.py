"""End-to-end training throughput of convnet (images/s) for W1-W3.

One step = forward + softmax cross-entropy + backward + Adam update
(model.train_step), float32, random data of the workload's shape.

    python benchmarks/train.py                     # numba (default backend), all workloads
    python benchmarks/train.py --backend numpy --workload W1 --batch 32 128
"""

import argparse

import workloads as wl
from common import emit, throughput


def run(backend, workloads, batches, min_time=0.4, windows=5):
    import convnet as cn
    results = []
    with cn.use_backend(backend):
        for w in workloads:
            for n in batches:
                model = wl.build(w)
                x, y = wl.batch(w, n)
                rate = throughput(lambda model=model, x=x, y=y: model.train_step(x, y), n, min_time, windows)
                results.append({"engine": f"convnet-{backend}", "workload": w, "mode": "train",
                                "batch": n, "images_per_s": rate})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="numpy or numba (default: the default backend)")
    parser.add_argument("--workload", nargs="+", default=["W1", "W2", "W3"])
    parser.add_argument("--batch", nargs="+", type=int, default=[32, 128])
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    import convnet as cn
    backend = args.backend or cn.get_backend()
    emit(run(backend, args.workload, args.batch, args.min_time, args.windows), args.json)


if __name__ == "__main__":
    main()
