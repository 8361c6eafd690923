"""Element-wise activations: each is a forward/backward pair written in terms of
the activation's *output* y, which is all its derivative needs.

    relu     y = max(z, 0)             dz = dy * [y > 0]
    sigmoid  y = 1 / (1 + e^-z)        dz = dy * y * (1 - y)
    tanh     y = tanh(z)               dz = dy * (1 - y^2)
    softmax  y = e^z / sum e^z         dz = y * (dy - sum_k dy_k y_k)   (last axis)
    linear   y = z                     dz = dy
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


ACTIVATIONS = {
    "relu": (_relu, _relu_backward),
    "sigmoid": (_sigmoid, _sigmoid_backward),
    "tanh": (_tanh, _tanh_backward),
    "softmax": (_softmax, _softmax_backward),
    "linear": (_linear, _linear_backward),
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
