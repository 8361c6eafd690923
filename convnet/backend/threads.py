"""Thread settings for the numba backend (placeholder; chosen by measurement)."""

import os


def configure():
    """Pick Numba's threading layer before the first parallel kernel runs."""
    import numba
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        numba.config.THREADING_LAYER = os.environ.get("CONVNET_THREADING_LAYER", "omp")
