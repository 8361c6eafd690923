"""ONNX's own backend test suite (onnx.backend.test) run on convnet through
convnet.onnx.backend: the node tests of the operators docs/onnx.md lists and the
PyTorch-converted 2-D conv, pooling, batch-norm, linear and activation cases,
selected by name pattern. What is excluded, and why, is listed in docs/onnx.md
and in EXCLUDED below (the same list). The light zoo models are tested in
tests/test_onnx_import.py (with the slow ones marked), not through the runner."""

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx.backend.test  # noqa: E402

import convnet.onnx.backend as convnet_backend  # noqa: E402

OPERATORS = ("conv", "maxpool", "averagepool", "globalaveragepool", "gemm", "matmul", "relu", "sigmoid", "tanh",
             "softmax", "batchnorm", "dropout", "flatten", "reshape", "transpose", "add", "sum", "sub", "mul",
             "concat", "unsqueeze", "constant_pad", "edge_pad", "reflect_pad", "wrap_pad", "clip", "lrn",
             "constantofshape", "identity")
NODE_PATTERN = r"^test_(%s)(_[a-z0-9_]+)?_cpu$" % "|".join(OPERATORS)
PYTORCH_PATTERN = (r"^test_(Conv2d\w*|MaxPool2d\w*|AvgPool2d\w*|BatchNorm2d\w*|Linear\w*|ReLU|Sigmoid|Tanh|"
                   r"Softmax|softmax_lastdim|softmax_functional_dim3|ZeroPad2d|ConstantPad2d|ReflectionPad2d|"
                   r"ReplicationPad2d|ELU|SELU|LeakyReLU\w*|PReLU\w*|Softplus|Softsign|Softmin|LogSoftmax|"
                   r"log_softmax\w*|Conv1d\w*|MaxPool1d\w*|AvgPool1d\w*|BatchNorm1d\w*)_cpu$")

# name pattern -> reason; docs/onnx.md carries the same table
EXCLUDED = {
    # (test_clip_default_inbounds_expanded passes: its body needs no other operator)
    r"^test_(?!clip_default_inbounds_expanded)\w+_expanded(_ver\d+)?_cpu":
        "the expanded form is the operator's function body, built from operators outside the list "
        "(Exp, ReduceMax, ReduceSum, Where, Less, CastLike, Max, ...)",
    r"^test_(edge|reflect|wrap)_pad_cpu": "integer dtypes: these pad int32 tensors; convnet layers compute in "
                                         "float16/32/64 (Pad's float path is tested by test_constant_pad*)",
    r"^test_dropout_default_mask(_ratio)?_cpu": "the mask output is a bool tensor: convnet models output floats",
    r"^test_maxpool_with_argmax\w*": "the Indices output is an int64 tensor: convnet models output floats",
    r"^test_batchnorm_\w+_training_mode_cpu": "the training form (batch statistics and running-statistics "
                                              "outputs): the issue asks for the inference form; imported models "
                                              "train with fit()",
    r"^test_reshape_allowzero_reordered_cpu": "an empty tensor (a zero-size axis): convnet models need a non-empty "
                                              "batch",
    r"^test_(add|sub|mul)_u?int\d+_cpu": "integer dtypes: convnet layers compute in float16/32/64",
    r"^test_clip_default_int8\w*": "integer dtypes: convnet layers compute in float16/32/64",
    r"^test_maxpool_2d_uint8_cpu": "integer dtypes: convnet layers compute in float16/32/64",
    r"^test_identity_(sequence|opt)_cpu": "sequence and optional types: convnet tensors are arrays",
}

backend_test = onnx.backend.test.BackendTest(convnet_backend, __name__)
backend_test.include(NODE_PATTERN)
backend_test.include(PYTORCH_PATTERN)
for pattern in EXCLUDED:
    backend_test.exclude(pattern)

globals().update(backend_test.test_cases)
