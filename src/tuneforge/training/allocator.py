"""Where CPU training gets its large blocks of memory from (docs/performance.md, "Large blocks from the heap").

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB, raised dynamically from
128 KiB) with a fresh ``mmap`` and returns it with ``munmap`` on free. A training step allocates and frees
blocks of that size many times over: the vocabulary logits of one micro-batch (about 370 tokens x 49,152
entries x 4 bytes = 73 MB for the default model), their fp32 copy, the log-softmax, its gradient. Each new
mapping page-faults on first touch and the kernel zeroes every page, so those element-wise operations ran
at about 1 GB/s and the loss took a fifth of the step. Told to keep such blocks in its heap and not to hand
freed memory back at once, glibc reuses the pages, already faulted in, at the next micro-batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Literal

#: ``mallopt`` parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: blocks up to this size come from the heap; larger ones (a 7B model's weights) are still mapped
HEAP_BLOCK_LIMIT = 1 << 30
#: free memory glibc keeps at the top of its heap instead of returning it to the kernel
KEEP_FREE = 1 << 30

AllocatorMode = Literal["auto", "heap", "default"]


def _glibc() -> ctypes.CDLL | None:
    """The C library of this process when it is glibc (``mallopt`` with these numbers is glibc's), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def use_heap_for_large_blocks(libc: ctypes.CDLL | None = None) -> bool:
    """Tell glibc to serve blocks up to :data:`HEAP_BLOCK_LIMIT` from its heap and keep freed memory.

    Process-wide and kept for the life of the process; memory freed is reused by the next allocation
    rather than returned to the kernel, so the resident size stays near its peak between steps.

    Returns:
        Whether both settings were accepted (False where the C library is not glibc).
    """
    libc = libc if libc is not None else _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_BLOCK_LIMIT)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE))


def configure_allocator(mode: AllocatorMode, device: str) -> str | None:
    """Apply ``training.cpu_allocator`` for a run on ``device``; a line for the run's log, or None.

    ``auto`` and ``heap`` keep large blocks in the heap when training on a CPU under glibc; on a GPU the
    large blocks are CUDA memory, which PyTorch's caching allocator already reuses, so nothing changes.
    ``default`` leaves glibc as it is.
    """
    if mode == "default" or device != "cpu":
        return None
    if use_heap_for_large_blocks():
        return f"allocator: blocks up to {HEAP_BLOCK_LIMIT >> 20} MiB from glibc's heap, freed memory kept for reuse"
    return "allocator: left as it is (not glibc)" if mode == "heap" else None
