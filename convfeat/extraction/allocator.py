"""The C allocator of a Dask worker process, set for arrays that come and go by the megabyte.

Dask's nanny starts every worker process with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``), so that freed memory goes back to the
system at once.  Setting it also freezes glibc's ``mmap`` threshold at 128 kB:
every larger array is then mapped afresh and its pages faulted in and zeroed on
first touch.  An extraction allocates and frees several such arrays per item (the
decoded audio, ~5 MB for 30 s of 44.1-kHz stereo; a batch of windows, 11 MB; the
model's intermediate maps), and on 2 cores that cost a Dask worker ~8 ms of system
time per item, 17 % of a warm cluster run (``bench/cluster.py``; 4.45 -> 3.75 s).

:func:`keep_freed_memory` raises both thresholds to 32 MB (glibc's largest mmap
threshold) in the calling process: arrays below it are reused from the heap, and
at most that much freed memory is kept at its top.  A no-op where the C library
has no ``mallopt`` (macOS, Windows).
"""
from __future__ import annotations

import ctypes

__all__ = ["KEEP_FREED_BYTES", "keep_freed_memory"]

KEEP_FREED_BYTES = 32 << 20   # bytes: the largest M_MMAP_THRESHOLD glibc accepts on 64-bit systems
_M_TRIM_THRESHOLD = -1        # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
_done = False


def keep_freed_memory() -> bool:
    """Set this process's mmap and trim thresholds to :data:`KEEP_FREED_BYTES` (once);
    True when the C library took both."""
    global _done
    if _done:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):   # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    return _done
