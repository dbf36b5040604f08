"""How documents map onto Qdrant points: stable point ids, vector names, the multivector cap,
and the manifest that records a collection's layout."""

from __future__ import annotations

import uuid

import numpy as np

from maxsim.types import TokenVectors

#: Namespace of the uuid5 point ids: ``uuid5(MAXSIM_NAMESPACE, doc_id)``. Never change it.
MAXSIM_NAMESPACE = uuid.UUID("6f1c3a52-8a4e-5b1f-9d7e-2c0b7a4d9e31")

#: Qdrant's limit on the number of floats in one multivector.
MULTIVECTOR_MAX_FLOATS = 1_048_576

MAXSIM_VECTOR = "maxsim"
MUVERA_VECTOR = "muvera"
POOLED_VECTOR = "pooled"

MANIFEST_KEY = "maxsim"
MANIFEST_FORMAT = "maxsim-qdrant"
MANIFEST_VERSION = 1


def point_id(doc_id: str, part: int = 0) -> str:
    """Stable Qdrant point id of part ``part`` of the document ``doc_id`` (a UUID string).

    >>> point_id("doc-1") == point_id("doc-1")
    True
    >>> point_id("doc-1") != point_id("doc-1", part=1)
    True
    """
    name = doc_id if part == 0 else f"{doc_id}\x00part:{part}"
    return str(uuid.uuid5(MAXSIM_NAMESPACE, name))


def pool_tokens(vectors: TokenVectors, max_tokens: int) -> np.ndarray:
    """Mean-pool runs of consecutive tokens so that at most ``max_tokens`` remain; rows re-normalised.

    >>> pool_tokens(np.eye(4, dtype=np.float32), 2).shape
    (2, 4)
    """
    n = len(vectors)
    if n <= max_tokens:
        return vectors
    edges = np.linspace(0, n, max_tokens + 1).round().astype(np.int64)
    pooled = np.add.reduceat(vectors, edges[:-1], axis=0) / np.diff(edges)[:, None]
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def max_tokens_for(dim: int) -> int:
    """Tokens that fit one Qdrant multivector at ``dim`` (8,192 at 128)."""
    return MULTIVECTOR_MAX_FLOATS // dim
