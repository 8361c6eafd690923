"""Window geometry shared by convolution and pooling (the Keras/TensorFlow rules).

For an input of size n, window k and stride s along one axis:

    "valid":  no padding;           out = floor((n - k) / s) + 1
    "same":   out = ceil(n / s);    total padding = max((out - 1) * s + k - n, 0),
              split so the odd extra pixel goes at the end (bottom / right)
    int p:    p on both sides;      out = floor((n + 2p - k) / s) + 1
    ((t, b), (l, r)): explicit padding before/after each axis (what ONNX's `pads`
              give); out = floor((n + before + after - k) / s) + 1. A 3-D window
              (MaxPooling3D, ...) takes three pairs, ((front, back), (t, b), (l, r)).

A dilated window (dilation d) covers k_eff = (k - 1) * d + 1 pixels, and every rule
above reads k_eff for k. With ceil_mode (pooling, as ONNX and PyTorch) out rounds
up instead, and the windows that this adds at the end see extra padding there
(which max and average pooling ignore); a window that would start in the padding
after the input is dropped.
"""

import functools
import numbers


def _is_int(v):
    # numpy integers count (a size read from an array shape is one); bools do not
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


_COUNTS = {2: "a pair", 3: "a triple"}


def normalize_tuple(value, n, what, owner):
    """An int or n ints as a tuple of n positive ints (one per window axis)."""
    if _is_int(value):
        out = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(_is_int(v) for v in value):
        out = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{owner}: {what} must be an int or {_COUNTS.get(n, f'{n}-tuple')} of ints, got {value!r}")
    if min(out) < 1:
        raise ValueError(f"{owner}: {what} must be positive, got {value!r}")
    return out


def normalize_pair(value, what, owner):
    """An int or a pair of ints as a (height, width) tuple of positive ints."""
    return normalize_tuple(value, 2, what, owner)


def pooling_arguments(pool_size, strides, padding, dilation_rate, rank, owner):
    """(pool_size, strides, padding, dilation_rate) of a pooling layer with `rank`
    window axes, normalized: strides default to pool_size, and the padding must
    be smaller than the window (a window lying wholly in the padding would have
    nothing to pool). dilation_rate (ONNX's dilations) spaces the taps d apart."""
    dilation_rate = normalize_tuple(dilation_rate, rank, "dilation_rate", owner)
    pool_size = normalize_tuple(pool_size, rank, "pool_size", owner)
    strides = pool_size if strides is None else normalize_tuple(strides, rank, "strides", owner)
    padding = normalize_padding(padding, owner, rank=rank)
    if isinstance(padding, int) and padding >= min(pool_size):
        raise ValueError(f"{owner}: int padding must be smaller than pool_size {pool_size}, got {padding}")
    if isinstance(padding, tuple) and any(p >= k for pair, k in zip(padding, pool_size) for p in pair):
        raise ValueError(f"{owner}: explicit padding must be smaller than pool_size {pool_size}, got {padding}")
    return pool_size, strides, padding, dilation_rate


def _explicit_pairs(padding, rank=2):
    """((t, b), (l, r)) (rank pairs) as a tuple of int pairs, or None when padding is
    not of that form."""
    if isinstance(padding, (tuple, list)) and len(padding) == rank and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) and v >= 0 for v in p)
            for p in padding):
        return tuple((int(p[0]), int(p[1])) for p in padding)
    return None


def normalize_padding(padding, owner, rank=2):
    """'valid', 'same', a non-negative int or explicit ((top, bottom), (left, right))
    (rank pairs of (before, after), one per window axis)."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    if _is_int(padding) and padding >= 0:
        return int(padding)
    pairs = _explicit_pairs(padding, rank)
    if pairs is not None:
        return pairs
    form = "((top, bottom), (left, right))" if rank == 2 else "((front, back), (top, bottom), (left, right))"
    raise ValueError(f"{owner}: padding must be 'valid', 'same', a non-negative int or {form}, got {padding!r}")


def padding_config(padding):
    """padding as JSON-friendly data (explicit pairs become lists)."""
    return [list(p) for p in padding] if isinstance(padding, tuple) else padding


def axis_geometry(n, k, s, padding, dilation=1, ceil_mode=False):
    """(out, pad_before, pad_after) along one axis; out may be < 1 when k does not fit.
    `padding` is 'valid', 'same', an int or a (before, after) pair."""
    k = (k - 1) * dilation + 1
    if padding == "valid":
        before = after = 0
    elif padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        before, after = total // 2, total - total // 2
    elif isinstance(padding, tuple):
        before, after = padding
    else:
        before = after = padding
    span = n + before + after - k
    if span < 0:
        return 0, before, after
    if not ceil_mode:
        return span // s + 1, before, after
    out = -(-span // s) + 1
    if (out - 1) * s >= n + before:      # the last window would start in the end padding
        out -= 1
    return out, before, after + max((out - 1) * s + k - (n + before + after), 0)


def window_geometry(h, w, kernel, strides, padding, dilation=(1, 1), ceil_mode=False):
    """((OH, OW), ((top, bottom), (left, right))) for an (h, w) input; with ceil_mode
    the bottom/right padding includes the extra rows the rounding up needs."""
    return windows_geometry((h, w), kernel, strides, padding, dilation, ceil_mode)


def windows_geometry(sizes, kernel, strides, padding, dilation=None, ceil_mode=False):
    """window_geometry for any number of axes: (output sizes, ((before, after), ...)),
    one entry per axis of `sizes` (3 for MaxPooling3D's (D, H, W))."""
    # Every layer call asks this of the same few shapes: remember the answers
    # (a batch-1 prediction would otherwise spend a tenth of its time here).
    return _windows_geometry(tuple(int(size) for size in sizes), tuple(kernel), tuple(strides),
                             padding, None if dilation is None else tuple(dilation), bool(ceil_mode))


@functools.lru_cache(maxsize=4096)
def _windows_geometry(sizes, kernel, strides, padding, dilation, ceil_mode):
    n = len(sizes)
    per_axis = padding if isinstance(padding, tuple) else (padding,) * n
    dilation = (1,) * n if dilation is None else dilation
    geometry = [axis_geometry(size, k, s, p, d, ceil_mode)
                for size, k, s, p, d in zip(sizes, kernel, strides, per_axis, dilation)]
    return tuple(out for out, _, _ in geometry), tuple((before, after) for _, before, after in geometry)
