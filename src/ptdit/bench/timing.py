"""Timing and peak-memory measurement for `ptdit bench`.

CPU peak memory uses Linux facilities: /proc/self/status (VmRSS, VmHWM), /proc/self/clear_refs to reset the
peak, and glibc's malloc_trim (through ctypes) to hand freed heap pages back first. Off Linux or glibc the
peak is reported as unavailable rather than guessed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
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


def interleaved_ms(fns: Sequence[Callable[[], Any]], *, repeats: int, warmup: int, device: str) -> list[list[float]]:
    """Wall times in ms of `repeats` rounds over `fns` in turn (A, B, C, A, B, C, ...), after `warmup` untimed
    rounds in the same order; result[i] holds the times of fns[i].

    Interleaving spreads slow drifts of a shared machine's load over every function alike, so ratios between
    them hold better than with all repeats of A first, then all of B.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            _sync(device)
            times[i].append((time.perf_counter() - start) * 1000)
    return times


def spread(times: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the quartiles (q1, q3; linear interpolation) of a list of times."""
    ordered = sorted(times)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "q1": q1, "q3": q3}


def matmul_probe(size: int, dtype: torch.dtype, device: str) -> tuple[Callable[[], Any], float]:
    """(a call of one (size x size) @ (size x size) matmul in `dtype`, its FLOPs = 2 size^3): the machine's own
    reference rate, timed beside the models."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return (lambda: a @ b), 2.0 * size**3


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


__all__ = ["PeakMemory", "interleaved_ms", "matmul_probe", "median_ms", "spread", "status_kb"]
