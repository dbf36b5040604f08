"""Turning failures of the machine (full disk, I/O errors) into index errors that name the cause.

A write touches two kinds of storage: array files (numpy, ``os``) and the SQLite catalog. Both
report a full disk in their own words (``OSError`` errno ENOSPC; ``sqlite3.OperationalError``
"database or disk is full"); callers see one :class:`DiskFullError` either way, and
:class:`IndexWriteError` for other I/O failures. Errors that are bugs (bad SQL, constraint
violations) are left as they are.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from maxsim.index.errors import DiskFullError, IndexCorruptedError, IndexLockedError, IndexWriteError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


def os_error(exc: OSError, path: Path | str, doing: str) -> IndexWriteError:
    """The index error for an OSError raised while ``doing`` (e.g. "writing a segment") at ``path``."""
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return DiskFullError(
            exc.errno,
            f"disk full: no space left on the device while {doing} at {path}; "
            "nothing was committed (free some space and retry)",
        )
    return IndexWriteError(exc.errno, f"I/O error while {doing} at {path}: {reason}; nothing was committed")


def sqlite_error(exc: sqlite3.Error, path: Path | str) -> Exception:
    """The index error for a SQLite error on the catalog at ``path`` (``exc`` itself for a bug)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name == "SQLITE_FULL" or "disk is full" in str(exc):
        return DiskFullError(
            errno.ENOSPC,
            f"disk full: the index catalog {path} could not be written ({exc}); "
            "nothing was committed (free some space and retry)",
        )
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")):
        return IndexWriteError(errno.EIO, f"I/O error on the index catalog {path} ({exc}); nothing was committed")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return IndexLockedError(f"the index catalog {path} stayed locked by another process ({exc})")
    if (
        name in ("SQLITE_CORRUPT", "SQLITE_NOTADB")
        or isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, sqlite3.OperationalError | sqlite3.ProgrammingError | sqlite3.IntegrityError)
    ):
        return IndexCorruptedError(f"index catalog cannot be read ({exc}): {path}")
    return exc
