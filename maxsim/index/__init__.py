"""The on-disk late-interaction index: `Index`, its errors and its file format."""

from __future__ import annotations

from maxsim.index.errors import (
    IndexCorruptedError,
    IndexError_,
    IndexExistsError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
)
from maxsim.index.index import Index

__all__ = [
    "Index",
    "IndexCorruptedError",
    "IndexError_",
    "IndexExistsError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReadOnlyError",
]
