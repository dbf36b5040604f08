"""Errors raised by the index. All derive from IndexError_ (and so from MaxsimError)."""

from __future__ import annotations

from maxsim.errors import MaxsimError


class IndexError_(MaxsimError):  # noqa: N801 - avoid shadowing the builtin IndexError
    """Base class of every error the index raises on purpose."""


class IndexNotFoundError(IndexError_, FileNotFoundError):
    """No index at the given path."""


class IndexExistsError(IndexError_, FileExistsError):
    """Index.create on a path that already holds something."""


class IndexLockedError(IndexError_):
    """Another writer holds the index's write lock."""


class IndexCorruptedError(IndexError_):
    """A file of the index is missing, truncated, or does not match its checksum."""


class IndexReadOnlyError(IndexError_):
    """A write on an index opened with readonly=True."""


class IndexClosedError(IndexError_, ValueError):
    """A method called on an index after close()."""


class IndexWriteError(IndexError_, OSError):
    """A write failed for a reason outside the index (an I/O error, a full disk); nothing of it was
    committed. The message names the cause; the index is unchanged and the writer can retry."""


class DiskFullError(IndexWriteError):
    """A write ran out of disk space (ENOSPC, or SQLite's "database or disk is full"); nothing of
    it was committed and its partial files were removed."""


class MaintenanceWarning(RuntimeWarning):
    """The automatic merge/re-training after a committed write failed. The write itself is durable
    (its ids are in ``ids``); maintenance is retried after the next write or by ``optimize()``."""

    def __init__(self, message: str, ids: list[str] | None = None, cause: BaseException | None = None):
        super().__init__(message)
        self.ids = list(ids or [])
        self.cause = cause
