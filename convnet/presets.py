"""Ready-made models: the benchmark workloads of docs/design.md.

    fmnist-cnn  (W1) 28x28x1: Conv 32 3x3 same, ReLU, MaxPool 2, Conv 64 3x3 same, ReLU,
                MaxPool 2, Flatten, Dense 128 ReLU, Dense 10            ~8.5 MFLOP/image
    cifar-vgg   (W2) 32x32x3: Conv 32, Conv 32, MaxPool, Conv 64, Conv 64, MaxPool
                (3x3 same + ReLU), Flatten, Dense 256 ReLU, Dense 10    ~51 MFLOP/image
    galaxy      (W3) 128x128x3: Conv 8 3x3 stride 2 valid ReLU, MaxPool 2, Conv 8 3x3
                stride 2 valid ReLU, MaxPool 2, Flatten, Dense 16 ReLU, Dense 4  ~2 MFLOP
    resnet-small (W5) 32x32x3 or 28x28x1: Conv 16 3x3 same, BN, ReLU; three stages of two
                basic blocks (3x3 conv, BN, ReLU, 3x3 conv, BN, + shortcut, ReLU) with
                16/32/64 filters, the first block of stages 2 and 3 at stride 2 with a
                1x1 stride-2 projection (conv + BN) as its shortcut; global average
                pooling, Dense. A graph (cn.Model), not a stack.

`build(name, input_shape=None, num_classes=None, rescale=False, dropout=0.0)`
returns the model; the benchmarks use the plain workloads, the command line
adds Rescaling(1/255) so models take raw 0..255 pixels, and optionally dropout
before the classifier.
"""

from . import layers as L
from .models import Model, Sequential

DEFAULT_INPUT = {"fmnist-cnn": (28, 28, 1), "cifar-vgg": (32, 32, 3), "galaxy": (128, 128, 3),
                 "resnet-small": (32, 32, 3)}
DEFAULT_CLASSES = {"fmnist-cnn": 10, "cifar-vgg": 10, "galaxy": 4, "resnet-small": 10}
PRESETS = tuple(DEFAULT_INPUT)


def _conv_bn_relu(filters):
    # no bias: the BatchNormalization's shift (beta) takes its place
    return [L.Conv2D(filters, 3, padding="same", use_bias=False), L.BatchNormalization(), L.ReLU()]


def _body(name, num_classes, dropout, batchnorm=False, conv_dropout=0.0):
    if name == "fmnist-cnn":
        def block(filters):
            conv = _conv_bn_relu(filters) if batchnorm else \
                [L.Conv2D(filters, 3, padding="same", activation="relu")]
            return conv + [L.MaxPooling2D(2)] + ([L.Dropout(conv_dropout)] if conv_dropout else [])
        body = [*block(32), *block(64), L.Flatten(), L.Dense(128, activation="relu")]
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


def _conv_bn(x, filters, kernel, strides=1, relu=True):
    # no bias: the BatchNormalization after the conv has its own shift (beta)
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU()(x) if relu else x


def _basic_block(x, filters, strides):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)): the shortcut is x itself,
    or a 1x1 strided conv + BN where the block changes the size or the width."""
    h = _conv_bn(x, filters, 3, strides)
    h = _conv_bn(h, filters, 3, relu=False)
    shortcut = x if strides == 1 and x.shape[-1] == filters else _conv_bn(x, filters, 1, strides, relu=False)
    return L.ReLU()(L.Add()([h, shortcut]))


def resnet_small(input_shape=(32, 32, 3), num_classes=10, rescale=False, dropout=0.0, seed=None,
                 name="resnet_small"):
    """W5: a small ResNet (about 0.27M parameters) as a functional graph."""
    inputs = L.Input(shape=input_shape)
    x = L.Rescaling(1 / 255)(inputs) if rescale else inputs
    x = _conv_bn(x, 16, 3)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(2):
            x = _basic_block(x, filters, 2 if stage > 0 and block == 0 else 1)
    x = L.GlobalAveragePooling2D()(x)
    if dropout:
        x = L.Dropout(dropout)(x)
    outputs = L.Dense(num_classes)(x)
    return Model(inputs=inputs, outputs=outputs, name=name, seed=seed)


def build(name, input_shape=None, num_classes=None, rescale=False, dropout=0.0, seed=None,
          batchnorm=False, conv_dropout=0.0):
    """The preset model `name` ("fmnist-cnn", "cifar-vgg", "galaxy" or "resnet-small").
    batchnorm=True (fmnist-cnn only): each conv without bias, then BatchNormalization,
    then ReLU. conv_dropout (fmnist-cnn only): Dropout of that rate after each pooling."""
    if (batchnorm or conv_dropout) and name != "fmnist-cnn":
        raise ValueError(f"preset {name!r}: batchnorm and conv_dropout are only offered for 'fmnist-cnn'")
    if name not in DEFAULT_INPUT:
        raise ValueError(f"unknown model preset {name!r}; expected one of {PRESETS}")
    input_shape = tuple(input_shape or DEFAULT_INPUT[name])
    if name == "resnet-small":
        return resnet_small(input_shape, num_classes or DEFAULT_CLASSES[name], rescale, dropout,
                            seed=seed)
    layers = ([L.Rescaling(1 / 255)] if rescale else []) + _body(
        name, num_classes or DEFAULT_CLASSES[name], dropout, batchnorm, conv_dropout)
    return Sequential(layers, input_shape=input_shape, name=name.replace("-", "_"), seed=seed)
