"""Token pooling at index time, and search settings tuned for a recall target."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.compression.pooling import pool_tokens
from maxsim.errors import InvalidArgumentError
from maxsim.index import Index, IndexReadOnlyError, SearchConfig

from .conftest import DIM, Clustered, unit


def test_pool_tokens_merges_near_duplicates():
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(3, DIM)))
    x = unit(np.repeat(centres, 2, axis=0) + 0.01 * rng.normal(size=(6, DIM)))  # three tight pairs
    pooled = pool_tokens(x, 2)
    assert pooled.shape == (3, DIM)
    assert np.allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    pair_means = unit(x.reshape(3, 2, DIM).sum(axis=1))
    assert np.allclose(pooled, pair_means, atol=1e-5)  # each pair became its renormalised mean, in order
    assert pool_tokens(unit(rng.normal(size=(301, DIM))), 3).shape == (101, DIM)  # ceil(n / factor), windowed
    assert pool_tokens(x, 1) is x


def test_index_with_pool_factor(tmp_path, gen):
    docs = [gen.doc(i) for i in range(40)]
    with pytest.raises(InvalidArgumentError, match="pool_factor"):
        Index.create(tmp_path / "bad", dim=DIM, pool_factor=0)
    with Index.create(tmp_path / "idx", dim=DIM, pool_factor=2) as ix:
        ix.add_embeddings(docs, ids=[str(i) for i in range(40)])
    with Index.open(tmp_path / "idx") as ix:
        assert ix.pool_factor == 2
        assert ix.info()["tokens"] == sum((len(d) + 1) // 2 for d in docs)
        hits = ix.search_embeddings([gen.query_for(docs[i], seed=i) for i in range(10)], k=1)
        assert sum(h[0]["id"] == str(i) for i, h in enumerate(hits)) >= 9
        assert len(ix.get_embeddings(["3"])[0]) == (len(docs[3]) + 1) // 2


def test_tune_reaches_target_and_is_the_default(tmp_path):
    gen = Clustered(n_topics=300, noise=0.9)
    docs = [gen.doc(i, 20, 50) for i in range(700)]
    queries = [gen.query_for(docs[i * 7], seed=i) for i in range(40)]
    with Index.create(tmp_path / "idx", dim=DIM) as ix:
        ix.add_embeddings(docs, ids=[str(i) for i in range(len(docs))])
        assert ix.search_settings() is None
        with pytest.raises(InvalidArgumentError, match="target_recall"):
            ix.tune(queries, target_recall=1.5)
        tuned = ix.tune(queries, target_recall=0.95)
        assert tuned.reached and tuned.recall >= 0.95 and tuned.trials >= 2
    with Index.open(tmp_path / "idx", readonly=True) as ro:
        assert ro.search_settings() == tuned  # stored with the index
        cfg = ro.default_search_config(10)
        assert (cfg.nprobe, cfg.n_candidates, cfg.n_exact) == (
            tuned.nprobe,
            10 * tuned.candidates_per_k,
            10 * tuned.exact_per_k,
        )
        truth = ro.search_embeddings(queries, k=10, config=SearchConfig(exact=True))
        found = ro.search_embeddings(queries, k=10)  # no config: the tuned settings
        recall = np.mean([len({h["id"] for h in f} & {h["id"] for h in t}) / 10 for f, t in zip(found, truth)])
        assert recall == pytest.approx(tuned.recall, abs=1e-9)
        with pytest.raises(IndexReadOnlyError):
            ro.tune(queries)
