"""The single-writer lock of an index directory: a POSIX record lock on its ``write.lock`` file.

Any number of readers search while one writer writes; a second writer is refused with the pid of
the holder. POSIX record locks (``fcntl.lockf``) belong to a process, not to an open file: the
kernel drops them when the holder dies, a forked child does not inherit them (so a child that
outlives a killed writer never blocks the next one), and ``F_GETLK`` names the live holder.

Two quirks of record locks are handled here: they never conflict within one process (so a
process-wide table refuses a second writer object in the same process), and closing *any*
descriptor of the file drops the process's lock (so this module is the only code that opens the
lock file, and never while its process holds the lock).
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
from pathlib import Path

from maxsim.index.errors import IndexLockedError

# (st_dev, st_ino) of the lock files this process holds -> the WriterLock holding it
_HELD: dict[tuple[int, int], WriterLock] = {}
_HELD_MUTEX = threading.Lock()


def _holder_pid(fd: int) -> int | None:
    """The pid holding a conflicting record lock on ``fd`` (F_GETLK), or None."""
    # struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid
    fmt = "hhqqi"
    try:
        got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0) + b"\0" * 4)
        l_type, _, _, _, pid = struct.unpack(fmt, got[: struct.calcsize(fmt)])
    except (OSError, struct.error):
        return None
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


class WriterLock:
    """Taken by :meth:`acquire` (idempotent), released by :meth:`release` or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None
        self._pid = 0

    @property
    def held(self) -> bool:
        return self._fd is not None and self._pid == os.getpid()

    def acquire(self, index_path: Path) -> bool:
        """Take the lock; True if it was newly taken, False if this object already held it."""
        if self._fd is not None and self._pid != os.getpid():
            # a forked child: the parent's lock is not ours (record locks are not inherited)
            self._fd, self._key = None, None
        if self._fd is not None:
            return False
        with _HELD_MUTEX:
            try:
                st = os.stat(self.path)
                key: tuple[int, int] | None = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                key = None
            if key is not None and key in _HELD and _HELD[key].held:
                raise IndexLockedError(
                    f"index {index_path} is already open for writing by another Index object in this process "
                    f"(pid {os.getpid()}); close it first, or open this one with readonly=True to search only"
                )
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _holder_pid(fd)
                if holder is None:
                    holder_text = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                else:
                    holder_text = str(holder)
                os.close(fd)
                raise IndexLockedError(
                    f"index {index_path} is already open for writing by another writer (pid {holder_text}); "
                    "close that writer first, or open this one with readonly=True to search only"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)  # for humans; F_GETLK is the authority
            st = os.fstat(fd)
            self._fd, self._key, self._pid = fd, (st.st_dev, st.st_ino), os.getpid()
            _HELD[self._key] = self
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        with _HELD_MUTEX:
            if self._pid == os.getpid():
                if _HELD.get(self._key) is self:  # type: ignore[arg-type]
                    del _HELD[self._key]  # type: ignore[arg-type]
                os.close(self._fd)  # drops the record lock
            self._fd, self._key = None, None
