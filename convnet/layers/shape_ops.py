"""Layers that move values without computing on them: Reshape, Permute, Identity, Pad.

    Reshape(target_shape):  (N, *in) -> (N, *target_shape), row-major order
        (one entry may be -1: whatever the size leaves); backward reshapes dy back.
    Permute(dims):          axes reordered, dims 1-based without the batch (Keras):
        Permute((3, 1, 2)) turns (N, H, W, C) into (N, C, H, W); backward applies
        the inverse permutation to dy.
    Identity():             y = x, dy passes through.
    Pad(pads, mode, value): pads[i] = (before, after) for each non-batch axis;
        mode "constant" fills with value, "reflect" mirrors without the edge,
        "edge" repeats it. Every output entry is a copy of one input entry (or the
        constant), so backward adds each dy entry onto the input entry it came from.
"""

import numpy as np

from ..backend import get_ops
from .base import Layer

__all__ = ["Reshape", "Permute", "Identity", "Pad"]


class Reshape(Layer):
    """Keras' Reshape: target_shape excludes the batch axis; one entry may be -1."""

    def __init__(self, target_shape, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        if not isinstance(target_shape, (tuple, list)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and (d >= 1 or d == -1) for d in target_shape) \
                or sum(d == -1 for d in target_shape) > 1:
            raise ValueError(f"{self.describe()}: target_shape must be a tuple of positive ints with at most "
                             f"one -1, got {target_shape!r}")
        self.target_shape = tuple(target_shape)

    def input_spec(self):
        return self.input_shape

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(f"{self.describe()}: cannot reshape {tuple(input_shape)} ({size} values) "
                                 f"to {self.target_shape}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ValueError(f"{self.describe()}: cannot reshape {tuple(input_shape)} ({size} values) "
                             f"to {self.target_shape} ({known} values)")
        return self.target_shape

    def _forward(self, x, training):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], *self.output_shape)

    def _backward(self, dy):
        return dy.reshape(self._x_shape)

    def flops_per_image(self):
        return 0

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Permute(Layer):
    """Keras' Permute: dims is a permutation of 1..rank-1 (the batch stays first)."""

    def __init__(self, dims, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        dims = tuple(dims) if isinstance(dims, (tuple, list)) else dims
        if not isinstance(dims, tuple) or sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"{self.describe()}: dims must be a permutation of 1..rank-1 (the batch axis "
                             f"is not permuted), got {dims!r}")
        self.dims = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ValueError(f"{self.describe()}: dims {self.dims} need inputs of rank {len(self.dims) + 1}, "
                             f"got input shape {tuple(input_shape)}")
        return tuple(input_shape[d - 1] for d in self.dims)

    def _forward(self, x, training):
        return get_ops().xp.ascontiguousarray(x.transpose(0, *self.dims))

    def _backward(self, dy):
        inverse = np.argsort((0, *self.dims))
        return get_ops().xp.ascontiguousarray(dy.transpose(*inverse))

    def flops_per_image(self):
        return 0

    def get_config(self):
        return {**super().get_config(), "dims": list(self.dims)}


class Identity(Layer):
    """y = x (Keras' Identity); an ONNX Identity node imports as this."""

    def input_spec(self):
        return None

    def _forward(self, x, training):
        return x

    def _backward(self, dy):
        return dy

    def flops_per_image(self):
        return 0


PAD_MODES = ("constant", "reflect", "edge")


def _source_index(n, before, after, mode):
    """For one axis of size n padded by (before, after): the input index each output
    position copies, -1 where it holds the constant."""
    pos = np.arange(-before, n + after)
    if mode == "constant":
        return np.where((pos >= 0) & (pos < n), pos, -1)
    if mode == "edge":
        return np.clip(pos, 0, n - 1)
    # reflect: mirror about the first and last entries (the edge is not repeated)
    period = 2 * (n - 1)
    if period == 0:
        return np.zeros_like(pos)
    pos = np.mod(pos, period)
    return np.where(pos < n, pos, period - pos)


class Pad(Layer):
    """Pad each non-batch axis; pads: one (before, after) pair per axis."""

    def __init__(self, pads, mode="constant", constant_value=0.0, name=None, dtype=None, input_shape=None):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        owner = self.describe()
        if not isinstance(pads, (tuple, list)) or not all(
                isinstance(p, (tuple, list)) and len(p) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in p) for p in pads):
            raise ValueError(f"{owner}: pads must be one (before, after) pair of non-negative ints per "
                             f"non-batch axis, got {pads!r}")
        if mode not in PAD_MODES:
            raise ValueError(f"{owner}: mode must be one of {PAD_MODES}, got {mode!r}")
        self.pads = tuple(tuple(p) for p in pads)
        self.mode = mode
        self.constant_value = float(constant_value)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.pads):
            raise ValueError(f"{self.describe()}: pads has {len(self.pads)} pairs, inputs have "
                             f"{len(input_shape)} non-batch axes (input shape {tuple(input_shape)})")
        if self.mode == "reflect" and any(max(p) >= n for p, n in zip(self.pads, input_shape) if n > 1):
            raise ValueError(f"{self.describe()}: reflect padding must be smaller than the axis it pads, "
                             f"got pads {self.pads} for input shape {tuple(input_shape)}")
        return tuple(n + b + a for n, (b, a) in zip(input_shape, self.pads))

    def _forward(self, x, training):
        xp = get_ops().xp
        y = x
        for axis, (n, (b, a)) in enumerate(zip(x.shape[1:], self.pads), start=1):
            if b == 0 and a == 0:
                continue
            src = _source_index(n, b, a, self.mode)
            take = get_ops().asarray(np.maximum(src, 0))
            y = xp.take(y, take, axis=axis)
            if self.mode == "constant":
                shape = [1] * y.ndim
                shape[axis] = len(src)
                mask = get_ops().asarray((src < 0).reshape(shape))
                y = xp.where(mask, y.dtype.type(self.constant_value), y)
        return y

    def _backward(self, dy):
        xp = get_ops().xp
        g = dy
        # undo the axes in reverse order: each output entry adds onto its source
        for axis in range(len(self.pads), 0, -1):
            b, a = self.pads[axis - 1]
            if b == 0 and a == 0:
                continue
            n = self.input_shape[axis - 1]
            src = _source_index(n, b, a, self.mode)
            moved = xp.moveaxis(g, axis, 0)
            out = xp.zeros((n, *moved.shape[1:]), dtype=g.dtype)
            keep = np.nonzero(src >= 0)[0]
            # a loop over output positions: entries that copy one source (reflect, edge) add up
            for j in keep:
                out[int(src[j])] += moved[int(j)]
            g = xp.moveaxis(out, 0, axis)
        return g

    def flops_per_image(self):
        return 0

    def get_config(self):
        return {**super().get_config(), "pads": [list(p) for p in self.pads], "mode": self.mode,
                "constant_value": self.constant_value}
