"""Dense, Flatten, Dropout, Activation, Rescaling."""

import numbers

import numpy as np

from .._checks import check_real
from ..backend import get_ops
from .activations import activation_forward, check_activation
from .base import KernelLayer, Layer


class Dense(KernelLayer):
    """Fully connected layer: y = x @ W + b.

    Input (N, in) -> output (N, units). Params: W (in, units), b (units,).
    Backward: dW = x^T @ dy, db = sum over the batch of dy, dx = dy @ W^T.
    """

    input_rank = 2

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name=None, dtype=None, input_shape=None, seed=None):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer,
                         name=name, dtype=dtype, input_shape=input_shape, seed=seed)
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"{self.describe()}: units must be a positive int, got {units!r}")
        self.units = int(units)

    def _rank_hint(self):
        return "(N, features); add a Flatten() before Dense to flatten images"

    def _build(self, input_shape):
        (fan_in,) = input_shape
        self._make_params((fan_in, self.units))

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def _forward(self, x, training):
        self._x = x
        y = get_ops().matmul(x, self.params["W"])
        if self.use_bias:
            y += self.params["b"]
        return y

    def _backward(self, dy):
        ops = get_ops()
        self.grads["W"] = ops.matmul(self._x.T, dy)
        if self.use_bias:
            self.grads["b"] = dy.sum(axis=0)
        if self.skip_input_grad:       # first layer of a model: nobody needs dx
            return None
        return ops.matmul(dy, self.params["W"].T)

    def flops_per_image(self):
        return 2 * self.input_shape[0] * self.units

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Flatten(Layer):
    """(N, H, W, C) -> (N, H*W*C), flattening (H, W, C) in that (C) order."""

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def _forward(self, x, training):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def _backward(self, dy):
        return dy.reshape(self._x_shape)

    def flops_per_image(self):
        return 0


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability `rate` and
    scale the survivors by 1/(1-rate), so inference needs no rescaling at all.
    Backward multiplies by the same mask."""

    def __init__(self, rate, name=None, dtype=None, input_shape=None, seed=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape, seed=seed)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"{self.describe()}: rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def input_spec(self):
        return None

    def _forward(self, x, training):
        if not training or self.rate == 0:
            self._mask = None
            return x
        self._mask = get_ops().dropout_mask(self.rng, x.shape, self.rate, self.dtype)
        return x * self._mask

    def _backward(self, dy):
        return dy if self._mask is None else dy * self._mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Activation(Layer):
    """An activation as a layer of its own: Activation("relu"), Activation("softmax")."""

    def __init__(self, activation, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.activation = check_activation(activation, self.describe())
        self._name_given = activation

    def input_spec(self):
        return None

    def forward(self, x, training=False):
        # y = activation(x) written into a new array: one pass over x (x is the
        # previous layer's output, which it may keep, so it is not overwritten)
        if self.activation is None:
            return super().forward(x, training)        # "linear": a copy of x
        x = self._checked_forward(x, training, copy=False)
        self._y = activation_forward(self.activation, x, inplace=False)
        return self._y

    def _forward(self, x, training, copy=True):
        # forward_logits (a softmax left to the loss) hands on a copy of x
        return x.copy() if copy else x

    def _backward(self, dy):
        return dy

    def get_config(self):
        return {**super().get_config(), "activation": self.activation or "linear"}


class ReLU(Activation):
    """max(x, 0) as a layer."""

    def __init__(self, name=None, dtype=None, input_shape=None):
        super().__init__("relu", name=name, dtype=dtype, input_shape=input_shape)

    def get_config(self):
        return Layer.get_config(self)


class Softmax(Activation):
    """softmax over the last axis as a layer."""

    def __init__(self, name=None, dtype=None, input_shape=None):
        super().__init__("softmax", name=name, dtype=dtype, input_shape=input_shape)

    def get_config(self):
        return Layer.get_config(self)


class Rescaling(Layer):
    """y = x * scale + offset, e.g. Rescaling(1/255) to bring pixels to [0, 1]."""

    def __init__(self, scale, offset=0.0, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.scale = check_real(scale, "scale", self.describe())
        self.offset = check_real(offset, "offset", self.describe())

    def input_spec(self):
        return None

    def _forward(self, x, training):
        return x * self.dtype.type(self.scale) + self.dtype.type(self.offset)

    def _backward(self, dy):
        return dy * self.dtype.type(self.scale)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
