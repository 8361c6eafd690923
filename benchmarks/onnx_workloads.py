"""The four workloads in ONNX Runtime (CPUExecutionProvider, 2 intra-op threads):
the inference anchor.

    python benchmarks/onnx_workloads.py --batch 1 32 128

Each network is the PyTorch definition of torch_workloads.py (same layers and
shapes), exported once per workload to a temporary ONNX file with a dynamic batch
axis; the timed call is `session.run` followed by softmax on the logits (W4's
network ends in its logits here too; the softmax is applied the same way), so the
work matches model.predict. Needs torch, onnx and onnxruntime (the bench extra);
exits with a message (status 0) when one is missing.
"""

import argparse
import os
import tempfile

import numpy as np
from common import emit, throughput
from workloads import WORKLOADS


def export(workload, path):
    import torch
    import torch_workloads
    net = torch_workloads.build(workload, torch).eval()
    h, w, c = WORKLOADS[workload]["input_shape"]
    example = torch.zeros((1, c, h, w), dtype=torch.float32)
    kwargs = dict(input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    try:
        torch.onnx.export(net, (example,), path, dynamo=False, **kwargs)
    except TypeError:               # a torch without the `dynamo` switch
        torch.onnx.export(net, (example,), path, **kwargs)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def run(workloads, batches, threads=2, min_time=0.4, windows=5):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for wname in workloads:
            path = os.path.join(tmp, f"{wname}.onnx")
            export(wname, path)
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            h, w, c = WORKLOADS[wname]["input_shape"]
            for n in batches:
                x = np.random.default_rng(0).random((n, c, h, w), dtype=np.float32)
                rate = throughput(lambda session=session, x=x: softmax(session.run(None, {"x": x})[0]),
                                  n, min_time, windows)
                results.append({"engine": f"onnxruntime-{ort.__version__}", "workload": wname, "mode": "infer",
                                "batch": n, "images_per_s": rate})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["infer"], default="infer")
    parser.add_argument("--workload", nargs="+", default=["W1", "W2", "W3", "W4", "W5"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 32, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    missing = []
    for module in ("torch", "onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(f"{', '.join(missing)} not installed: skipping the ONNX Runtime comparison "
              "(pip install torch==2.13.0 onnx onnxruntime)")
        if args.json:
            print("JSON []")
        return 0
    emit(run(args.workload, args.batch, args.threads, args.min_time, args.windows), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
