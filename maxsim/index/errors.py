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
