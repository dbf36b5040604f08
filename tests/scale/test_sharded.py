"""Sharded index: one codec, routing by id, exact merged search equal to one index's."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.errors import DuplicateIdError, UnknownIdError
from maxsim.index import Index, SearchConfig
from maxsim.index.build import install_codec
from maxsim.index.sharded import ShardedIndex, shard_dir, shard_of
from maxsim.store import VectorStore
from tests.scale.test_build import DIM, make_docs


@pytest.fixture
def docs():
    return make_docs(700, seed=3)


def test_sharded_exact_search_equals_one_index_with_the_same_codec(tmp_path, docs):
    ids = [f"d{i}" for i in range(len(docs))]
    metas = [{"g": i % 4} for i in range(len(docs))]
    sharded = ShardedIndex.create(tmp_path / "s", 3, dim=DIM)
    assert isinstance(sharded, VectorStore)
    sharded.add_embeddings(docs, ids=ids, metadata=metas)
    codecs = [s._refresh().codec for s in sharded.shards]
    assert all(np.array_equal(c.centroids, codecs[0].centroids) for c in codecs)  # one codec, in every shard
    sizes = sharded.info()["documents_per_shard"]
    assert sum(sizes) == 700 and min(sizes) > 150
    for i in ids[:50]:  # each id lives in exactly its routed shard
        assert i in sharded.shards[shard_of(i, 3)] and sum(i in s for s in sharded.shards) == 1

    single = Index.create(tmp_path / "one", dim=DIM, auto_optimize=False)
    install_codec(single, codecs[0], 1, None)
    single.add_embeddings(docs, ids=ids, metadata=metas)
    rng = np.random.default_rng(0)
    queries = [docs[int(j)][:5] + 0.1 * rng.normal(size=(5, DIM)).astype(np.float32) for j in rng.integers(0, 700, 12)]
    exact = SearchConfig(exact=True)
    for flt in (None, {"g": 1}):
        a = sharded.search_embeddings(queries, k=15, filter=flt, config=exact)
        b = single.search_embeddings(queries, k=15, filter=flt, config=exact)
        assert [[h["id"] for h in r] for r in a] == [[h["id"] for h in r] for r in b]
        assert np.allclose([h["score"] for r in a for h in r], [h["score"] for r in b for h in r], atol=1e-5)
    # the approximate search finds what the exact one finds, most of the time
    approx = sharded.search_embeddings(queries, k=10)
    ex = sharded.search_embeddings(queries, k=10, config=exact)
    overlap = np.mean([len({h["id"] for h in x} & {h["id"] for h in y}) / 10 for x, y in zip(approx, ex, strict=True)])
    assert overlap >= 0.8
    single.close()
    sharded.close()


def test_writes_route_to_the_shard_of_the_id(tmp_path, docs):
    with ShardedIndex.create(tmp_path / "s", 2, dim=DIM) as s:
        s.add_embeddings(docs[:100], ids=[f"d{i}" for i in range(100)])
        with pytest.raises(DuplicateIdError):
            s.add_embeddings(docs[100:102], ids=["new", "d5"])
        assert "new" not in s.shards[shard_of("new", 2)]  # checked in every shard before writing
        with pytest.raises(UnknownIdError):
            s.delete(["d1", "nope"])
        assert len(s) == 100
        assert s.delete(["d1", "nope"], missing_ok=True) == 1
        s.update_embeddings(["d2"], [docs[300]], texts=["two"], metadata=[{"x": 1}])
        assert s.get(["d2", "d3"]) == [
            {"id": "d2", "text": "two", "metadata": {"x": 1}},
            {"id": "d3", "text": None, "metadata": None},
        ]
        assert np.allclose(s.get_embeddings(["d2"])[0].shape, docs[300].shape)
        s.upsert_embeddings([docs[301], docs[302]], ids=["d3", "fresh"])
        assert len(s) == 100 and s.count() == sum(len(x) for x in s.shards)
        s.optimize()
    with ShardedIndex.open(tmp_path / "s", readonly=True) as ro:
        assert len(ro) == 100 and "fresh" in ro.shards[shard_of("fresh", 2)]
        assert (tmp_path / "s" / "shards.json").exists() and shard_dir(tmp_path / "s", 1).is_dir()


def test_sharded_index_with_a_refinement_plane(tmp_path, docs):
    ids = [f"d{i}" for i in range(300)]
    with pytest.raises(ValueError, match="refine_bits"):
        ShardedIndex.create(tmp_path / "bad", 2, dim=DIM, nbits=4, refine_bits=2)
    with ShardedIndex.create(tmp_path / "s", 2, dim=DIM, refine_bits=2) as sharded:
        sharded.add_embeddings(docs[:300], ids=ids)
        assert sharded.refine_bits == 2 and sharded.info()["refine_bits"] == 2
        codecs = [s._refresh().codec for s in sharded.shards]
        assert all(c.refine_bits == 2 and np.array_equal(c.centroids, codecs[0].centroids) for c in codecs)
    with ShardedIndex.open(tmp_path / "s") as sharded:  # the plane is recorded, and used to re-rank
        assert sharded.refine_bits == 2
        q = docs[42][:5] / np.linalg.norm(docs[42][:5], axis=1, keepdims=True)
        fine = sharded.search_embeddings([q], k=5, config=SearchConfig(exact=True))[0]
        coarse = sharded.search_embeddings([q], k=5, config=SearchConfig(exact=True, refine=False))[0]
        assert fine[0]["id"] == "d42" and [h["score"] for h in fine] != [h["score"] for h in coarse]
