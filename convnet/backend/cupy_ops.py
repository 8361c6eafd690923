"""CupyOps: the reference kernels run on an NVIDIA GPU through CuPy.

NumpyOps is written against `self.xp`, so with xp = cupy the same readable code
runs on the device; only the host/device transfers differ, and every one of them
goes through `asarray` (host -> device) or `to_numpy` (device -> host) here, where
`transfers` counts them. A training loop that keeps its parameters, gradients and
optimizer state on the device shows a constant, small count per step (the batch
in, the loss and probabilities out); a count that grows with the number of layers
means something is crossing the bus that should not.

Which CuPy: `pip install "convnet[gpu]"` installs `cupy-cuda12x` (CUDA 12.x
drivers); for CUDA 13 install `cupy-cuda13x` instead (the `gpu-cuda13` extra).
Both are binary wheels that need only the NVIDIA driver, not a CUDA toolkit.
"""

import numpy as np

from .numpy_ops import NumpyOps


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:
        raise ValueError(
            "backend 'cupy' needs CuPy and an NVIDIA GPU: CuPy is not installed "
            "(pip install 'convnet[gpu]' for CUDA 12, 'convnet[gpu-cuda13]' for CUDA 13)."
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise ValueError(f"backend 'cupy': CuPy is installed but no CUDA device works ({exc})") from exc
    if count < 1:
        raise ValueError("backend 'cupy': CuPy is installed but found no CUDA GPU")
    return cupy


class Transfers:
    """Counts of copies between host and device made through CupyOps."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.to_device = 0
        self.to_device_bytes = 0
        self.to_host = 0
        self.to_host_bytes = 0

    def as_dict(self):
        return {"to_device": self.to_device, "to_device_bytes": self.to_device_bytes,
                "to_host": self.to_host, "to_host_bytes": self.to_host_bytes}

    def __repr__(self):
        return f"Transfers({self.as_dict()})"


class CupyOps(NumpyOps):
    """NumpyOps with xp = cupy; arrays live on the current CUDA device."""

    name = "cupy"

    def __init__(self):
        self.xp = _import_cupy()
        self.transfers = Transfers()

    def asarray(self, a, dtype=None):
        """`a` on the device; a host array (or list, scalar) is copied there and counted."""
        xp = self.xp
        if isinstance(a, xp.ndarray):
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        host = np.asarray(a, dtype=dtype)
        self.transfers.to_device += 1
        self.transfers.to_device_bytes += host.nbytes
        return xp.asarray(host)

    def to_numpy(self, a):
        """A host numpy array of `a`; a device array is copied back and counted."""
        if isinstance(a, self.xp.ndarray):
            self.transfers.to_host += 1
            self.transfers.to_host_bytes += a.nbytes
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def is_native(self, a):
        return isinstance(a, self.xp.ndarray)

    def sparse_softmax_cross_entropy(self, logits, labels):
        return super().sparse_softmax_cross_entropy(logits, self.asarray(labels))
