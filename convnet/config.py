"""Global settings: the default floating-point type of layers built from now on."""

import numpy as np

_FLOATX = "float32"
_ALLOWED = ("float16", "float32", "float64")


def set_floatx(dtype):
    """Set the dtype that layers built afterwards compute in ("float32" or "float64")."""
    global _FLOATX
    name = np.dtype(dtype).name
    if name not in _ALLOWED:
        raise ValueError(f"set_floatx: expected one of {_ALLOWED}, got {dtype!r}")
    _FLOATX = name


def get_floatx():
    """The dtype name new layers use when they are not given `dtype=`."""
    return _FLOATX


def resolve_dtype(dtype):
    """`dtype` as a numpy dtype, falling back to the global floatx."""
    name = np.dtype(dtype).name if dtype is not None else _FLOATX
    if name not in _ALLOWED:
        raise ValueError(f"expected a floating dtype in {_ALLOWED}, got {dtype!r}")
    return np.dtype(name)
