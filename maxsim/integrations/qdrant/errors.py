"""Errors of the Qdrant store that the shared classes of :mod:`maxsim.errors` do not cover.

Bad arguments raise :class:`~maxsim.errors.InvalidArgumentError` /
:class:`~maxsim.errors.InvalidTypeError`, unknown and duplicate ids
:class:`~maxsim.errors.UnknownIdError` / :class:`~maxsim.errors.DuplicateIdError`, as every
store does. These name what is particular to a Qdrant collection.
"""

from __future__ import annotations

from maxsim.errors import MaxsimError


class CollectionError(MaxsimError, ValueError):
    """The collection is missing, already exists, has another layout or model, or was not made by maxsim."""


class QdrantServerError(MaxsimError, ConnectionError):
    """The Qdrant server could not be reached (after the retries, for writes) or refused the request."""


class MissingDependencyError(MaxsimError, ImportError):
    """qdrant-client or qdrant-edge-py is not installed."""
