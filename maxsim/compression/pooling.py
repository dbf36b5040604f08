"""Token pooling at index time: fewer stored vectors per document with little loss.

A document's token vectors are clustered hierarchically (Ward linkage, as in Clavié et al. 2024,
"Reducing the Footprint of Multi-Vector Retrieval with Minimal Performance Impact via Token
Pooling") into ``ceil(n / pool_factor)`` clusters; each cluster is stored as the mean of its
vectors, renormalised. Queries are never pooled. Ward clustering costs O(n^2) memory, so long
documents are pooled window by window (:data:`POOL_WINDOW` consecutive tokens), which also keeps
distant passages of a long document apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from maxsim.errors import InvalidArgumentError

#: Tokens clustered together at most (longer documents are pooled per window).
POOL_WINDOW = 256


def check_pool_factor(pool_factor: object) -> int:
    if isinstance(pool_factor, bool) or not isinstance(pool_factor, int) or pool_factor < 1:
        raise InvalidArgumentError(f"pool_factor must be a positive integer (1: no pooling), got {pool_factor!r}")
    return pool_factor


def pool_tokens(vectors: np.ndarray, pool_factor: int) -> np.ndarray:
    """[n, dim] unit vectors -> [ceil(n / pool_factor), dim] unit vectors (order: each cluster at
    its first token). ``pool_factor`` 1 returns the input."""
    check_pool_factor(pool_factor)
    n = len(vectors)
    if pool_factor == 1 or n <= 1:
        return vectors
    if n > POOL_WINDOW:
        parts = [pool_tokens(vectors[s : s + POOL_WINDOW], pool_factor) for s in range(0, n, POOL_WINDOW)]
        return np.concatenate(parts)
    from scipy.cluster.hierarchy import fcluster, linkage

    n_clusters = math.ceil(n / pool_factor)
    x = np.asarray(vectors, dtype=np.float64)
    labels = fcluster(linkage(x, method="ward"), t=n_clusters, criterion="maxclust")
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    sums = np.zeros((len(first), x.shape[1]))
    np.add.at(sums, inverse, x)
    sums = sums[np.argsort(first, kind="stable")]  # clusters in order of their first token
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def pool_documents(documents: Sequence[np.ndarray], pool_factor: int) -> list[np.ndarray]:
    """:func:`pool_tokens` of every document."""
    return [pool_tokens(d, pool_factor) for d in documents]
