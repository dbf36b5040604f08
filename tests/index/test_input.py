"""Input at the edges: non-finite metadata, extreme vector scales, numpy integers, invalid Unicode
and a closed index give clear errors (or just work), and never damage what is stored."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maxsim.errors import InvalidArgumentError, MaxsimError
from maxsim.index import Index, IndexClosedError

from .conftest import DIM


@pytest.fixture()
def index(tmp_path, gen):
    ids = [f"d{i}" for i in range(20)]
    ix = Index.create(tmp_path / "idx", dim=DIM)
    ix.add_embeddings([gen.doc(x) for x in ids], ids=ids, metadata=[{"n": i, "lang": "en"} for i in range(20)])
    yield ix
    ix.close()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1.0, math.nan], {"deep": math.nan}])
def test_non_finite_metadata_is_refused_and_filters_keep_working(index, gen, bad):
    for call in (
        lambda: index.add_embeddings([gen.doc("x")], ids=["x"], metadata=[{"score": bad}]),
        lambda: index.update_embeddings(["d1"], metadata=[{"score": bad}]),
        lambda: index.upsert_embeddings([gen.doc("x")], ids=["x"], metadata=[{"score": bad}]),
    ):
        with pytest.raises(InvalidArgumentError, match=r"metadata\[0\]"):
            call()
    assert "x" not in index and index.get(["d1"])[0]["metadata"] == {"n": 1, "lang": "en"}
    assert index.count("json_extract(metadata, '$.n') < 5") == 5
    assert index.count({"lang": "en"}) == 20


def test_integers_beyond_64_bits_are_refused_in_metadata_and_filters(index, gen):
    with pytest.raises(InvalidArgumentError, match="64-bit"):
        index.add_embeddings([gen.doc("x")], ids=["x"], metadata=[{"n": 1 << 70}])
    with pytest.raises(ValueError, match="invalid filter"):
        index.count({"n": 1 << 70})
    assert len(index) == 20


@pytest.mark.parametrize("scale", [1e30, 1e-30, 3e38])
def test_vectors_at_extreme_scales_are_stored_as_their_directions(index, gen, scale):
    doc = gen.doc("scaled")
    with np.errstate(over="raise", under="ignore"):
        index.add_embeddings([(doc.astype(np.float64) * scale).astype(np.float32), doc], ids=["scaled", "plain"])
    stored, plain = index.get_embeddings(["scaled", "plain"])
    assert np.isfinite(stored).all()
    np.testing.assert_allclose(stored, plain, atol=1e-6)  # stored exactly as the unscaled vectors
    hits = index.search_embeddings([(gen.query_for(doc, seed=2) * scale).astype(np.float32)], k=1)
    assert hits[0][0]["id"] == "scaled"


def test_numpy_integer_k(index, gen):
    hits = index.search_embeddings(gen.query_for(gen.doc("d3"), seed=1), k=np.int64(5))
    assert len(hits[0]) == 5
    assert len(index.search_embeddings(gen.query_for(gen.doc("d3"), seed=1), k=np.int32(2))[0]) == 2


def test_lone_surrogates_are_refused_clearly(index, gen):
    with pytest.raises(InvalidArgumentError, match="not valid Unicode"):
        index.add_embeddings([gen.doc("x")], ids=["bad\ud800id"])
    with pytest.raises(InvalidArgumentError, match="not valid Unicode"):
        index.add_embeddings([gen.doc("x")], ids=["x"], texts=["bad \udc80 text"])
    with pytest.raises(InvalidArgumentError, match=r"metadata\[0\]"):
        index.add_embeddings([gen.doc("x")], ids=["x"], metadata=[{"k": "\ud800"}])
    with pytest.raises(InvalidArgumentError, match="not valid Unicode"):
        index.get(["\ud800"])
    assert len(index) == 20


def test_every_method_of_a_closed_index_raises_index_closed_error(tmp_path, gen):
    ix = Index.create(tmp_path / "idx", dim=DIM)
    ix.add_embeddings([gen.doc("a")], ids=["a"], metadata=[{"k": 1}])
    ix.close()
    ix.close()  # idempotent
    q = gen.query_for(gen.doc("a"), seed=1)
    calls = {
        "add_embeddings": lambda: ix.add_embeddings([gen.doc("b")], ids=["b"]),
        "update_embeddings": lambda: ix.update_embeddings(["a"], [gen.doc("a")]),
        "update_metadata": lambda: ix.update_embeddings(["a"], metadata=[{"k": 2}]),
        "upsert_embeddings": lambda: ix.upsert_embeddings([gen.doc("a")], ids=["a"]),
        "delete": lambda: ix.delete(["a"]),
        "get": lambda: ix.get(["a"]),
        "get_embeddings": lambda: ix.get_embeddings(["a"]),
        "count": lambda: ix.count(),
        "count_filter": lambda: ix.count({"k": 1}),
        "len": lambda: len(ix),
        "contains": lambda: "a" in ix,
        "search_embeddings": lambda: ix.search_embeddings(q, k=1),
        "info": lambda: ix.info(),
        "verify": lambda: ix.verify(),
        "optimize": lambda: ix.optimize(),
        "create_metadata_index": lambda: ix.create_metadata_index("k"),
    }
    for name, call in calls.items():
        with pytest.raises(IndexClosedError, match="closed"):
            call()
        assert issubclass(IndexClosedError, MaxsimError), name
    assert "closed" in repr(ix)
    with Index.open(tmp_path / "idx") as again:  # nothing was changed by the refused calls
        assert again.get(["a"])[0]["metadata"] == {"k": 1} and len(again) == 1
