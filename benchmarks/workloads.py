"""The three benchmark workloads of DESIGN.md, built with convnet (float32).

W1 fmnist-cnn  28x28x1    Conv32-Pool-Conv64-Pool-Dense128-Dense10
W2 cifar-vgg   32x32x3    Conv32-Conv32-Pool-Conv64-Conv64-Pool-Dense256-Dense10
W3 galaxy      128x128x3  Conv8/2-Pool-Conv8/2-Pool-Dense16-Dense4
benchmarks/torch_workloads.py builds the same networks in PyTorch.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

WORKLOADS = {
    "W1": {"name": "fmnist-cnn", "input_shape": (28, 28, 1), "classes": 10},
    "W2": {"name": "cifar-vgg", "input_shape": (32, 32, 3), "classes": 10},
    "W3": {"name": "galaxy", "input_shape": (128, 128, 3), "classes": 4},
}


def build(workload, seed=0):
    """A compiled convnet Sequential for workload "W1", "W2" or "W3" (Adam, logits)."""
    import convnet as cn
    L = cn.layers
    if workload == "W1":
        layers = [L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10)]
    elif workload == "W2":
        layers = [L.Conv2D(32, 3, padding="same", activation="relu"),
                  L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(64, 3, padding="same", activation="relu"),
                  L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(256, activation="relu"), L.Dense(10)]
    elif workload == "W3":
        layers = [L.Conv2D(8, 3, strides=2, padding="valid", activation="relu"), L.MaxPooling2D(2),
                  L.Conv2D(8, 3, strides=2, padding="valid", activation="relu"), L.MaxPooling2D(2),
                  L.Flatten(), L.Dense(16, activation="relu"), L.Dense(4)]
    else:
        raise ValueError(f"unknown workload {workload!r}; expected one of {sorted(WORKLOADS)}")
    model = cn.Sequential(layers, input_shape=WORKLOADS[workload]["input_shape"], seed=seed,
                          name=f"{workload}-{WORKLOADS[workload]['name']}")
    model.compile(optimizer=cn.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy")
    return model


def batch(workload, n, seed=0):
    """A random float32 batch (x, y) with the workload's shapes."""
    # numpy is imported here, not at the top: convnet must load first (build()),
    # since it sets OpenBLAS's thread timeout before numpy loads OpenBLAS
    # (convnet/_openblas_env.py), and the PyTorch side imports only WORKLOADS
    import numpy as np
    rng = np.random.default_rng(seed)
    spec = WORKLOADS[workload]
    x = rng.random((n, *spec["input_shape"]), dtype=np.float32)
    y = rng.integers(0, spec["classes"], n)
    return x, y
