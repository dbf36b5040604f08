"""Qdrant store: MaxSim multivector collections with a single-vector first stage.

``pip install 'maxsim[qdrant]'``. The package, one idea per module:

- :mod:`~maxsim.integrations.qdrant.store`: :class:`QdrantStore`, the store contract of
  :mod:`maxsim.store` on a Qdrant collection;
- :mod:`~maxsim.integrations.qdrant.settings`: :class:`QdrantSettings`, the collection layout;
- :mod:`~maxsim.integrations.qdrant.layout`: point ids, vector names, the multivector cap;
- :mod:`~maxsim.integrations.qdrant.filters`: the metadata filter language;
- :mod:`~maxsim.integrations.qdrant.retry`: retries with back-off on transient errors;
- :mod:`~maxsim.integrations.qdrant.engines`: qdrant-client (memory, directory, server) and
  Qdrant Edge.
"""

from __future__ import annotations

from maxsim.integrations.qdrant.filters import parse_filter
from maxsim.integrations.qdrant.layout import (
    MAXSIM_NAMESPACE,
    MULTIVECTOR_MAX_FLOATS,
    max_tokens_for,
    point_id,
    pool_tokens,
)
from maxsim.integrations.qdrant.retry import RetryPolicy, with_retry
from maxsim.integrations.qdrant.settings import QdrantSettings
from maxsim.integrations.qdrant.store import EncoderModel, QdrantStore

__all__ = [
    "MAXSIM_NAMESPACE",
    "MULTIVECTOR_MAX_FLOATS",
    "EncoderModel",
    "QdrantSettings",
    "QdrantStore",
    "RetryPolicy",
    "max_tokens_for",
    "parse_filter",
    "point_id",
    "pool_tokens",
    "with_retry",
]
