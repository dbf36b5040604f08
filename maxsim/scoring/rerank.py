"""Reranking, written once: documents ordered by MaxSim against one query.

Used by ``Model.rerank``, the HTTP ``/v1/rerank`` (and so the search page, which calls it).
Results have the fields of Jina's ``/v1/rerank`` results: ``index``, ``relevance_score`` and,
when the caller passes what to return, ``document``.

Two score scales:

- ``"maxsim"`` (default): the raw MaxSim, the sum over the query's tokens of each one's best
  cosine similarity with a document token. A query has 32 tokens, so scores run from about 2 to 22.
- ``"unit"``: that sum divided by the number of query tokens, i.e. the mean over query tokens of
  the best cosine similarity, floored at 0. The mean lies in [-1, 1]; it is below 0 only when the
  document's tokens, on average, point away from the query's, which ranks as irrelevant as an
  orthogonal document, hence the floor. 1 means every query token has an identical document
  token. The order is always that of the raw MaxSim (documents floored to 0 keep it too), so only
  the numbers change: a client's 0-1 threshold (Haystack's ``score_threshold``) applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from maxsim.scoring.maxsim import maxsim_scores
from maxsim.text.clean import InputError
from maxsim.types import TokenVectors

ScoreScale = Literal["maxsim", "unit"]
SCORE_SCALES: tuple[str, ...] = ("maxsim", "unit")


def check_top_n(top_n: int | None) -> None:
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise InputError(f"top_n must be a positive integer, got {top_n!r}")


def scale_scores(scores: np.ndarray, n_query_tokens: int, scale: ScoreScale = "maxsim") -> np.ndarray:
    """MaxSim sums on the requested scale (see the module docstring).

    >>> scale_scores(np.array([16.0, -3.0, 32.0]), 32, "unit").tolist()
    [0.5, 0.0, 1.0]
    """
    if scale == "maxsim":
        return scores
    if scale == "unit":
        return np.clip(scores / max(int(n_query_tokens), 1), 0.0, 1.0)
    raise InputError(f"score scale must be one of {list(SCORE_SCALES)}, got {scale!r}")


def rerank_vectors(
    query: TokenVectors,
    documents: Sequence[TokenVectors],
    *,
    top_n: int | None = None,
    scale: ScoreScale = "maxsim",
    returned: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Documents' token vectors ranked against the query's, best first (ties: lower index first).

    ``returned[i]``, when given, is put in result i's ``document`` field (the text itself in
    Python, ``{"text": ...}`` over HTTP).

    >>> q = np.eye(2, dtype=np.float32)
    >>> docs = [np.array([[1.0, 0.0]], np.float32), np.eye(2, dtype=np.float32)]
    >>> rerank_vectors(q, docs, scale="unit", returned=["a", "b"])
    [{'index': 1, 'relevance_score': 1.0, 'document': 'b'}, {'index': 0, 'relevance_score': 0.5, 'document': 'a'}]
    """
    check_top_n(top_n)
    if returned is not None and len(returned) != len(documents):
        raise InputError(f"{len(returned)} documents to return for {len(documents)} ranked")
    raw = maxsim_scores(query, documents)
    scores = scale_scores(raw, len(query), scale)
    order = np.argsort(-raw, kind="stable")[: top_n or len(documents)]
    results: list[dict[str, Any]] = []
    for i in order.tolist():
        r: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
        if returned is not None:
            r["document"] = returned[i]
        results.append(r)
    return results
