"""Stopping a run cleanly: SIGINT / SIGTERM finish the current step, write a checkpoint and return normally
(docs/training.md#faults). A second signal of the same kind stops at once: the last complete checkpoint is
still intact, because every save is atomic.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any


class StopRequests:
    """Context manager that turns SIGINT / SIGTERM into a flag the training loop reads after each step.

    Handlers are installed only in the main thread (Python allows no other), and the previous handlers are
    restored on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: bool = True) -> None:
        self.announce = announce
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received == name:  # the same signal twice: stop now
            raise KeyboardInterrupt
        if self.received is None and self.announce:
            print(
                f"\n{name} received: finishing this step and writing a checkpoint (send {name} again to stop at once)",
                file=sys.stderr,
                flush=True,
            )
        self.received = self.received or name

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


__all__ = ["StopRequests"]
