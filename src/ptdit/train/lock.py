"""The run-folder lock: one training process writes into a run folder at a time.

`OUT/.lock` is locked with `flock`, which the operating system releases when the holding process ends, however it
ends (SIGKILL and power loss included), so a crashed run never leaves a lock that sticks. The file records the
holder's PID and host for the message a second run gets.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

LOCK_NAME = ".lock"


class RunFolderBusyError(OSError):
    """Another process is training into (or clearing) this run folder."""


class RunLock:
    """Exclusive lock on a run folder; use as a context manager, or `acquire()` / `release()`.

    Raises RunFolderBusyError naming the holder when another live process holds it.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderBusyError(
                f"{self.path.parent} is in use by another training run ({holder}); wait for it to finish, "
                "stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_not_busy(out_dir: str | os.PathLike[str]) -> None:
    """Raises RunFolderBusyError if a live process holds the lock of `out_dir` (a folder without a lock is free)."""
    if (Path(out_dir) / LOCK_NAME).is_file():
        RunLock(out_dir).acquire().release()


__all__ = ["LOCK_NAME", "RunFolderBusyError", "RunLock", "check_not_busy"]
