"""Per-thread BLAS threads: let a worker thread run numpy's matrix products on one core.

The numba backend can run a wide convolution as one job per core, each job
unfolding and multiplying its own share of the batch (NumbaOps.conv2d_forward).
For that, each job's matrix products must stay on its own core: two jobs that each
asked OpenBLAS for both cores would fight over them.

OpenBLAS (0.3.27 and newer) has `openblas_set_num_threads_local`, which sets the
thread count of the calling thread only; the rest of the process keeps its
setting. numpy's wheels ship OpenBLAS as their BLAS, so on such a numpy this
module finds the loaded library and returns that function. Anywhere else (MKL,
Accelerate, an older OpenBLAS) it returns None and the convolution keeps
one job with multi-threaded products.
"""

import ctypes
import glob
import os

_SETTER = "openblas_set_num_threads_local"


def _candidate_libraries():
    """Paths of OpenBLAS libraries that numpy may have loaded."""
    import numpy
    root = os.path.dirname(os.path.dirname(numpy.__file__))
    paths = glob.glob(os.path.join(root, "numpy.libs", "*openblas*")) + \
        glob.glob(os.path.join(os.path.dirname(numpy.__file__), ".libs", "*openblas*"))
    try:                                   # Linux: whatever is mapped in this process
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def thread_local_setter():
    """A function f(n) that sets the calling thread's BLAS thread count to n, or
    None when numpy's BLAS cannot do that."""
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
            setter = getattr(lib, _SETTER)
        except (OSError, AttributeError):
            continue
        setter.argtypes = (ctypes.c_int,)
        setter.restype = ctypes.c_int
        return setter
    return None
