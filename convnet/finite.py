"""Finiteness checks of the training loop: inputs, gradients, weights.

fit checks every batch's inputs before the forward pass, the loss after it, and
the gradients and the updated weights after the optimizer step; a non-finite
value stops training (convnet/models.py `_train_batch`, docs/reliability.md)
and the step is undone, so the weights stay the last finite ones.

The check of a step costs one pass over the gradients and the updated weights
and, on a GPU, one scalar read: each array is summed in float64, and the sum of
the sums is finite exactly when every element is (NaN propagates through a
sum; +inf and -inf give inf or NaN; a float64 sum of float32 values cannot
overflow).
"""

import math

import numpy as np

from .arrays import is_device_array, to_host
from .backend import get_ops

__all__ = ["nonfinite_input", "float64_sum", "is_finite_sum", "nonfinite_grads", "nonfinite_arrays"]


def _count_nonfinite(a):
    """Number of NaN/inf entries of a host or device array (0 for integer dtypes)."""
    if a.dtype.kind not in "fc":
        return 0
    xp = get_ops().xp if is_device_array(a) or not isinstance(a, np.ndarray) else np
    return int(a.size - int(xp.count_nonzero(xp.isfinite(a))))


def nonfinite_input(xs):
    """(input position, count of NaN/inf values) of the first input array of a
    batch holding any, or None when every value is finite. xs: a list of arrays
    (N, ...), one per model input; integer images (uint8) are always finite."""
    for i, x in enumerate(xs):
        if x.dtype.kind not in "fc":
            continue
        xp = get_ops().xp if not isinstance(x, np.ndarray) else np
        if not bool(xp.isfinite(x).all()):
            return i, _count_nonfinite(x)
    return None


def float64_sum(arrays):
    """The sum of every element of every array, in float64, as a 0-d array of the
    arrays' backend (not read back): finite exactly when every element is."""
    total = 0.0
    for a in arrays:
        total = a.sum(dtype=np.float64) + total
    return total


def is_finite_sum(total):
    """Read a float64_sum back (one scalar read on a GPU): is it finite?"""
    return math.isfinite(float(total))


def nonfinite_grads(params_and_grads):
    """[(key, count)] of the gradients holding NaN/inf values (for the message;
    run only once a step has failed gradients_finite)."""
    return [(key, n) for key, _, g in params_and_grads if (n := _count_nonfinite(g))]


def nonfinite_arrays(named):
    """[name] of the floating arrays in {name: array} holding NaN or inf."""
    return [name for name, a in named.items()
            if np.asarray(to_host(a)).dtype.kind in "fc" and not np.isfinite(to_host(a)).all()]
