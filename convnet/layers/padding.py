"""Window geometry shared by convolution and pooling (the Keras/TensorFlow rules).

For an input of size n, window k and stride s along one axis:

    "valid":  no padding;           out = floor((n - k) / s) + 1
    "same":   out = ceil(n / s);    total padding = max((out - 1) * s + k - n, 0),
              split so the odd extra pixel goes at the end (bottom / right)
    int p:    p on both sides;      out = floor((n + 2p - k) / s) + 1
"""

import numbers


def _is_int(v):
    # numpy integers count (a size read from an array shape is one); bools do not
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def normalize_pair(value, what, owner):
    """An int or a pair of ints as a (height, width) tuple of positive ints."""
    if _is_int(value):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{owner}: {what} must be an int or a pair of ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{owner}: {what} must be positive, got {value!r}")
    return pair


def normalize_padding(padding, owner):
    """'valid', 'same' or a non-negative int."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    if _is_int(padding) and padding >= 0:
        return int(padding)
    raise ValueError(f"{owner}: padding must be 'valid', 'same' or a non-negative int, got {padding!r}")


def axis_geometry(n, k, s, padding):
    """(out, pad_before, pad_after) along one axis; out may be < 1 when k does not fit."""
    if padding == "valid":
        before = after = 0
    elif padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        before, after = total // 2, total - total // 2
    else:
        before = after = padding
    out = (n + before + after - k) // s + 1 if n + before + after >= k else 0
    return out, before, after


def window_geometry(h, w, kernel, strides, padding):
    """((OH, OW), ((top, bottom), (left, right))) for an (h, w) input."""
    oh, top, bottom = axis_geometry(h, kernel[0], strides[0], padding)
    ow, left, right = axis_geometry(w, kernel[1], strides[1], padding)
    return (oh, ow), ((top, bottom), (left, right))
