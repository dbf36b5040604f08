"""The on-disk late-interaction index of token vectors: `Index`, its search settings, its errors.

For text (encode, then store or search) use ``maxsim.Index`` (:mod:`maxsim.collection`), which
is this index plus the default model.
"""

from __future__ import annotations

from maxsim.index.errors import (
    DiskFullError,
    IndexClosedError,
    IndexCorruptedError,
    IndexError_,
    IndexExistsError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexWriteError,
    MaintenanceWarning,
)
from maxsim.index.index import Index
from maxsim.index.search import SearchConfig

__all__ = [
    "DiskFullError",
    "Index",
    "IndexClosedError",
    "IndexCorruptedError",
    "IndexError_",
    "IndexExistsError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReadOnlyError",
    "IndexWriteError",
    "MaintenanceWarning",
    "SearchConfig",
]
