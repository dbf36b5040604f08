"""The single-writer lock of an index directory: an flock on its ``LOCK`` file.

Any number of readers search while one writer writes; a second writer is refused with the pid of
the holder. The lock dies with the process that holds it, so a killed writer never blocks the
next one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from maxsim.index.errors import IndexLockedError


class WriterLock:
    """Taken by :meth:`acquire` (idempotent), released by :meth:`release` or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, index_path: Path) -> bool:
        """Take the lock; True if it was newly taken, False if this object already held it."""
        if self._fd is not None:
            return False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise IndexLockedError(
                f"index {index_path} is already open for writing by another writer (pid {holder}); "
                "close that writer first, or open this one with readonly=True to search only"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
