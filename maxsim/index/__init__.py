"""The on-disk late-interaction index of token vectors: `Index`, its search settings, its errors.

For text (encode, then store or search) use ``maxsim.Index`` (:mod:`maxsim.collection`), which
is this index plus the default model.
"""

from __future__ import annotations

from maxsim.index.errors import (
    IndexClosedError,
    IndexCorruptedError,
    IndexError_,
    IndexExistsError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
)
from maxsim.index.index import Index
from maxsim.index.search import SearchConfig

__all__ = [
    "Index",
    "IndexClosedError",
    "IndexCorruptedError",
    "IndexError_",
    "IndexExistsError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReadOnlyError",
    "SearchConfig",
]
