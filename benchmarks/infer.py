"""End-to-end inference throughput of convnet (images/s) for W1-W5.

One call = model.predict(x, batch_size=N) on one batch of N images: forward
(training=False) and softmax, returning host numpy probabilities.

    python benchmarks/infer.py                     # numba, all workloads, batch 1/32/128
    python benchmarks/infer.py --backend numpy --workload W2 --batch 128
"""

import workloads as wl
from common import convnet_main, throughput


def run(backend, workloads, batches, min_time=0.4, windows=5):
    import convnet as cn
    results = []
    with cn.use_backend(backend):
        for w in workloads:
            model = wl.build(w)
            for n in batches:
                x, _ = wl.batch(w, n)
                rate = throughput(lambda model=model, x=x, n=n: model.predict(x, batch_size=n), n, min_time, windows)
                results.append({"engine": f"convnet-{backend}", "workload": w, "mode": "infer",
                                "batch": n, "images_per_s": rate})
    return results


def main(argv=None):
    convnet_main(run, __doc__.splitlines()[0], [1, 32, 128], argv)


if __name__ == "__main__":
    main()
