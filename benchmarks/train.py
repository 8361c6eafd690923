"""End-to-end training throughput of convnet (images/s) for W1-W5.

One step = forward + softmax cross-entropy + backward + Adam update
(model.train_step), float32, random data of the workload's shape. Measured the
way users run code: numpy imported first (by workloads.py), no environment set.

    python benchmarks/train.py                     # numba (default backend), all workloads
    python benchmarks/train.py --backend numpy --workload W1 --batch 32 128
"""

import workloads as wl
from common import convnet_main, throughput


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
    convnet_main(run, __doc__.splitlines()[0], [32, 128], argv)


if __name__ == "__main__":
    main()
