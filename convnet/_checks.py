"""Argument checks shared by layer constructors, optimizers and initializers.

Each check either returns the value in its canonical Python type or raises an
error whose message starts with the owner (``"Adam"``, ``"Dense 'dense_1'"``) and
names the argument, what was expected and what came:

    TypeError   the value is not a number at all (a string, None, a tuple, a bool)
    ValueError  a number, but NaN, infinite or outside the allowed range

A bool is refused wherever a number goes: ``True`` is an int to Python, but a
learning rate of ``True`` is a mistake, not a request for 1.0.
"""

import math
import numbers


def check_real(value, what, owner, *, low=None, high=None, low_open=False, high_open=False):
    """A finite real number within [low, high] (open ends with low_open/high_open) as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {what} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {what} must be finite, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        if high is None and low == 0:
            wanted = "a positive number" if low_open else ">= 0"
            raise ValueError(f"{owner}: {what} must be {wanted}, got {value!r}")
        lo = "(-inf" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "inf)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{owner}: {what} must be in {lo}, {hi}, got {value!r}")
    return value


def check_int(value, what, owner, *, low=None):
    """An integer (Python or numpy, not bool) >= low, as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {what} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{owner}: {what} must be >= {low}, got {value}")
    return value


def check_shape(shape, what, owner, *, min_size=1):
    """A shape: a tuple of ints, each >= min_size (a lone int is a 1-D shape)."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{owner}: {what} must be a tuple of ints, got {shape!r} ({type(shape).__name__})")
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(f"{owner}: {what} must be a tuple of ints, got {tuple(shape)!r}")
        if d < min_size:
            raise ValueError(f"{owner}: every size in {what} must be >= {min_size}, got {tuple(shape)!r}")
        dims.append(int(d))
    return tuple(dims)
