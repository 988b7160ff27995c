"""How the process's C allocator treats large freed blocks on CPU (docs/decisions.md#cpu-allocator).

torch's CPU tensors come from the C library's `malloc`. glibc serves any block above a threshold (at most 32 MiB
by default) with a fresh `mmap` and unmaps it on `free`, so every large activation of a big model costs page
faults on first touch: one per 4 KiB, again on every call. At 2048 px a PT-DiT/XL forward allocates tens of
such blocks and spent about a fifth of its time in the kernel (BENCHMARKS.md "The CPU allocator"). Raising
glibc's mmap and trim thresholds keeps freed blocks in the heap, where the next call reuses their pages.

The price is resident memory: the heap keeps its high-water mark instead of shrinking after each call.
`ptdit.sampling.pipeline.free_memory` (`malloc_trim`) still hands it back explicitly. The `ptdit` command
applies this at start; library users call `keep_freed_memory()` themselves. `PTDIT_CPU_ALLOCATOR=system`
leaves glibc's defaults.
"""

from __future__ import annotations

import ctypes
import functools
import os

ENV_VAR = "PTDIT_CPU_ALLOCATOR"
CHOICES = ("keep", "system")  # keep freed blocks (the default) / glibc's own defaults
# Blocks up to this size come from the heap and freed memory up to this size stays there. 1 GiB covers the
# largest activation of PT-DiT/XL at 2048 px in fp32 (16384 tokens x 4608 x 4 bytes = 288 MiB) with room;
# larger blocks are still mapped and unmapped one by one.
HELD_BYTES = 1 << 30
# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_state = {"kept": False}  # whether this process has kept freed blocks (glibc has no getter for the thresholds)


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The process's glibc, or None under another C library (macOS, musl, Windows)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory(held_bytes: int = HELD_BYTES) -> bool:
    """Makes glibc keep freed blocks of up to `held_bytes` for reuse (mmap and trim thresholds).

    Returns True when applied; False where it does not apply (not glibc, or `PTDIT_CPU_ALLOCATOR=system`).
    Raises ValueError for any other value of `PTDIT_CPU_ALLOCATOR` than "keep" or "system".
    """
    if not 0 < held_bytes < 2**31:
        raise ValueError(f"held_bytes must be in (0, 2**31) (mallopt takes a C int), got {held_bytes}")
    choice = os.environ.get(ENV_VAR, "keep").strip().lower() or "keep"
    if choice not in CHOICES:
        raise ValueError(f"{ENV_VAR}={choice!r} is not one of {', '.join(CHOICES)} (unset it to keep freed memory)")
    if choice == "system":
        return False
    libc = glibc()
    if libc is None:  # nothing to tune
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    kept = bool(mallopt(M_MMAP_THRESHOLD, held_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, held_bytes))
    _state["kept"] = _state["kept"] or kept
    return kept


def allocator_setting() -> str:
    """What benchmarks record: "keep" once `keep_freed_memory` applied in this process, else "system"."""
    return "keep" if _state["kept"] else "system"


__all__ = ["CHOICES", "ENV_VAR", "HELD_BYTES", "allocator_setting", "glibc", "keep_freed_memory"]
