"""Weight initializers, drawn from a seeded numpy Generator.

fan_in / fan_out of a kernel: a Dense W (in, units) has fan_in = in, fan_out = units;
a Conv2D W (kh, kw, C, F) has fan_in = kh*kw*C and fan_out = kh*kw*F.

    glorot_uniform  U(-l, l),   l = sqrt(6 / (fan_in + fan_out))   (Keras' default)
    glorot_normal   N(0, s^2),  s = sqrt(2 / (fan_in + fan_out))
    he_uniform      U(-l, l),   l = sqrt(6 / fan_in)                (for relu)
    he_normal       N(0, s^2),  s = sqrt(2 / fan_in)
    zeros, ones

He keeps the variance of relu activations constant from layer to layer (half the
units are zeroed, hence the factor 2); Glorot balances forward and backward variance.
"""

import functools
import math

import numpy as np

from ._checks import check_shape


def fans(shape):
    """(fan_in, fan_out) of a kernel shape."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _checked(draw):
    """Check an initializer's arguments before it draws, so a bad call raises a
    ValueError/TypeError naming the initializer (not a ZeroDivisionError from a
    zero fan, nor numpy's own error from deep inside the generator)."""
    owner = draw.__name__

    @functools.wraps(draw)
    def wrapper(shape, rng=None, dtype=np.float32):
        shape = check_shape(shape, "shape", owner)
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"{owner}: dtype must be a numpy dtype, got {dtype!r}") from None
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"{owner}: dtype must be a floating dtype, got {dtype}")
        if draw not in _DETERMINISTIC and not isinstance(rng, np.random.Generator):
            raise TypeError(f"{owner}: rng must be a numpy.random.Generator "
                            f"(np.random.default_rng(seed)), got {type(rng).__name__}")
        nbytes = math.prod(shape) * dtype.itemsize
        try:
            return draw(shape, rng, dtype)
        except (MemoryError, ValueError) as exc:   # e.g. a kernel of 10**12 entries
            raise ValueError(f"{owner}: cannot create an array of shape {shape} "
                             f"({nbytes:,} bytes of {dtype}): {exc}") from None
    return wrapper


def glorot_uniform(shape, rng, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, rng, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def he_uniform(shape, rng, dtype=np.float32):
    fan_in, _ = fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, rng, dtype=np.float32):
    fan_in, _ = fans(shape)
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def zeros(shape, rng=None, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng=None, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


_DETERMINISTIC = (zeros, ones)
glorot_uniform, glorot_normal, he_uniform, he_normal, zeros, ones = (
    _checked(f) for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, zeros, ones))

INITIALIZERS = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "zeros": zeros,
    "ones": ones,
}


def get(identifier, owner="layer"):
    """An initializer function from its name (or the function itself)."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in INITIALIZERS:
        return INITIALIZERS[identifier.lower()]
    raise ValueError(f"{owner}: unknown initializer {identifier!r}; expected one of {sorted(INITIALIZERS)}")
