"""Centroid scores through bfloat16 (``SearchConfig(centroid_scores=...)``): order keys that keep
float order and value, small score error, stage 2 equal to the float32 kernel on the same values,
and searches that return the same documents with the same (float32) scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maxsim.errors import InvalidArgumentError
from maxsim.index import Index, SearchConfig, kernels
from maxsim.index.centroid_scores import BF16_MIN_CENTROIDS, keys_to_float32, score_rows, use_bf16
from maxsim.index.search import prepare_query

from .conftest import DIM, unit


class _Table:
    def __init__(self, centroids: np.ndarray):
        self.centroids = centroids


def _bf16(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)


def test_order_keys_keep_order_and_value():
    x = np.random.default_rng(0).normal(size=(300, 7)).astype(np.float32)
    x[0, :4] = [0.0, -0.0, np.inf, -np.inf]
    b = _bf16(x)
    keys = b.view(torch.int16).numpy().copy()
    kernels.order_keys(keys)
    values = b.float().numpy()
    assert np.array_equal(keys_to_float32(keys), values)  # exact: a key is a bfloat16 number
    flat_k, flat_v = keys.ravel().astype(np.int64), values.ravel()
    order = np.argsort(flat_k, kind="stable")
    assert np.all(np.diff(flat_v[order]) >= 0)  # integer order is float order
    back = keys.copy()
    kernels.order_keys(back)  # the mapping is its own inverse
    assert np.array_equal(back, b.view(torch.int16).numpy())


def test_stage_2_over_keys_equals_the_float32_kernel_on_the_same_values():
    rng = np.random.default_rng(2)
    scores = _bf16(rng.normal(size=(500, 32)))
    keys = scores.view(torch.int16).numpy().copy()
    kernels.order_keys(keys)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 40, size=60))]).astype(np.int64)
    codes = rng.integers(0, 500, size=int(offsets[-1])).astype(np.int64)
    docs = np.arange(60, dtype=np.int64)
    want = kernels.centroid_interaction(docs, offsets, codes, scores.float().numpy())
    got = kernels.centroid_interaction_keys(docs, offsets, codes, keys)
    assert np.array_equal(got, want)  # bit for bit, empty documents included
    assert (offsets[1:] == offsets[:-1]).any()


def test_bfloat16_scores_are_close_and_pick_nearly_the_same_centroids():
    rng = np.random.default_rng(1)
    table = _Table(unit(rng.normal(size=(40_000, DIM))))  # more than one BF16_ROWS block
    q = unit(rng.normal(size=(32, DIM)))
    exact = table.centroids @ q.T
    out = np.empty(exact.shape, dtype=np.int16)
    score_rows(table, q, 0, len(table.centroids), out, bf16=True)
    out = keys_to_float32(out)
    assert np.abs(out - exact).max() < 8e-3
    assert not np.array_equal(out, exact)  # it did go through bfloat16
    a = prepare_query(q, table, 8, centroid_scores="float32")
    b = prepare_query(q, table, 8, centroid_scores="bfloat16")
    np.testing.assert_allclose(a.st, exact, atol=1e-5)
    assert b.st.dtype == np.int16 and np.abs(keys_to_float32(b.st) - exact).max() < 8e-3
    # the probed centroids are the best by their own (bfloat16) scores, ties by id
    vals = keys_to_float32(b.st)
    for i in range(len(q)):
        want = np.lexsort((np.arange(len(vals)), -vals[:, i]))[:8]
        assert np.array_equal(b.probe_c[i], want)
        assert np.array_equal(b.probe_s[i], vals[want, i])
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
