"""Keep freed per-frame buffers in the heap instead of handing them back to the OS.

Every frame allocates and frees a few hundred-kilobyte temporaries (numpy and
OpenCV arrays). glibc serves such sizes with ``mmap`` and returns them with
``munmap``, so each frame paid fresh page faults: measured on the 480x480 test
video, 510 000 faults and 1.6 s of system time in a 7.5 s run. Raising the
mmap and trim thresholds keeps that memory for reuse: 51 000 faults, 0.7 s.
The price is that a worker process keeps up to :data:`TRIM` bytes of freed
memory it may use again for the next task.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP = 32 << 20  # allocations above this still get their own mapping
TRIM = 128 << 20  # free heap kept before glibc gives memory back
_done = False


def keep_freed_memory() -> None:
    """Set the thresholds once per process; a no-op where the C library is not glibc."""
    global _done
    if _done:
        return
    _done = True
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_MMAP_THRESHOLD, MMAP)
    mallopt(_M_TRIM_THRESHOLD, TRIM)
