"""convnet: a convolutional-network engine written from scratch.

Hand-written forward and backward passes, checked against finite differences;
Numba kernels on the CPU and CuPy on the GPU behind one Ops interface; the Keras API.
"""

from . import _openblas_env  # noqa: F401, I001  (must run before numpy is imported)
from . import _malloc_env  # noqa: F401, I001  (large arrays stay mapped between steps)
from . import callbacks, initializers, layers, losses, metrics, optimizers
from .backend import available_backends, get_backend, get_ops, set_backend, use_backend
from .config import get_floatx, set_floatx
from .gradcheck import GradcheckReport, gradcheck
from .layers import Input
from .models import Model, Sequential, load_model

__version__ = "0.1.0"

__all__ = ["Input", "Model", "Sequential", "load_model", "gradcheck", "GradcheckReport", "layers", "losses",
           "optimizers", "metrics", "initializers", "callbacks", "set_backend", "get_backend",
           "use_backend", "get_ops", "available_backends", "set_floatx", "get_floatx"]


def __getattr__(name):
    # data and datasets are imported on first use: they pull in Pillow and urllib
    # (profile: convnet.profile.profile_model, the per-layer timing table)
    # onnx: convnet.onnx (export/load), which needs the optional onnx package
    if name in ("data", "datasets", "viz", "profile", "onnx"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'convnet' has no attribute {name!r}")
