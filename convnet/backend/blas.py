"""numpy's BLAS thread count, read and set at run time (OpenBLAS only).

The numba backend can run a wide convolution as one job per core, each job
unfolding and multiplying its own share of the batch (NumbaOps.conv2d_forward).
For that, each job's matrix products must stay on its own core: two jobs that each
asked OpenBLAS for both cores would fight over them. So while the jobs run,
OpenBLAS's thread count is 1, and afterwards it is what it was.

The count is process-wide: OpenBLAS's openblas_set_num_threads_local, despite its
name, changes it for every thread in the pthreads builds numpy ships (measured:
after a worker thread called it with 1, the main thread's products ran on one
core, 2x slower). numpy's wheels ship OpenBLAS, under the symbol prefix
`scipy_openblas` with a `64_` suffix; a system OpenBLAS uses the plain names. With
another BLAS (MKL, Accelerate) `thread_count_functions()` returns None and the
convolution runs as one job with multi-threaded products.
"""

import ctypes
import glob
import os

# (get, set) symbol pairs: numpy's wheels, then a plain OpenBLAS (32/64-bit ints)
_NAME_PAIRS = [
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
]


def _candidate_libraries():
    """Paths of OpenBLAS libraries that numpy may have loaded."""
    import numpy
    here = os.path.dirname(numpy.__file__)
    paths = glob.glob(os.path.join(os.path.dirname(here), "numpy.libs", "*openblas*")) + \
        glob.glob(os.path.join(here, ".libs", "*openblas*"))
    try:                                   # Linux: whatever is mapped in this process
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if "/" in line else ""
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def thread_count_functions():
    """(get_threads(), set_threads(n)) for numpy's OpenBLAS, or None."""
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get_name, set_name in _NAME_PAIRS:
            get = getattr(lib, get_name, None)
            set_ = getattr(lib, set_name, None)
            if get is None or set_ is None:
                continue
            get.argtypes = ()
            get.restype = ctypes.c_int
            set_.argtypes = (ctypes.c_int,)
            set_.restype = None
            return get, set_
    return None
