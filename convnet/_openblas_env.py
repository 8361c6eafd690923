"""How long OpenBLAS's idle worker threads spin: set before numpy loads OpenBLAS.

After each matrix product it splits over its threads, OpenBLAS's workers
busy-wait for new work, by default for about 2^28 cycles (~0.1 s), taking cores
from whatever runs next. OPENBLAS_THREAD_TIMEOUT=4 (2^4 cycles) makes them sleep
almost at once. OpenBLAS reads the variable once, when numpy is first imported, so
this only works when convnet is imported before numpy; a value the user set is kept.

convnet's own speed no longer depends on it: the numba backend runs every matrix
product with a one-thread BLAS and splits large ones into one job per core itself
(convnet/backend/numba/workers.py), so OpenBLAS's workers get no work from convnet
and never spin, whatever the import order. The setting remains for the user's own
multi-threaded numpy products between convnet's calls, in processes where it can
still apply.
"""

import os
import sys

OPENBLAS_THREAD_TIMEOUT = "4"

#: True when this process's OpenBLAS will see the setting (numpy not loaded yet)
applied = "numpy" not in sys.modules or "OPENBLAS_THREAD_TIMEOUT" in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
