"""The same five workloads in PyTorch (CPU, 2 threads), for comparison.

    python benchmarks/torch_workloads.py --mode train --batch 32 128
    python benchmarks/torch_workloads.py --mode infer --batch 1 32 128

Training step: forward, F.cross_entropy (softmax cross-entropy from logits),
backward, torch.optim.Adam step, as model.train_step does in convnet. Inference:
forward under torch.inference_mode() and softmax, returning a numpy array, as
model.predict does. Layout is PyTorch's default NCHW (its oneDNN path); the
networks have the same layers, shapes and FLOPs as benchmarks/workloads.py
(W4's softmax + categorical cross-entropy is F.cross_entropy on its logits, the
same function). onnx_workloads.py exports these definitions to ONNX.
Exits with a message (status 0) when torch is not installed.
"""

import argparse
import sys

from common import emit, throughput
from workloads import WORKLOADS


def resnet_small(torch, channels, classes):
    """W5 in PyTorch: the network of convnet.presets.resnet_small (NCHW)."""
    nn = torch.nn

    def conv_bn(cin, cout, k, stride):
        return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.ReLU(), *conv_bn(cout, cout, 3, 1))
            self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                             else nn.Sequential(*conv_bn(cin, cout, 1, stride)))

        def forward(self, x):
            return torch.relu(self.body(x) + self.shortcut(x))

    layers, cin = [*conv_bn(channels, 16, 3, 1), nn.ReLU()], 16
    for stage, cout in enumerate((16, 32, 64)):
        for block in range(2):
            layers.append(Block(cin, cout, 2 if stage > 0 and block == 0 else 1))
            cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))


def build(workload, torch, size=None):
    """The workload as a torch.nn.Module (NCHW); `size` replaces H and W (W4 only)."""
    nn = torch.nn
    h, w, c = WORKLOADS[workload]["input_shape"]
    if workload == "W5":
        return resnet_small(torch, c, WORKLOADS[workload]["classes"])
    if workload == "W1":
        net = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    elif workload == "W2":
        net = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Linear(256, 10))
    elif workload == "W3":
        net = nn.Sequential(nn.Conv2d(c, 8, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(8 * 7 * 7, 16), nn.ReLU(), nn.Linear(16, 4))
    elif workload == "W4":
        side = (((size or h) - 5) // 3 + 1) // 2       # conv 5x5 stride 3, pool 2
        side = (side - 2) // 2                         # conv 3x3 valid, pool 2
        net = nn.Sequential(nn.Conv2d(c, 5, 5, stride=3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.1),
                            nn.Conv2d(5, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
                            nn.Flatten(), nn.Linear(3 * side * side, 3))
    else:
        raise ValueError(f"unknown workload {workload!r}")
    return net


def data(workload, n, torch):
    h, w, c = WORKLOADS[workload]["input_shape"]
    g = torch.Generator().manual_seed(0)
    x = torch.rand((n, c, h, w), generator=g, dtype=torch.float32)
    y = torch.randint(0, WORKLOADS[workload]["classes"], (n,), generator=g)
    return x, y


def run(mode, workloads, batches, threads=2, min_time=0.4, windows=5):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    results = []
    for wname in workloads:
        for n in batches:
            net = build(wname, torch)
            x, y = data(wname, n, torch)
            if mode == "train":
                net.train()
                opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)

                def step(net=net, x=x, y=y, opt=opt):
                    opt.zero_grad(set_to_none=True)
                    loss = F.cross_entropy(net(x), y)
                    loss.backward()
                    opt.step()
                    return loss.item()
            else:
                net.eval()

                def step(net=net, x=x):
                    with torch.inference_mode():
                        return torch.softmax(net(x), dim=1).numpy()
            rate = throughput(step, n, min_time, windows)
            results.append({"engine": f"torch-{torch.__version__.split('+')[0]}", "workload": wname,
                            "mode": mode, "batch": n, "images_per_s": rate})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["train", "infer"], default="train")
    parser.add_argument("--workload", nargs="+", default=["W1", "W2", "W3", "W4", "W5"])
    parser.add_argument("--batch", nargs="+", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.4)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: skipping the PyTorch comparison (pip install torch==2.13.0, a CPU build)")
        if args.json:
            print("JSON []")
        return 0
    batches = args.batch or ([32, 128] if args.mode == "train" else [1, 32, 128])
    emit(run(args.mode, args.workload, batches, args.threads, args.min_time, args.windows), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
