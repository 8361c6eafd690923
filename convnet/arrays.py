"""Small helpers shared by losses, metrics, models and model files."""

import sys

import numpy as np


def is_device_array(a):
    """True for a CuPy (GPU) array. CuPy is never imported here: a program that
    has not imported it cannot hold its arrays."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(a, cupy.ndarray)


def to_host(a):
    """A host numpy array holding the values of `a`.

    A device (CuPy) array is copied back explicitly through the cupy backend's
    `to_numpy` (which counts the copy); `np.asarray` would raise on it, as CuPy
    refuses implicit conversion.
    """
    if isinstance(a, np.ndarray):
        return a
    if is_device_array(a):
        from .backend import get_ops
        return get_ops("cupy").to_numpy(a)
    return np.asarray(a)


def class_indices(y, owner, shape_text="(N,)"):
    """Integer class labels as int64 (N,); (N, 1) is flattened.

    Float labels are accepted when they are whole numbers (7.0), as Keras does.
    Range checks are left to the caller, who knows the number of classes.
    """
    y = to_host(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{owner}: expected integer labels of shape {shape_text}, got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{owner}: labels must be whole numbers (class indices)")
    elif y.dtype.kind not in "iub":
        raise ValueError(f"{owner}: labels must be integers, got dtype {y.dtype}")
    return y.astype(np.int64)
