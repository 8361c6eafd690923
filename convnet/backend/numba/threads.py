"""Thread settings of the numba backend: Numba's threading layer.

On this kind of machine (2 cores) numpy's OpenBLAS and Numba's parallel kernels
both want both cores, and a convolution alternates them (im2col, GEMM, col2im,
GEMM, ...). With Numba's default OpenMP layer the OpenMP workers spin-wait after
each parallel region while OpenBLAS's threads do the same after each GEMM, so
each pool steals the cores the other needs next (docs/design.md: a GEMM followed by
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
OpenBLAS each keep their default thread count (the core count), but convnet
never hands OpenBLAS's pool work: every product it runs uses a one-thread BLAS,
large ones split into one job per core by convnet (workers.py). OpenBLAS's own
workers would otherwise spin (about 0.1 s) after every product, and a script that
imports numpy before convnet cannot stop that with OPENBLAS_THREAD_TIMEOUT.

Without TBB, a parallel launch costs ~60-80 us, so the memory-bound kernels stay
serial up to SERIAL_BELOW_SLOW_LAUNCH elements (16x the TBB threshold): W1
inference at batch 1 then runs about as fast as with TBB instead of ~25x slower
(benchmarks/RESULTS.md). convnet warns once, naming the fix, when TBB could load
here but did not.

configure() must run before the first parallel kernel is launched (the layer is
fixed at that moment); convnet.backend.numba._jit calls it at import, before any
kernel module is loaded.

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
import warnings

import numba

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
    try:
        layer = numba.threading_layer()
    except ValueError:              # no parallel kernel has run yet
        layer = f"{numba.config.THREADING_LAYER} (not launched yet)"
    return {"numba_threading_layer": layer, "numba_threads": numba.get_num_threads()}


# Below this many elements (of a memory-bound kernel; multiply-adds of the direct
# convolution) a parallel launch costs more than it saves, which shows at batch 1
# and on biases, so those kernels run their serial twins. With tbb a launch costs
# ~2 us (measured with relu: 1.5 us parallel vs 0.3 us serial at 1K elements, 3.1
# vs 1.4 us at 25K, 5.0 vs 4.3 us at 100K, 17 vs 30 us at 400K). workqueue and omp
# wake sleeping workers for each launch (~60-80 us), so only large kernels pay.
SERIAL_BELOW = {"tbb": 1 << 16}
SERIAL_BELOW_SLOW_LAUNCH = 1 << 20

_layer = None
_serial_below = None
_warned = False


def _probe(a):
    # the smallest parallel kernel: launching it fixes (and so reveals) the layer
    for i in numba.prange(a.size):
        a[i] = i


def layer():
    """The threading layer Numba runs convnet's parallel kernels on ("tbb",
    "workqueue" or "omp"); launches one tiny parallel kernel the first time."""
    global _layer
    if _layer is None:
        import numpy as np
        try:
            _layer = numba.threading_layer()
        except ValueError:              # nothing launched yet: launch the probe
            numba.njit(parallel=True, cache=True)(_probe)(np.zeros(2, np.int64))
            _layer = numba.threading_layer()
        _warn_if_slow(_layer)
    return _layer


def serial_below():
    """Elements below which the memory-bound kernels run serially (see SERIAL_BELOW)."""
    global _serial_below
    if _serial_below is None:
        _serial_below = SERIAL_BELOW.get(layer(), SERIAL_BELOW_SLOW_LAUNCH)
    return _serial_below


def num_threads():
    """Numba's thread count: how many parallel jobs the backend runs at once."""
    return numba.get_num_threads()


def tbb_wheel_exists():
    """True on the platforms PyPI has tbb wheels for (the marker in pyproject.toml)."""
    import platform
    return platform.system() in ("Linux", "Windows") and platform.machine().lower() in ("x86_64", "amd64")


def _user_chose_layer():
    return any(os.environ.get(name) for name in
               ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY", "CONVNET_THREADING_LAYER"))


def _warn_if_slow(name):
    """Say once, naming the fix, when convnet runs without TBB for a reason the
    user can fix (the tbb package missing); a layer the user chose is not a fault."""
    global _warned
    if _warned or name == "tbb" or _user_chose_layer() or not tbb_wheel_exists():
        return
    _warned = True
    warnings.warn(
        f"convnet: Numba's TBB threading layer could not load, so the numba backend runs on "
        f"'{name}', where every parallel kernel launch costs ~60-80 us (small batches run up "
        f"to ~2x slower). Fix: `pip install tbb` (the convnet[numba] extra installs it).",
        RuntimeWarning, stacklevel=3)
