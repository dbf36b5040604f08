"""MaxSim: the late-interaction score.

score(q, d) = sum_i max_j <q_i, d_j>, with q [n_q, dim] and d [n_d, dim], rows L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maxsim.errors import InvalidArgumentError
from maxsim.types import TokenVectors


def maxsim_score(query: TokenVectors, document: TokenVectors) -> float:
    """MaxSim of one query against one document.

    >>> q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> d = np.array([[0.6, 0.8], [1.0, 0.0]], dtype=np.float32)
    >>> round(maxsim_score(q, d), 4)  # max(0.6, 1.0) + max(0.8, 0.0)
    1.8
    """
    _check_pair(query, document)
    if len(document) == 0:
        return 0.0
    return float((query @ document.T).max(axis=1).sum())


def maxsim_scores(query: TokenVectors, documents: Sequence[TokenVectors], chunk_tokens: int = 1 << 18) -> np.ndarray:
    """MaxSim of one query against many documents, vectorised.

    Documents are padded into blocks of at most ``chunk_tokens`` token rows so that memory stays
    bounded; padding rows score -inf so they never win a max. Returns float32 [n_docs].
    An empty document scores 0.
    """
    n = len(documents)
    out = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out
    for d in documents:
        _check_pair(query, d)
    lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=n)
    order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
    start = 0
    while start < n:
        max_len = 0
        stop = start
        while stop < n:
            cand = max(max_len, int(lengths[order[stop]]))
            if stop > start and cand * (stop - start + 1) > chunk_tokens:
                break
            max_len = cand
            stop += 1
        idx = order[start:stop]
        if max_len > 0:
            block = np.zeros((len(idx), max_len, query.shape[1]), dtype=np.float32)
            valid = np.zeros((len(idx), max_len), dtype=bool)
            for row, i in enumerate(idx):
                block[row, : lengths[i]] = documents[i]
                valid[row, : lengths[i]] = True
            sims = np.einsum("qd,btd->bqt", query.astype(np.float32, copy=False), block)
            sims = np.where(valid[:, None, :], sims, -np.inf)
            best = sims.max(axis=2)
            scores = best.sum(axis=1)
            scores[lengths[idx] == 0] = 0.0
            out[idx] = scores
        start = stop
    return out


def maxsim_token_matches(query: TokenVectors, document: TokenVectors) -> tuple[np.ndarray, np.ndarray]:
    """For each query token, the document token that gives its maximum, and that maximum.

    The late-interaction explanation: returns (argmax [n_q] int64, max similarity [n_q] float32).
    """
    _check_pair(query, document)
    if len(document) == 0:
        return np.full(len(query), -1, dtype=np.int64), np.zeros(len(query), dtype=np.float32)
    sims = query @ document.T
    return sims.argmax(axis=1).astype(np.int64), sims.max(axis=1).astype(np.float32)


def _check_pair(query: np.ndarray, document: np.ndarray) -> None:
    if query.ndim != 2 or document.ndim != 2:
        raise InvalidArgumentError(
            f"MaxSim needs 2-D arrays [n_tokens, dim]; got query {query.shape}, document {document.shape}"
        )
    if query.shape[1] != document.shape[1]:
        raise InvalidArgumentError(f"query and document dims differ: {query.shape[1]} != {document.shape[1]}")
