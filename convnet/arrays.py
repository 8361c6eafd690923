"""Small helpers shared by losses, metrics, models and model files."""

import numpy as np


def to_host(a):
    """A host numpy array holding the values of `a` (a cupy array is copied back)."""
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)      # cupy arrays
    return get() if get is not None else np.asarray(a)


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
