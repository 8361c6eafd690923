"""What every kernel module of the numba backend shares: the jit options, the
serial twin of a parallel kernel, and the small guards the Ops methods use.

Kernels are compiled on first use for each dtype and cached on disk
(cache=True), so a new process pays only the cache load. Importing this module
fixes the threading layer (threads.configure()) before any kernel can launch.
"""

import glob
import os
import sys
import types

import numpy as np

from . import threads

threads.configure()

from numba import njit  # noqa: E402  (threads.configure() first)

#: options of a serial kernel, and of a parallel one (prange loops over threads)
JIT = dict(cache=True, nogil=True)
PJIT = dict(cache=True, nogil=True, parallel=True)

JIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def jittable(*arrays):
    """The kernels are compiled for float32 and float64; anything else (float16,
    ints) takes the reference path."""
    return all(a.dtype in JIT_DTYPES for a in arrays)


def contig(a):
    """`a` as a C-contiguous array (no copy when it already is one)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def serial_twin(kernel):
    """The same kernel compiled without parallel=True (its prange loops run as plain
    loops), for small inputs and for jobs that already run one per core. It is
    compiled from a copy of the Python function under its own name, so Numba's disk
    cache keeps the two compilations apart."""
    fn = kernel.py_func
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_serial"
    return njit(**JIT)(twin)


class Sized:
    """A memory-bound kernel with its serial twin: `pick(elements)` gives the serial
    one below `threads.serial_below()` elements, where a parallel launch costs more
    than it saves, else the parallel one."""

    def __init__(self, parallel):
        self.parallel = parallel
        self.serial = serial_twin(parallel)

    def pick(self, elements):
        return self.serial if elements < threads.serial_below() else self.parallel


def cache_is_cold():
    """True when no kernel of this package is in Numba's disk cache yet (a fresh
    install, or an empty NUMBA_CACHE_DIR): the first step will compile them all."""
    root = os.environ.get("NUMBA_CACHE_DIR")
    if root:
        return not glob.glob(os.path.join(root, "**", "*.nbi"), recursive=True)
    return not glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__", "*.nbi"))


_announced = False


def announce_compilation(stream=None):
    """Say once, before a cold cache makes the first step slow, what is happening."""
    global _announced
    if _announced or not cache_is_cold():
        return
    _announced = True
    print("convnet: compiling the numba kernels for this machine (about 10 s, once; later runs "
          "load them from the cache)", file=stream or sys.stderr, flush=True)
