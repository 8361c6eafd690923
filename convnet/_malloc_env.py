"""Keep large freed arrays in the C heap, so a training step does not page-fault.

glibc's malloc serves every request above its mmap threshold (at most 32 MiB,
raised on the fly from 128 KiB) with a fresh mmap, and hands it back to the
kernel on free; it also trims free memory off the top of the heap once more than
twice that threshold lies there. A training step allocates and frees the same
large arrays every time (activations, im2col chunks, gradients: 1 to 55 MiB
each), so each step the kernel maps and zeroes them again, page by page. Measured
here with `resource.getrusage` around model.train_step: W2 at batch 128 took
~2,300 minor page faults and ~34 ms of system time per step, W3 at batch 128
~1,700 faults, and W3's step went from 55 ms to 45 ms once they were gone.

So on glibc, when convnet is imported, mallopt raises the mmap threshold to
256 MiB and the trim threshold to 512 MiB: freed blocks stay in the heap and the
next step reuses pages that are already mapped. The cost is that the process
gives memory back to the system later (it stays at its peak while free memory
lies at the top of the heap, up to 512 MiB).

Set CONVNET_MALLOC_TUNING=0 to leave malloc alone; a mmap or trim threshold
already given in GLIBC_TUNABLES or MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_ is respected too. Elsewhere (macOS, Windows, musl) this
does nothing.
"""

import ctypes
import os
import platform
import sys

MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 512 << 20
_M_TRIM_THRESHOLD = -1          # mallopt parameter numbers, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3


def _user_chose():
    """True when the user asked for no tuning or set malloc thresholds themselves."""
    if os.environ.get("CONVNET_MALLOC_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        return True
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return True
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return "malloc.mmap_threshold" in tunables or "malloc.trim_threshold" in tunables


def apply():
    """Set the thresholds with mallopt; returns True when glibc accepted both."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc" or _user_chose():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 when glibc refuses the value
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


#: whether the thresholds were set in this process
applied = apply()
