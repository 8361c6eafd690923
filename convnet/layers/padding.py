"""Window geometry shared by convolution and pooling (the Keras/TensorFlow rules).

For an input of size n, window k and stride s along one axis:

    "valid":  no padding;           out = floor((n - k) / s) + 1
    "same":   out = ceil(n / s);    total padding = max((out - 1) * s + k - n, 0),
              split so the odd extra pixel goes at the end (bottom / right)
    int p:    p on both sides;      out = floor((n + 2p - k) / s) + 1
    ((t, b), (l, r)): explicit padding before/after each axis (what ONNX's `pads`
              give); out = floor((n + before + after - k) / s) + 1

A dilated window (dilation d) covers k_eff = (k - 1) * d + 1 pixels, and every rule
above reads k_eff for k. With ceil_mode (pooling, as ONNX and PyTorch) out rounds
up instead, and the windows that this adds at the end see extra padding there
(which max and average pooling ignore); a window that would start in the padding
after the input is dropped.
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


def _explicit_pairs(padding):
    """((t, b), (l, r)) as a tuple of int pairs, or None when padding is not of that form."""
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_int(v) and v >= 0 for v in p)
            for p in padding):
        return tuple((int(p[0]), int(p[1])) for p in padding)
    return None


def normalize_padding(padding, owner):
    """'valid', 'same', a non-negative int or explicit ((top, bottom), (left, right))."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    if _is_int(padding) and padding >= 0:
        return int(padding)
    pairs = _explicit_pairs(padding)
    if pairs is not None:
        return pairs
    raise ValueError(f"{owner}: padding must be 'valid', 'same', a non-negative int or "
                     f"((top, bottom), (left, right)), got {padding!r}")


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
    rows, cols = (padding if isinstance(padding, tuple) else (padding, padding))
    oh, top, bottom = axis_geometry(h, kernel[0], strides[0], rows, dilation[0], ceil_mode)
    ow, left, right = axis_geometry(w, kernel[1], strides[1], cols, dilation[1], ceil_mode)
    return (oh, ow), ((top, bottom), (left, right))
