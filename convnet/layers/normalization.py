"""Batch normalization over the last (channel) axis.

Training, per channel over the batch (and height, width):
    mu = mean(x),  var = mean((x - mu)^2)  (biased),  xhat = (x - mu) / sqrt(var + eps)
    y  = gamma * xhat + beta
    moving = momentum * moving + (1 - momentum) * batch statistic
Inference uses the moving mean and variance instead of the batch's.

Backward in training mode, with m values per channel: mu and var depend on every x,
which gives the compact form
    dx = gamma / (m * sqrt(var + eps)) * (m * dy - sum(dy) - xhat * sum(dy * xhat))
    dgamma = sum(dy * xhat),  dbeta = sum(dy)

The formulas are the backend's kernel pair (NumpyOps.batchnorm_statistics,
batchnorm_normalize, batchnorm_backward in convnet/backend/numpy_ops.py spell them
out); the Numba backend computes the same in fewer passes over memory.
"""

from .._checks import check_real
from ..backend import get_ops
from .base import Layer


class BatchNormalization(Layer):
    """Normalize each channel (last axis). Params gamma, beta (C,); state
    moving_mean, moving_variance (C,)."""

    def __init__(self, momentum=0.99, epsilon=1e-3, center=True, scale=True, name=None,
                 dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        owner = self.describe()
        self.momentum = check_real(momentum, "momentum", owner, low=0, high=1)
        self.epsilon = check_real(epsilon, "epsilon", owner, low=0, low_open=True)
        self.center = bool(center)
        self.scale = bool(scale)

    def _build(self, input_shape):
        xp = get_ops().xp
        c = input_shape[-1]
        if self.scale:
            self.params["gamma"] = xp.ones((c,), dtype=self.dtype)
        if self.center:
            self.params["beta"] = xp.zeros((c,), dtype=self.dtype)
        self.state["moving_mean"] = xp.zeros((c,), dtype=self.dtype)
        self.state["moving_variance"] = xp.ones((c,), dtype=self.dtype)

    def _forward(self, x, training):
        ops = get_ops()
        if training:
            mean, var = ops.batchnorm_statistics(x)
            m = self.momentum
            self.state["moving_mean"] *= m
            self.state["moving_mean"] += (1 - m) * mean
            self.state["moving_variance"] *= m
            self.state["moving_variance"] += (1 - m) * var
        else:
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
        # saved: what the backward pass needs to know xhat (xhat itself in NumpyOps)
        y, saved, inv_std = ops.batchnorm_normalize(x, mean, var, self._gamma(), self._beta(), self.epsilon)
        self._cache = (saved, inv_std, training)
        return y

    def inference_scale_shift(self):
        """(scale, shift), each (C,): at inference this layer is y = x * scale + shift,
        with scale = gamma / sqrt(moving_variance + epsilon) and
        shift = beta - moving_mean * scale (what a convolution before it can fold
        into its kernel and bias: Conv2D.forward_scaled)."""
        xp = get_ops().xp
        scale = self._gamma() * (1 / xp.sqrt(self.state["moving_variance"] + self.epsilon))
        return scale, self._beta() - self.state["moving_mean"] * scale

    def _gamma(self):
        c = self.input_shape[-1]
        return self.params["gamma"] if self.scale else get_ops().xp.ones((c,), dtype=self.dtype)

    def _beta(self):
        c = self.input_shape[-1]
        return self.params["beta"] if self.center else get_ops().xp.zeros((c,), dtype=self.dtype)

    def _backward(self, dy):
        saved, inv_std, training = self._cache
        dx, dgamma, dbeta = get_ops().batchnorm_backward(dy, saved, inv_std, self._gamma(), training,
                                                         need_dx=not self.skip_input_grad)
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx

    def flops_per_image(self):
        import numpy as np
        return 4 * int(np.prod(self.input_shape))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
