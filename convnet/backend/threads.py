"""Thread settings of the numba backend: Numba's threading layer.

On this kind of machine (2 cores) numpy's OpenBLAS and Numba's parallel kernels
both want both cores, and a convolution alternates them (im2col, GEMM, col2im,
GEMM, ...). With Numba's OpenMP layer the OpenMP workers spin-wait after each
parallel region while OpenBLAS's threads do the same after each GEMM, so each
pool steals the cores the other needs next (DESIGN.md saw a GEMM followed by a
parallel kernel run 2.2x slower than the two apart).

Measured with benchmarks/threads.py (numbers in benchmarks/RESULTS.md): Numba's
"workqueue" layer, whose workers sleep instead of spinning, removes the
interference while keeping both cores for the Numba kernels; a single Numba
thread also avoids it but halves the kernels' speed. So:

- the threading layer is "workqueue" unless the user chose one with
  NUMBA_THREADING_LAYER (respected as is);
- Numba and OpenBLAS each keep their default thread count (the core count):
  they run one after the other, never at the same time.

configure() must run before the first parallel kernel is launched (the layer is
fixed at that moment); convnet.backend.numba_ops calls it at import.
"""

import os

DEFAULT_LAYER = "workqueue"


def configure():
    """Select Numba's threading layer (NUMBA_THREADING_LAYER wins when set)."""
    import numba
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        numba.config.THREADING_LAYER = DEFAULT_LAYER


def describe():
    """The thread settings in effect, for benchmark reports."""
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:              # no parallel kernel has run yet
        layer = f"{numba.config.THREADING_LAYER} (not launched yet)"
    return {"numba_threading_layer": layer, "numba_threads": numba.get_num_threads()}
