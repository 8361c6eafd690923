"""Thread settings of the numba backend: Numba's threading layer.

On this kind of machine (2 cores) numpy's OpenBLAS and Numba's parallel kernels
both want both cores, and a convolution alternates them (im2col, GEMM, col2im,
GEMM, ...). With Numba's default OpenMP layer the OpenMP workers spin-wait after
each parallel region while OpenBLAS's threads do the same after each GEMM, so
each pool steals the cores the other needs next (DESIGN.md saw a GEMM followed by
a parallel kernel run 2.2x slower than the two apart; benchmarks/threads.py
measured a whole W2 training step 3x slower with spinning OpenMP than without).

Measured with benchmarks/threads.py (numbers in benchmarks/RESULTS.md):
- "tbb" (Intel TBB; `pip install tbb`): no interference, and starting a parallel
  kernel costs ~2 us, so tiny batch-1 kernels stay cheap. The best setting.
- "workqueue" (always available): no interference either, but every parallel
  launch costs ~60-80 us (it wakes sleeping workers), which dominates batch-1
  inference. The fallback when TBB is missing.
- "omp" with OMP_WAIT_POLICY=PASSIVE or one Numba thread removes most of the
  spinning, but both were slower than tbb/workqueue on whole training steps.

So: the layer is "tbb" when TBB loads, else "workqueue" (Numba's layer
priority list); a user's NUMBA_THREADING_LAYER (or _PRIORITY, or
CONVNET_THREADING_LAYER) is respected as is. Numba and
OpenBLAS each keep their default thread count (the core count): they run one
after the other, never at the same time, so splitting the cores would only idle
them. The one exception is a wide convolution, which runs as one job per core
with OpenBLAS set to one thread for its duration (numba_ops._ConvWorkers): there
the hand-offs between the two pools cost more than they gave.

OpenBLAS's own workers also spin (about 0.1 s) after every GEMM; convnet sets
OPENBLAS_THREAD_TIMEOUT=4 before numpy loads, so they sleep at once instead
(convnet/_openblas_env.py; about 1.3x on whole training steps here).

configure() must run before the first parallel kernel is launched (the layer is
fixed at that moment); convnet.backend.numba_ops calls it at import.

The `tbb` wheel from PyPI puts libtbb.so.12 in the environment's lib/ folder
(.venv/lib), where the dynamic loader does not look, so Numba's TBB layer fails
to load from a plain venv and Numba quietly takes workqueue (W1 inference at
batch 1 measured 980 img/s that way, against ~4,300 with TBB). configure() loads
the library from there first, by path; the loader then reuses it for Numba.
"""

import ctypes
import glob
import os
import sys

#: Numba tries these in order and takes the first that loads
LAYER_PRIORITY = ["tbb", "workqueue", "omp"]


def _load_tbb_from_environment():
    """Load the tbb wheel's libtbb.so.12 from <prefix>/lib by path (see the module
    docstring); True when it is loaded (or already loadable by name)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libtbb.so.12", mode=ctypes.RTLD_GLOBAL)
        return True
    except OSError:
        pass
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix)):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libtbb.so.12*"))):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


def configure():
    """Ask Numba for tbb, else workqueue (see the module docstring), unless the
    user chose: NUMBA_THREADING_LAYER / NUMBA_THREADING_LAYER_PRIORITY are kept,
    and CONVNET_THREADING_LAYER names a layer for convnet to use."""
    import numba
    _load_tbb_from_environment()
    if os.environ.get("NUMBA_THREADING_LAYER") or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY"):
        return
    requested = os.environ.get("CONVNET_THREADING_LAYER", "").strip()
    if requested:
        numba.config.THREADING_LAYER = requested
        return
    numba.config.THREADING_LAYER = "default"
    numba.config.THREADING_LAYER_PRIORITY = list(LAYER_PRIORITY)


def describe():
    """The thread settings in effect, for benchmark reports."""
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:              # no parallel kernel has run yet
        layer = f"{numba.config.THREADING_LAYER} (not launched yet)"
    return {"numba_threading_layer": layer, "numba_threads": numba.get_num_threads()}
