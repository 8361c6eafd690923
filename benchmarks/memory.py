"""Peak resident memory (RSS) of a W2 (cifar-vgg) training run at batch 128.

Each engine runs in a fresh process: import, build W2, train `--steps` steps on
one random batch; the peak RSS of the whole process (imports included) is read
from the kernel (getrusage ru_maxrss) at the end. Also prints the RSS right
after import, so the model's own share can be told from the library's.

    python benchmarks/memory.py --engine convnet
    python benchmarks/memory.py --engine torch
"""

import argparse
import json
import resource
import sys


def rss_mib():
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux


def run_convnet(steps, batch):
    import common  # noqa: F401  (puts the repository on sys.path)
    import workloads as wl

    import convnet as cn
    after_import = rss_mib()
    model = wl.build("W2")
    x, y = wl.batch("W2", batch)
    for _ in range(steps):
        model.train_step(x, y)
    return {"engine": f"convnet-{cn.get_backend()}", "after_import_mib": after_import}


def run_torch(steps, batch):
    import torch
    import torch.nn.functional as F
    import torch_workloads as tw
    torch.set_num_threads(2)
    after_import = rss_mib()
    net = tw.build("W2", torch)
    x, y = tw.data("W2", batch, torch)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return {"engine": f"torch-{torch.__version__.split('+')[0]}", "after_import_mib": after_import}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["convnet", "torch"], default="convnet")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.engine == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch is not installed: skipping")
            print("JSON null")
            return 0
        out = run_torch(args.steps, args.batch)
    else:
        out = run_convnet(args.steps, args.batch)
    out.update({"workload": "W2", "batch": args.batch, "steps": args.steps, "peak_rss_mib": peak_mib()})
    if args.json:
        print("JSON " + json.dumps(out))
    else:
        print(f"{out['engine']}: peak RSS {out['peak_rss_mib']:.0f} MiB "
              f"(after import {out['after_import_mib']:.0f} MiB), W2 batch {args.batch}, {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
