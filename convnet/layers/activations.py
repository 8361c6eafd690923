"""Element-wise activations: each is a forward/backward pair written in terms of
the activation's *output* y, which is all its derivative needs.

    relu     y = max(z, 0)             dz = dy * [y > 0]
    sigmoid  y = 1 / (1 + e^-z)        dz = dy * y * (1 - y)
    tanh     y = tanh(z)               dz = dy * (1 - y^2)
    softmax  y = e^z / sum e^z         dz = y * (dy - sum_k dy_k y_k)   (last axis)
    linear   y = z                     dz = dy
    elu      y = z (z > 0), e^z - 1    dz = dy (y > 0), dy * (y + 1)
    selu     y = s z (z > 0), s a (e^z - 1)   dz = dy s (y > 0), dy (y + s a)
             (s = 1.0507..., a = 1.6732..., Klambauer et al. 2017, as Keras)
    softplus y = log(1 + e^z)          dz = dy * (1 - e^-y)     (= sigmoid(z))
    softsign y = z / (1 + |z|)         dz = dy * (1 - |y|)^2
"""

from ..backend import get_ops


def _relu(ops, z, inplace):
    return ops.relu(z, out=z if inplace else None)


def _sigmoid(ops, z, inplace):
    xp = ops.xp
    # 1/(1+e^-z) overflows e^-z for very negative z; e^z/(1+e^z) is the same
    # number and safe there, so pick per sign.
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _tanh(ops, z, inplace):
    return ops.xp.tanh(z, out=z if inplace else None)


def _softmax(ops, z, inplace):
    return ops.softmax(z)


def _linear(ops, z, inplace):
    return z


def _relu_backward(ops, dy, y):
    return ops.relu_backward(dy, y)


def _sigmoid_backward(ops, dy, y):
    return dy * y * (1 - y)


def _tanh_backward(ops, dy, y):
    return dy * (1 - y * y)


def _softmax_backward(ops, dy, y):
    # Jacobian of softmax is diag(y) - y y^T; applied to dy that is y*(dy - <dy, y>).
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def _linear_backward(ops, dy, y):
    return dy


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _elu(ops, z, inplace):
    xp = ops.xp
    return xp.where(z > 0, z, xp.expm1(xp.minimum(z, 0))).astype(z.dtype, copy=False)


def _elu_backward(ops, dy, y):
    return dy * ops.xp.where(y > 0, 1, y + 1).astype(dy.dtype, copy=False)


def _selu(ops, z, inplace):
    xp = ops.xp
    t = z.dtype.type
    return (t(SELU_SCALE) * xp.where(z > 0, z, t(SELU_ALPHA) * xp.expm1(xp.minimum(z, 0)))).astype(z.dtype, copy=False)


def _selu_backward(ops, dy, y):
    t = dy.dtype.type
    return dy * ops.xp.where(y > 0, t(SELU_SCALE), y + t(SELU_SCALE * SELU_ALPHA)).astype(dy.dtype, copy=False)


def _softplus(ops, z, inplace):
    xp = ops.xp
    # log(1 + e^z) = max(z, 0) + log1p(e^-|z|): no overflow for large z
    return (xp.maximum(z, 0) + xp.log1p(xp.exp(-xp.abs(z)))).astype(z.dtype, copy=False)


def _softplus_backward(ops, dy, y):
    return dy * -ops.xp.expm1(-y)


def _softsign(ops, z, inplace):
    return z / (1 + ops.xp.abs(z))


def _softsign_backward(ops, dy, y):
    s = 1 - ops.xp.abs(y)
    return dy * s * s


ACTIVATIONS = {
    "relu": (_relu, _relu_backward),
    "sigmoid": (_sigmoid, _sigmoid_backward),
    "tanh": (_tanh, _tanh_backward),
    "softmax": (_softmax, _softmax_backward),
    "linear": (_linear, _linear_backward),
    "elu": (_elu, _elu_backward),
    "selu": (_selu, _selu_backward),
    "softplus": (_softplus, _softplus_backward),
    "softsign": (_softsign, _softsign_backward),
}


def check_activation(name, owner="layer"):
    """Validate an `activation=` argument; None means linear."""
    if name is None:
        return None
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ValueError(
            f"{owner}: unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)} or None"
        )
    name = name.lower()
    return None if name == "linear" else name


def activation_forward(name, z, inplace=False):
    """y = activation(z); `inplace` lets it reuse z's memory (z must be a temporary)."""
    return ACTIVATIONS[name][0](get_ops(), z, inplace)


def activation_backward(name, dy, y):
    """dz from dy and the activation's output y."""
    return ACTIVATIONS[name][1](get_ops(), dy, y)
