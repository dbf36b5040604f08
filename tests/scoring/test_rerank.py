"""Reranking, written once in maxsim.scoring: order, ties, top_n, returned documents, the 0-1 scale."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.scoring.rerank import rerank_vectors, scale_scores
from maxsim.text.clean import InputError


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def vectors():
    rng = np.random.default_rng(7)
    query = _unit(rng.normal(size=(32, 16)))
    docs = [_unit(rng.normal(size=(n, 16))) for n in (5, 40, 1, 12, 40)]
    docs[4] = docs[1].copy()  # a tie with document 1
    return query, docs


def _brute_force(query, doc):
    return sum(max(float(q @ d) for d in doc) for q in query)


def test_order_scores_and_ties(vectors):
    query, docs = vectors
    out = rerank_vectors(query, docs)
    want = [_brute_force(query, d) for d in docs]
    assert [r["index"] for r in out] == sorted(range(len(docs)), key=lambda i: (-want[i], i))
    for r in out:
        assert r["relevance_score"] == pytest.approx(want[r["index"]], abs=1e-4)
        assert "document" not in r
    assert [r["index"] for r in out].index(1) < [r["index"] for r in out].index(4)  # tie: lower index first


def test_top_n_and_returned(vectors):
    query, docs = vectors
    names = [f"doc{i}" for i in range(len(docs))]
    out = rerank_vectors(query, docs, top_n=2, returned=names)
    assert len(out) == 2 and all(r["document"] == names[r["index"]] for r in out)
    assert len(rerank_vectors(query, docs, top_n=100)) == len(docs)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InputError, match="top_n must be a positive integer"):
            rerank_vectors(query, docs, top_n=bad)
    with pytest.raises(InputError, match="documents to return"):
        rerank_vectors(query, docs, returned=names[:2])


def test_unit_scale_is_the_mean_best_cosine_floored_at_zero(vectors):
    query, docs = vectors
    raw = rerank_vectors(query, docs)
    unit = rerank_vectors(query, docs, scale="unit")
    assert [r["index"] for r in unit] == [r["index"] for r in raw]  # same order
    for u, r in zip(unit, raw, strict=True):
        assert u["relevance_score"] == pytest.approx(max(r["relevance_score"] / 32, 0.0), abs=1e-6)
        assert 0.0 <= u["relevance_score"] <= 1.0
    assert rerank_vectors(query, [query], scale="unit")[0]["relevance_score"] == pytest.approx(1.0, abs=1e-5)
    q2 = np.eye(2, dtype=np.float32)
    away = _unit(np.array([[-1.0, -1.0]])), _unit(np.array([[-1.0, -0.2]]))  # raw -1.41 and -1.18
    out = rerank_vectors(q2, list(away), scale="unit")
    assert [r["relevance_score"] for r in out] == [0.0, 0.0] and [r["index"] for r in out] == [1, 0]  # raw order kept
    with pytest.raises(InputError, match="score scale"):
        scale_scores(np.zeros(1), 32, "percent")


def test_model_rerank_uses_it(default_model):
    docs = ["Berlin is the capital of Germany.", "Bananas are yellow.", "Die Hauptstadt ist Berlin."]
    raw = default_model.rerank("capital of Germany", docs)
    unit = default_model.rerank("capital of Germany", docs, scale="unit", return_documents=False)
    assert [r["index"] for r in raw] == [r["index"] for r in unit]
    for u, r in zip(unit, raw, strict=True):
        assert u["relevance_score"] == pytest.approx(max(r["relevance_score"] / 32, 0.0), abs=1e-6)
        assert "document" not in u and r["document"] == docs[r["index"]]
