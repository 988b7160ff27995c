"""A progress report over generated samples: a tqdm bar on a terminal, log lines in a log file or pipe."""

from __future__ import annotations

import sys
import time


class SampleProgress:
    """tqdm bar (samples/s, ETA) on a terminal, else a log line every ~10% or 30 s. Under torchrun rank 0 counts
    its own samples times the number of ranks."""

    def __init__(self, total: int, enabled: bool = True, desc: str = "generating") -> None:
        from tqdm.auto import tqdm

        self.total, self.done, self.enabled, self.desc = total, 0, enabled and total > 0, desc
        self.tty = sys.stderr.isatty()
        self.start = self.last = time.perf_counter()
        self.bar = tqdm(total=total, unit="sample", desc=desc, disable=not (self.enabled and self.tty))

    def update(self, n: int) -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        if self.tty:
            self.bar.update(n)
            return
        now = time.perf_counter()
        if self.done == self.total or now - self.last >= 30 or self.done % max(self.total // 10, 1) < n:
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            line = f"{self.desc}: {self.done}/{self.total} samples, {rate:.1f} samples/s, ETA {eta:.0f} s"
            print(line, file=sys.stderr)
            self.last = now

    def close(self) -> None:
        self.bar.close()


__all__ = ["SampleProgress"]
