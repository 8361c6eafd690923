"""Layers with hand-written forward and backward passes (Keras names)."""

from .base import Layer
from .conv import Conv2D, DepthwiseConv2D, conv2d_naive
from .core import Activation, Dense, Dropout, Flatten, ReLU, Rescaling, Softmax
from .elementwise import ELU, LRN, Abs, Clip, ConstantOp, LeakyReLU, LogSoftmax, PReLU
from .input_layer import Input, InputLayer
from .matmul import MatMul, MatMulWeight
from .merge import Add, Average, Concatenate, Divide, Multiply, Subtract
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D, MaxPool2D, MaxPooling2D
from .pooling3d import AveragePooling3D, AvgPool3D, MaxPool3D, MaxPooling3D
from .reshaping import UpSampling2D, ZeroPadding2D
from .shape_ops import Identity, Pad, Permute, Reshape

LAYER_CLASSES = {cls.__name__: cls for cls in (
    Conv2D, Dense, Flatten, Dropout, Activation, ReLU, Softmax, Rescaling,
    BatchNormalization, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
    InputLayer, Add, Subtract, Multiply, Average, Concatenate, ZeroPadding2D, UpSampling2D,
    DepthwiseConv2D, Clip, LRN, ConstantOp, Identity, Pad, Permute, Reshape, LeakyReLU, PReLU, LogSoftmax, ELU,
    Abs, Divide, MatMul, MatMulWeight, MaxPooling3D, AveragePooling3D,
)}


def deserialize(spec):
    """A layer from {"class_name": ..., "config": {...}} (as written by serialize)."""
    if not isinstance(spec, dict) or "class_name" not in spec or "config" not in spec:
        raise ValueError(f"layer spec must have 'class_name' and 'config', got {spec!r}")
    cls = LAYER_CLASSES.get(spec["class_name"])
    if cls is None:
        raise ValueError(f"unknown layer class {spec['class_name']!r}; known: {sorted(LAYER_CLASSES)}")
    return cls.from_config(dict(spec["config"]))


def serialize(layer):
    """{"class_name", "config"} of a layer: its architecture, no weights."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


__all__ = ["Layer", "Conv2D", "conv2d_naive", "Dense", "Flatten", "Dropout", "Activation", "ReLU",
           "Softmax", "Rescaling", "BatchNormalization", "MaxPooling2D", "MaxPool2D",
           "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D",
           "Input", "InputLayer", "Add", "Subtract", "Multiply", "Average", "Concatenate",
           "ZeroPadding2D", "UpSampling2D", "DepthwiseConv2D", "Clip", "LRN", "ConstantOp", "Identity", "Pad",
           "Permute", "Reshape", "LeakyReLU", "PReLU", "LogSoftmax", "ELU", "Abs", "Divide",
           "MatMul", "MatMulWeight", "MaxPooling3D", "MaxPool3D", "AveragePooling3D", "AvgPool3D",
           "deserialize", "serialize", "LAYER_CLASSES"]
