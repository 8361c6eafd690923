"""ONNX in and out: `export(model, path)` writes a convnet model as an ONNX graph,
`load(path)` reads an ONNX model into an ordinary convnet model (channels-last),
and `convnet.onnx.backend` runs ONNX's own backend test suite on convnet.

ONNX images are (N, C, H, W); convnet's are (N, H, W, C). The exported graph takes
convnet's (N, H, W, C) input and transposes at the boundary; an imported model takes
(N, H, W, C) and keeps every image tensor channels-last inside. docs/onnx.md has the
operator table and what is not supported.

Needs the optional `onnx` and `onnxruntime` packages: pip install 'convnet[onnx]'.
"""

try:
    import onnx as _onnx  # noqa: F401
except ImportError as exc:          # pragma: no cover - depends on the environment
    raise ImportError("convnet.onnx needs the optional onnx package (and onnxruntime to run exported "
                      "models): pip install 'convnet[onnx]' (or pip install onnx onnxruntime)") from exc

from .export import export  # noqa: E402
from .importer import OnnxImportError, load  # noqa: E402

__all__ = ["export", "load", "OnnxImportError"]
