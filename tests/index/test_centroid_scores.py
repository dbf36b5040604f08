"""Centroid scores through bfloat16 (``SearchConfig(centroid_scores=...)``): exact widening, small
score error, and searches that return the same documents with the same (float32) scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maxsim.errors import InvalidArgumentError
from maxsim.index import Index, SearchConfig
from maxsim.index.centroid_scores import BF16_MIN_CENTROIDS, score_rows, use_bf16, widen_bf16
from maxsim.index.search import prepare_query

from .conftest import DIM, unit


class _Table:
    def __init__(self, centroids: np.ndarray):
        self.centroids = centroids


def test_widening_is_exact():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 7)).astype(np.float32)).to(torch.bfloat16)
    out = np.empty((300, 7), dtype=np.float32)
    widen_bf16(x.view(torch.int16).numpy().view(np.uint16), out)
    assert np.array_equal(out, x.float().numpy())


def test_bfloat16_scores_are_close_and_pick_nearly_the_same_centroids():
    rng = np.random.default_rng(1)
    table = _Table(unit(rng.normal(size=(40_000, DIM))))  # more than one BF16_ROWS block
    q = unit(rng.normal(size=(32, DIM)))
    exact = table.centroids @ q.T
    out = np.empty_like(exact)
    score_rows(table, q, 0, len(table.centroids), out, bf16=True)
    assert np.abs(out - exact).max() < 8e-3
    assert not np.array_equal(out, exact)  # it did go through bfloat16
    a = prepare_query(q, table, 8, centroid_scores="float32")
    b = prepare_query(q, table, 8, centroid_scores="bfloat16")
    np.testing.assert_allclose(a.st, exact, atol=1e-5)
    overlap = np.mean([len(set(x) & set(y)) / 8 for x, y in zip(a.probe_c, b.probe_c, strict=True)])
    assert overlap >= 0.9
    # a range split between threads gives the same scores as one pass
    c = prepare_query(q, table, 8, threads=2, centroid_scores="bfloat16")
    assert np.array_equal(c.st, b.st) and np.array_equal(c.probe_c, b.probe_c)


def test_auto_is_float32_for_small_tables_and_modes_are_checked():
    assert not use_bf16("auto", BF16_MIN_CENTROIDS - 1)
    assert use_bf16("bfloat16", 10) and not use_bf16("float32", 10**6)
    with pytest.raises(InvalidArgumentError, match="centroid_scores.*'half'"):
        SearchConfig(centroid_scores="half")


def test_search_through_bfloat16_returns_the_same_documents_and_exact_scores(tmp_path, gen):
    ids = [f"d{i}" for i in range(400)]
    docs = [gen.doc(i) for i in ids]
    with Index.create(tmp_path / "idx", dim=DIM, auto_optimize=False) as index:
        index.add_embeddings(docs, ids=ids)
        queries = [gen.query_for(docs[i], seed=i) for i in range(0, 400, 40)]
        kw = dict(exact=False, nprobe=4, n_candidates=200, n_exact=50)
        f32 = index.search_embeddings(queries, k=10, config=SearchConfig(centroid_scores="float32", **kw))
        b16 = index.search_embeddings(queries, k=10, config=SearchConfig(centroid_scores="bfloat16", **kw))
    same_top = 0
    for a, b in zip(f32, b16, strict=True):
        same_top += a[0]["id"] == b[0]["id"]
        score_a = {h["id"]: h["score"] for h in a}
        for h in b:  # stage 3 scores in float32 either way: a document found by both scores alike
            if h["id"] in score_a:
                assert h["score"] == pytest.approx(score_a[h["id"]], abs=1e-5)
    assert same_top == len(queries)
