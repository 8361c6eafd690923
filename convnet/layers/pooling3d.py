"""3-D pooling over volumes, channels-last: (N, D, H, W, C) -> (N, OD, OH, OW, C).

The 2-D pooling layers (pooling.py) with one more window axis, depth first:
pool_size, strides and dilation_rate are (kd, kh, kw) triples (an int means the
same on every axis), padding is "valid", "same", an int or three (before, after)
pairs, ((front, back), (top, bottom), (left, right)). As in 2-D, max pooling
routes each window's gradient to the one input that won (the first maximum when
several tie) and average pooling spreads it evenly over the real (unpadded) voxels
it averaged; ceil_mode, count_include_pad and dilation_rate are ONNX's and PyTorch's
options, as in 2-D. The window kernels are the backend's reference ones
(ops.window_maxpool / ops.window_maxpool_backward, ops.window_avgpool / ...,
shared with the dilated 2-D windows), which gather each window's kd*kh*kw taps
and reduce over them.
"""

import numpy as np

from ..backend import get_ops
from .base import Layer
from .padding import padding_config, pooling_arguments, windows_geometry
from .pooling import tap_counts

__all__ = ["MaxPooling3D", "AveragePooling3D", "MaxPool3D", "AvgPool3D"]


class _Pooling3D(Layer):
    """Shared window logic. Input (N, D, H, W, C) -> output (N, OD, OH, OW, C)."""

    input_rank = 5

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, dtype=None,
                 input_shape=None, ceil_mode=False, dilation_rate=1):
        super().__init__(name=name, dtype=dtype, input_shape=input_shape)
        self.pool_size, self.strides, self.padding, self.dilation_rate = pooling_arguments(
            pool_size, strides, padding, dilation_rate, 3, self.describe())
        self.ceil_mode = bool(ceil_mode)

    def _rank_hint(self):
        return "(N, D, H, W, C)"

    def _geometry(self, sizes, ceil_mode=None):
        """((OD, OH, OW), pads) for a (D, H, W) input; the pads include ceil_mode's extra
        end padding unless ceil_mode=False is asked for (the declared pads)."""
        ceil_mode = self.ceil_mode if ceil_mode is None else ceil_mode
        return windows_geometry(tuple(sizes), self.pool_size, self.strides, self.padding, self.dilation_rate,
                                ceil_mode=ceil_mode)

    def _window_args(self, x_shape):
        """(pool, strides, dilation, pads): what the backend's window kernels take."""
        _, pads = self._geometry(x_shape[1:4])
        return self.pool_size, self.strides, self.dilation_rate, pads

    def _check_spatial(self, shape):
        out, pads = self._geometry(shape[1:4])
        if min(out) < 1:
            padded = tuple(n + before + after for n, (before, after) in zip(shape[1:4], pads))
            raise ValueError(f"{self.describe()}: pool_size {self.pool_size} is larger than the padded input "
                             f"{padded} (input shape {tuple(shape)})")

    def _build(self, input_shape):
        self._check_spatial((None, *input_shape))

    def input_spec(self):
        return (None, None, None, self.input_shape[3])

    def compute_output_shape(self, input_shape):
        out, _ = self._geometry(input_shape[:3])
        return (*out, input_shape[3])

    def flops_per_image(self):
        od, oh, ow, c = self.output_shape
        return od * oh * ow * c * int(np.prod(self.pool_size))

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": padding_config(self.padding), "ceil_mode": self.ceil_mode,
                "dilation_rate": list(self.dilation_rate)}


class MaxPooling3D(_Pooling3D):
    """Max over (kd, kh, kw) windows; strides default to pool_size (Keras)."""

    def _forward(self, x, training):
        args = self._window_args(x.shape)
        y, argmax = get_ops().window_maxpool(x, *args)
        self._cache = (argmax, x.shape, args)
        return y

    def _backward(self, dy):
        argmax, x_shape, args = self._cache
        return get_ops().window_maxpool_backward(dy, argmax, x_shape, *args)


class AveragePooling3D(_Pooling3D):
    """Mean over windows; with padding the mean counts only real voxels (Keras).

    count_include_pad=True (ONNX, PyTorch) divides by the window size instead,
    counting the padding's zeros, though not the extra end planes of ceil_mode.
    """

    def __init__(self, pool_size=2, strides=None, padding="valid", name=None, dtype=None,
                 input_shape=None, ceil_mode=False, count_include_pad=False, dilation_rate=1):
        super().__init__(pool_size, strides, padding, name=name, dtype=dtype, input_shape=input_shape,
                         ceil_mode=ceil_mode, dilation_rate=dilation_rate)
        self.count_include_pad = bool(count_include_pad)

    def _rescale(self, sizes):
        """(OD, OH, OW, 1): real voxels / counted voxels of each window, the factor that
        turns the mean over real voxels into the mean with the padding counted. Both
        counts are products of one count per axis (a window is a box)."""
        out, pads = self._geometry(sizes)
        _, declared = self._geometry(sizes, ceil_mode=False)
        real, counted = np.ones((1, 1, 1)), np.ones((1, 1, 1))
        for axis, (n, k, s, d, o) in enumerate(zip(sizes, self.pool_size, self.strides, self.dilation_rate, out)):
            r, c = tap_counts(n, k, s, d, o, pads[axis][0], declared[axis][1])
            shape = [1, 1, 1]
            shape[axis] = o
            real, counted = real * r.reshape(shape), counted * c.reshape(shape)
        return get_ops().asarray((real / counted)[..., None], dtype=self.dtype)

    def _forward(self, x, training):
        args = self._window_args(x.shape)
        y, count = get_ops().window_avgpool(x, *args)
        factor = self._rescale(x.shape[1:4]) if self.count_include_pad else None
        self._cache = (count, x.shape, args, factor)
        return y if factor is None else y * factor

    def _backward(self, dy):
        count, x_shape, args, factor = self._cache
        if factor is not None:
            dy = dy * factor
        return get_ops().window_avgpool_backward(dy, count, x_shape, *args)

    def get_config(self):
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


MaxPool3D = MaxPooling3D
AvgPool3D = AveragePooling3D
