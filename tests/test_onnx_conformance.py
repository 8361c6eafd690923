"""ONNX's own backend test suite (onnx.backend.test) run on convnet through
convnet.onnx.backend: the node tests of the operators docs/onnx.md lists and the
PyTorch-converted 2-D conv, pooling, batch-norm, linear and activation cases,
selected by name pattern. What is excluded, and why, is listed in docs/onnx.md
and in EXCLUDED below (the same list)."""

import os
import tempfile

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx.backend.test  # noqa: E402

import convnet.onnx.backend as convnet_backend  # noqa: E402

# the runner writes dummy data for model tests under ONNX_HOME; keep it out of ~
os.environ.setdefault("ONNX_HOME", tempfile.mkdtemp(prefix="convnet-onnx-home-"))

OPERATORS = ("conv", "maxpool", "averagepool", "globalaveragepool", "gemm", "matmul", "relu", "sigmoid", "tanh",
             "softmax", "batchnorm", "dropout", "flatten", "reshape", "transpose", "add", "sum", "sub", "mul",
             "concat", "unsqueeze", "constant_pad", "edge_pad", "reflect_pad", "wrap_pad", "clip", "lrn",
             "constantofshape", "identity")
NODE_PATTERN = r"^test_(%s)(_[a-z0-9_]+)?_cpu$" % "|".join(OPERATORS)
PYTORCH_PATTERN = (r"^test_(Conv2d\w*|MaxPool2d\w*|AvgPool2d\w*|BatchNorm2d\w*|Linear\w*|ReLU|Sigmoid|Tanh|"
                   r"Softmax|softmax_lastdim|softmax_functional_dim3|ZeroPad2d|ConstantPad2d|ReflectionPad2d|"
                   r"ReplicationPad2d)_cpu$")

# name pattern -> reason; docs/onnx.md carries the same table
EXCLUDED = {
    r"^test_convinteger\w*": "ConvInteger is another operator (integer quantized), not Conv",
    r"^test_convtranspose\w*": "ConvTranspose is another operator, not in the list",
    r"^test_matmulinteger\w*": "MatMulInteger is another operator (integer quantized)",
    r"^test_(add|sub|mul)_u?int\d+_cpu": "integer dtypes: convnet layers compute in float16/32/64",
    r"^test_clip_default_int8\w*": "integer dtypes: convnet layers compute in float16/32/64",
    r"^test_maxpool_2d_uint8_cpu": "integer dtypes: convnet layers compute in float16/32/64",
    r"^test_identity_(sequence|opt)_cpu": "sequence and optional types: convnet tensors are arrays",
    r"^test_constantofshape_int\w*": "the graph output is a constant int tensor: convnet models compute float "
                                     "outputs from their inputs",
}

backend_test = onnx.backend.test.BackendTest(convnet_backend, __name__)
backend_test.include(NODE_PATTERN)
backend_test.include(PYTORCH_PATTERN)
for pattern in EXCLUDED:
    backend_test.exclude(pattern)

globals().update(backend_test.test_cases)
