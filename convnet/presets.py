"""Ready-made models: the benchmark workloads of DESIGN.md.

    fmnist-cnn  (W1) 28x28x1: Conv 32 3x3 same, ReLU, MaxPool 2, Conv 64 3x3 same, ReLU,
                MaxPool 2, Flatten, Dense 128 ReLU, Dense 10            ~8.5 MFLOP/image
    cifar-vgg   (W2) 32x32x3: Conv 32, Conv 32, MaxPool, Conv 64, Conv 64, MaxPool
                (3x3 same + ReLU), Flatten, Dense 256 ReLU, Dense 10    ~51 MFLOP/image
    galaxy      (W3) 128x128x3: Conv 8 3x3 stride 2 valid ReLU, MaxPool 2, Conv 8 3x3
                stride 2 valid ReLU, MaxPool 2, Flatten, Dense 16 ReLU, Dense 4  ~2 MFLOP

`build(name, input_shape=None, num_classes=None, rescale=False, dropout=0.0)`
returns the Sequential; the benchmarks use the plain workloads, the command line
adds Rescaling(1/255) so models take raw 0..255 pixels, and optionally dropout
before the classifier.
"""

from . import layers as L
from .models import Sequential

DEFAULT_INPUT = {"fmnist-cnn": (28, 28, 1), "cifar-vgg": (32, 32, 3), "galaxy": (128, 128, 3)}
DEFAULT_CLASSES = {"fmnist-cnn": 10, "cifar-vgg": 10, "galaxy": 4}
PRESETS = tuple(DEFAULT_INPUT)


def _body(name, num_classes, dropout):
    if name == "fmnist-cnn":
        body = [L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                L.Flatten(), L.Dense(128, activation="relu")]
    elif name == "cifar-vgg":
        body = [L.Conv2D(32, 3, padding="same", activation="relu"),
                L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                L.Conv2D(64, 3, padding="same", activation="relu"),
                L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                L.Flatten(), L.Dense(256, activation="relu")]
    else:
        body = [L.Conv2D(8, 3, strides=2, activation="relu"), L.MaxPooling2D(2),
                L.Conv2D(8, 3, strides=2, activation="relu"), L.MaxPooling2D(2),
                L.Flatten(), L.Dense(16, activation="relu")]
    if dropout:
        body.append(L.Dropout(dropout))
    return body + [L.Dense(num_classes)]


def build(name, input_shape=None, num_classes=None, rescale=False, dropout=0.0, seed=None):
    """The preset model `name` ("fmnist-cnn", "cifar-vgg" or "galaxy")."""
    if name not in DEFAULT_INPUT:
        raise ValueError(f"unknown model preset {name!r}; expected one of {PRESETS}")
    input_shape = tuple(input_shape or DEFAULT_INPUT[name])
    layers = ([L.Rescaling(1 / 255)] if rescale else []) + _body(
        name, num_classes or DEFAULT_CLASSES[name], dropout)
    return Sequential(layers, input_shape=input_shape, name=name.replace("-", "_"), seed=seed)
