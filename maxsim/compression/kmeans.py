"""Spherical k-means for token vectors, backed by faiss."""

from __future__ import annotations

import math

import numpy as np

#: Upper bound on centroids: centroid ids are stored as uint16 up to this many.
MAX_CENTROIDS = 1 << 16
#: Centroids per square root of the token count (PLAID uses 16).
CENTROIDS_PER_SQRT_TOKEN = 16.0
#: Bytes of centroid table allowed per token when the caller gives the table's bytes per
#: centroid: a small collection then gets fewer centroids, so that the table (a fixed cost)
#: stays a small share of the index (the per-token data is about 34 bytes at 2 bits, dim 128).
TABLE_BYTES_PER_TOKEN = 2.0


def choose_n_centroids(n_tokens: int, centroid_bytes: float = 0.0) -> int:
    """Number of centroids for a collection of ``n_tokens`` token vectors.

    A power of two near ``16 * sqrt(n_tokens)`` (PLAID's rule: on real embeddings 4 * sqrt lost
    7 points of recall@10 to coarser centroid interaction), never more than n_tokens / 8, at
    most MAX_CENTROIDS, at least 1. With ``centroid_bytes`` (the stored size of one centroid),
    also at most the largest power of two whose table fits in TABLE_BYTES_PER_TOKEN bytes per
    token (64-byte centroids: 2048 for 100k tokens, where PLAID's rule gives 4096; from about
    260k tokens on, PLAID's rule is the smaller one).

    >>> choose_n_centroids(1_000_000), choose_n_centroids(100), choose_n_centroids(1)
    (16384, 8, 1)
    >>> choose_n_centroids(100_000), choose_n_centroids(100_000, 64), choose_n_centroids(302_845, 64)
    (4096, 2048, 8192)
    """
    if n_tokens <= 0:
        raise ValueError("cannot choose centroids for an empty collection")
    target = CENTROIDS_PER_SQRT_TOKEN * math.sqrt(n_tokens)
    k = 1 << max(0, round(math.log2(target)))
    k = min(k, max(1, n_tokens // 8), MAX_CENTROIDS)
    if centroid_bytes > 0:
        k = min(k, max(1, int(TABLE_BYTES_PER_TOKEN * n_tokens / centroid_bytes)))
    return 1 << int(math.floor(math.log2(k)))


def train_centroids(
    sample: np.ndarray, n_centroids: int, *, niter: int = 10, seed: int = 0, max_points_per_centroid: int = 64
) -> np.ndarray:
    """Train ``n_centroids`` unit-norm centroids on ``sample`` float32 [n, dim]; returns [k, dim].

    faiss subsamples to ``max_points_per_centroid * n_centroids`` points. If the sample has fewer
    distinct points than ``n_centroids``, fewer centroids are returned.
    """
    import faiss  # noqa: PLC0415 - heavy import kept off `import maxsim`

    if sample.ndim != 2 or len(sample) == 0:
        raise ValueError(f"k-means needs a non-empty 2-D sample, got shape {sample.shape}")
    x = np.ascontiguousarray(sample, dtype=np.float32)
    k = max(1, min(int(n_centroids), len(x)))
    if k == len(x):
        centroids = x.copy()
    else:
        km = faiss.Kmeans(
            x.shape[1],
            k,
            niter=niter,
            seed=seed,
            spherical=True,
            verbose=False,
            max_points_per_centroid=max_points_per_centroid,
            min_points_per_centroid=1,
        )
        km.train(x)
        centroids = np.asarray(km.centroids, dtype=np.float32).copy()
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids /= np.maximum(norms, 1e-12)
    return centroids


def centroid_index(centroids: np.ndarray):
    """A faiss exact inner-product index over the centroids (blocked BLAS: at the centroid counts
    used here it beats graph indexes, which were measured slower up to 8k centroids)."""
    import faiss  # noqa: PLC0415

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index


def assign_centroids(x: np.ndarray, centroids: np.ndarray, chunk: int = 65536, index=None) -> np.ndarray:
    """Nearest centroid (max inner product) for each row of ``x`` [n, dim]; returns int64 [n]."""
    index = index if index is not None else centroid_index(centroids)
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        _, nearest = index.search(np.ascontiguousarray(x[start : start + chunk], dtype=np.float32), 1)
        out[start : start + chunk] = nearest[:, 0]
    return out
