"""Finiteness checks of the training loop: inputs, gradients, weights.

fit checks every batch's inputs before the forward pass, the loss after it, and
the gradients and the updated weights after the optimizer step; a non-finite
value stops training (convnet/models.py `_train_batch`, docs/reliability.md)
and the step is undone, so the weights stay the last finite ones.

The check of a step costs one pass over the gradients and the updated weights
and, on a GPU, one scalar read: each array is summed in its own precision, and a
finite sum of the sums proves every element finite (NaN propagates through a sum;
+inf and -inf give inf or NaN). The converse fails only when finite values are so
large that their float32 sum overflows; only then (`all_finite`) is each array
tested element by element. A float32 sum is about twice as fast as a float64 one.

The undo needs the arrays as they were before the step: `Snapshot` keeps copies
in buffers it reuses from step to step (allocating fresh copies every step also
costs the page faults of touching new memory). An optimizer whose step is
bounded (Adam: Optimizer.step_bound) needs no undo: a finite `square_total` of
the gradients and the weights bounds every |g| and |w| by sqrt(float max), which
proves the updated weights and slots finite before anything is written.
"""

import math

import numpy as np

from .arrays import is_device_array, to_host
from .backend import get_ops

__all__ = ["nonfinite_input", "total_sum", "square_total", "all_finite", "Snapshot", "nonfinite_grads",
           "nonfinite_arrays"]


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


def total_sum(arrays):
    """The sum of every element of every floating array, as a 0-d value of the
    arrays' backend (not read back). Summed in each array's own precision
    (float16 in float32, whose range holds any float16 sum of a tensor): finite
    when every element is, and NaN or inf when one is not."""
    total = 0.0
    for a in arrays:
        if a.dtype.kind in "fc":
            total = a.sum(dtype=np.float32 if a.dtype == np.float16 else None) + total
    return total


def square_total(arrays):
    """The sum of the squares of every element of every floating array, a 0-d
    value of the arrays' backend (not read back), each array's part one dot
    product (no temporary). Finite only when every element is finite and so is
    its square, |a| < sqrt(float max); the converse fails only where the squares
    of finite values add up past the float maximum."""
    total = 0.0
    for a in arrays:
        if a.dtype.kind in "fc":
            flat = a.reshape(-1)
            if a.dtype == np.float16:
                flat = flat.astype(np.float32)
            total = flat @ flat + total        # the dot product, on the array's own backend
    return total


def all_finite(arrays, total=None):
    """Is every element of every array finite? `total` is their total_sum,
    if already taken. One scalar read on a GPU, unless the total is not finite:
    then it is NaN/inf in some element, or finite values whose sum overflowed,
    and each array is tested element by element to tell which."""
    if total is None:
        total = total_sum(arrays)
    if math.isfinite(float(total)):
        return True
    return all(_count_nonfinite(a) == 0 for a in arrays)


class Snapshot:
    """Copies of named arrays, to put back into them: the weights, optimizer
    slots and layer state before a training step, so that a step that went
    non-finite can be undone. The copies live in buffers kept from one take()
    to the next (same name, shape, dtype and array type: reused in place)."""

    def __init__(self):
        self._buffers = {}
        self._taken = {}

    def take(self, named):
        """Copy each array of {name: array} into its buffer; remember the arrays."""
        buffers = {}
        for name, a in named.items():
            buf = self._buffers.get(name)
            if buf is None or type(buf) is not type(a) or buf.shape != a.shape or buf.dtype != a.dtype:
                buf = a.copy()
            else:
                buf[...] = a
            buffers[name] = buf
        self._buffers, self._taken = buffers, dict(named)

    def restore(self, into=None):
        """Write the copies back into the arrays they were taken from, or into
        `into` ({name: array}, the same names: where a layer has since replaced
        an array by a new one); returns {name: array}, the arrays written."""
        arrays = self._taken if into is None else into
        for name, a in arrays.items():
            a[...] = self._buffers[name]
        return arrays


def nonfinite_grads(params_and_grads):
    """[(key, count)] of the gradients holding NaN/inf values (for the message;
    run only once a step has failed gradients_finite)."""
    return [(key, n) for key, _, g in params_and_grads if (n := _count_nonfinite(g))]


def nonfinite_arrays(named):
    """[name] of the floating arrays in {name: array} holding NaN or inf."""
    return [name for name, a in named.items()
            if np.asarray(to_host(a)).dtype.kind in "fc" and not np.isfinite(to_host(a)).all()]
