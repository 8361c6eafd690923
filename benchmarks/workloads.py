"""The five benchmark workloads (docs/design.md), built with convnet (float32).

W1 fmnist-cnn  28x28x1    Conv32-Pool-Conv64-Pool-Dense128-Dense10
W2 cifar-vgg   32x32x3    Conv32-Conv32-Pool-Conv64-Conv64-Pool-Dense256-Dense10
W3 galaxy      128x128x3  Conv8/2-Pool-Conv8/2-Pool-Dense16-Dense4
W4 xray        256x256x1  Conv5 5x5/3-Pool-Drop0.1-Conv3-Pool-Drop0.2-Dense3 softmax,
                          categorical cross-entropy (the course's chest X-ray model)
W5 resnet-small 32x32x3   Conv16-BN-ReLU, 3 stages x 2 basic blocks (16/32/64 filters,
                          1x1 stride-2 projections), GlobalAveragePooling, Dense10: a graph
benchmarks/torch_workloads.py and keras_workloads.py build the same networks.

The scripts measure the way users run code: numpy is imported first (below), then
convnet, and no environment variable is set.
"""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

WORKLOADS = {
    "W1": {"name": "fmnist-cnn", "input_shape": (28, 28, 1), "classes": 10},
    "W2": {"name": "cifar-vgg", "input_shape": (32, 32, 3), "classes": 10},
    "W3": {"name": "galaxy", "input_shape": (128, 128, 3), "classes": 4},
    "W4": {"name": "xray", "input_shape": (256, 256, 1), "classes": 3},
    "W5": {"name": "resnet-small", "input_shape": (32, 32, 3), "classes": 10},
}
#: workloads trained on one-hot targets (categorical cross-entropy), as in the course
ONE_HOT = {"W4"}


def input_shape(workload, size=None):
    """The workload's input shape (H, W, C); `size` replaces H and W (the cost tables)."""
    h, w, c = WORKLOADS[workload]["input_shape"]
    return (h, w, c) if size is None else (size, size, c)


def build(workload, seed=0, size=None):
    """A compiled convnet model for workload "W1".."W5" (Adam; logits, except W4's softmax)."""
    import convnet as cn
    L = cn.layers
    loss = "sparse_categorical_crossentropy"
    if workload == "W5":
        from convnet.presets import resnet_small
        model = resnet_small(input_shape(workload, size), 10, seed=seed, name="W5-resnet-small")
        model.compile(optimizer=cn.optimizers.Adam(learning_rate=1e-3), loss=loss)
        return model
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
    elif workload == "W4":
        layers = [L.Conv2D(5, 5, strides=3, padding="valid", activation="relu"), L.MaxPooling2D(2),
                  L.Dropout(0.1, seed=seed), L.Conv2D(3, 3, padding="valid", activation="relu"),
                  L.MaxPooling2D(2), L.Dropout(0.2, seed=seed + 1), L.Flatten(),
                  L.Dense(3, activation="softmax")]
        loss = "categorical_crossentropy"
    else:
        raise ValueError(f"unknown workload {workload!r}; expected one of {sorted(WORKLOADS)}")
    model = cn.Sequential(layers, input_shape=input_shape(workload, size), seed=seed,
                          name=f"{workload}-{WORKLOADS[workload]['name']}")
    model.compile(optimizer=cn.optimizers.Adam(learning_rate=1e-3), loss=loss)
    return model


def batch(workload, n, seed=0, size=None):
    """A random float32 batch (x, y) with the workload's shapes; y one-hot for W4."""
    rng = np.random.default_rng(seed)
    classes = WORKLOADS[workload]["classes"]
    x = rng.random((n, *input_shape(workload, size)), dtype=np.float32)
    y = rng.integers(0, classes, n)
    if workload in ONE_HOT:
        y = np.eye(classes, dtype=np.float32)[y]
    return x, y
