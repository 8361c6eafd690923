"""CupyOps: the reference kernels run on an NVIDIA GPU through CuPy.

NumpyOps is written against `self.xp`, so with xp = cupy the same readable code
runs on the device; only the host/device transfers differ.
"""

import numpy as np

from .numpy_ops import NumpyOps


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise ValueError(
            "backend 'cupy' needs CuPy and an NVIDIA GPU: CuPy is not installed "
            "(pip install convnet[gpu], or the cupy-cudaXXx wheel matching your CUDA)."
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise ValueError(f"backend 'cupy': CuPy is installed but no CUDA device works ({exc})") from exc
    if count < 1:
        raise ValueError("backend 'cupy': CuPy is installed but found no CUDA GPU")
    return cupy


class CupyOps(NumpyOps):
    """NumpyOps with xp = cupy; arrays live on the current CUDA device."""

    name = "cupy"

    def __init__(self):
        self.xp = _import_cupy()

    def asarray(self, a, dtype=None):
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        return self.xp.asnumpy(a) if isinstance(a, self.xp.ndarray) else np.asarray(a)

    def is_native(self, a):
        return isinstance(a, self.xp.ndarray)

    def sparse_softmax_cross_entropy(self, logits, labels):
        return super().sparse_softmax_cross_entropy(logits, self.xp.asarray(labels))
