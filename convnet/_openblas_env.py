"""How long OpenBLAS's idle worker threads spin: set before numpy loads OpenBLAS.

After each matrix product OpenBLAS's workers busy-wait for new work, by default
for about 2^28 cycles (~0.1 s). In a training step a GEMM is followed at once by a
parallel Numba kernel (im2col, col2im, pooling, relu) that needs both cores, so the
spinning workers take half the machine from it. OPENBLAS_THREAD_TIMEOUT=4 (2^4
cycles) makes them sleep almost at once. Measured here with benchmarks/train.py:
W1 training at batch 128 went from ~2,500 to ~3,400 img/s, W2 from ~580 to ~730.

OpenBLAS reads the variable once, when numpy is first imported; so this works when
convnet is imported before numpy (as `convnet ...` and `python -m convnet` do). A
script that imports numpy first can export OPENBLAS_THREAD_TIMEOUT=4 itself. A
value the user set is kept.
"""

import os
import sys

OPENBLAS_THREAD_TIMEOUT = "4"

#: True when this process's OpenBLAS will see the setting (numpy not loaded yet)
applied = "numpy" not in sys.modules or "OPENBLAS_THREAD_TIMEOUT" in os.environ
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
