"""Timing and peak-memory measurement for `ptdit bench`.

CPU peak memory uses Linux facilities: /proc/self/status (VmRSS, VmHWM), /proc/self/clear_refs to reset the
peak, and glibc's malloc_trim (through ctypes) to hand freed heap pages back first. Off Linux or glibc the
peak is reported as unavailable rather than guessed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ptdit.sampling.pipeline import free_memory


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Callable[[], Any], *, repeats: int, warmup: int, device: str) -> float:
    """Median wall time of `repeats` calls of `fn` after `warmup` untimed calls, in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def status_kb(key: str) -> int | None:
    """A `VmRSS` / `VmHWM` style field of /proc/self/status in kB, None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory of the code run between `start()` and `stop()` in MiB (None when it cannot be measured).

    CUDA: the caching allocator's peak. CPU: growth of the peak resident set size; writing "5" to
    /proc/self/clear_refs resets the kernel's peak (VmHWM) to the current RSS, so earlier runs do not count, and
    free heap pages are handed back first (`ptdit.sampling.pipeline.free_memory`), so reusing them shows up as
    growth.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.baseline_kb: int | None = None

    def start(self) -> None:
        free_memory()  # freed heap pages go back first, so reusing them shows up as growth
        if self.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.baseline_kb = None
            return
        self.baseline_kb = status_kb("VmRSS")

    def stop(self) -> float | None:
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        peak_kb = status_kb("VmHWM")
        if self.baseline_kb is None or peak_kb is None:
            return None
        return max(peak_kb - self.baseline_kb, 0) / 1024


__all__ = ["PeakMemory", "median_ms", "status_kb"]
