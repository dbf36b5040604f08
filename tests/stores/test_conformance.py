"""The store contract of :mod:`maxsim.store`, checked on every store (see conftest.py): the
on-disk Index and QdrantStore answer the same calls with the same return types and errors."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.errors import (
    DuplicateIdError,
    InvalidArgumentError,
    MaxsimError,
    MissingModelError,
    UnknownIdError,
)
from maxsim.store import VectorStore

from .conftest import DIM


def _filled(store, corpus, n=None):
    n = len(corpus.ids) if n is None else n
    # positional: embeddings, ids, texts, metadata
    assert store.add_embeddings(corpus.docs[:n], corpus.ids[:n], corpus.texts[:n], corpus.meta[:n]) == corpus.ids[:n]
    return store


def _ids(hits):
    return [h["id"] for h in hits]


def test_is_a_vector_store(store):
    assert isinstance(store, VectorStore)
    assert store.dim == DIM and store.model is None


def test_add_returns_ids_and_new_ids_are_fresh_strings(store, corpus):
    _filled(store, corpus, 4)
    new = store.add_embeddings(corpus.docs[4:6])
    assert isinstance(new, list) and len(new) == 2 and len(set(new)) == 2
    assert all(isinstance(i, str) and i and i not in corpus.ids for i in new)
    assert store.count() == 6
    assert store.get(new) == [
        {"id": new[0], "text": None, "metadata": None},
        {"id": new[1], "text": None, "metadata": None},
    ]


def test_add_of_a_stored_id_is_refused_and_writes_nothing(store, corpus):
    _filled(store, corpus, 4)
    with pytest.raises(DuplicateIdError, match="doc-2") as err:
        store.add_embeddings([corpus.docs[5], corpus.docs[6]], ids=["fresh", "doc-2"], texts=["x", "y"])
    assert isinstance(err.value, ValueError) and isinstance(err.value, MaxsimError)
    assert store.count() == 4
    with pytest.raises(UnknownIdError):
        store.get(["fresh"])
    assert store.get(["doc-2"])[0]["text"] == "text 2"
    with pytest.raises(InvalidArgumentError, match="duplicate"):
        store.add_embeddings([corpus.docs[5], corpus.docs[6]], ids=["same", "same"])
    assert store.count() == 4


def test_get_is_strict_and_in_the_order_asked(store, corpus):
    _filled(store, corpus)
    got = store.get(["doc-5", "doc-0", "doc-11"])
    assert got == [
        {"id": i, "text": corpus.texts[j], "metadata": corpus.meta[j]}
        for i, j in (("doc-5", 5), ("doc-0", 0), ("doc-11", 11))
    ]
    with pytest.raises(UnknownIdError, match="nope") as err:
        store.get(["doc-1", "nope"])
    assert isinstance(err.value, KeyError)


def test_update_is_strict_and_none_keeps_stored_values(store, corpus):
    _filled(store, corpus)
    # unknown id: UnknownIdError, and the known id in the same call is not changed
    with pytest.raises(UnknownIdError, match="ghost"):
        store.update_embeddings(["doc-1", "ghost"], [corpus.docs[2], corpus.docs[3]], ["new", "new"])
    assert store.get(["doc-1"])[0]["text"] == "text 1"
    with pytest.raises(UnknownIdError):
        store.update_embeddings(["ghost"], metadata=[{"lang": "xx"}])
    # positional: ids, embeddings, texts, metadata; a None entry keeps the stored value
    assert (
        store.update_embeddings(
            ["doc-1", "doc-2"], [corpus.docs[7], corpus.docs[8]], ["new 1", None], [None, {"lang": "xx"}]
        )
        is None
    )
    assert store.get(["doc-1", "doc-2"]) == [
        {"id": "doc-1", "text": "new 1", "metadata": corpus.meta[1]},
        {"id": "doc-2", "text": "text 2", "metadata": {"lang": "xx"}},
    ]
    # the new vectors are searched: a query of doc-7's tokens now finds doc-1 beside doc-7
    assert set(_ids(store.search_embeddings([corpus.query(7)], k=2)[0])) == {"doc-7", "doc-1"}
    # metadata only: vectors and text stay; {} clears
    store.update_embeddings(["doc-3", "doc-4"], metadata=[{"lang": "yy"}, {}])
    assert store.get(["doc-3", "doc-4"]) == [
        {"id": "doc-3", "text": "text 3", "metadata": {"lang": "yy"}},
        {"id": "doc-4", "text": "text 4", "metadata": {}},
    ]
    assert _ids(store.search_embeddings([corpus.query(3)], k=1)[0]) == ["doc-3"]
    assert store.count({"lang": "yy"}) == 1 and store.count() == len(corpus.ids)
    with pytest.raises(InvalidArgumentError):
        store.update_embeddings(["doc-3"], texts=["text without vectors"])


def test_upsert_adds_new_and_replaces_stored(store, corpus):
    _filled(store, corpus, 3)
    ids = store.upsert_embeddings(
        [corpus.docs[5], corpus.docs[6]], ["doc-0", "doc-new"], [None, "brand new"], [None, {"lang": "en"}]
    )
    assert ids == ["doc-0", "doc-new"]
    assert store.count() == 4
    assert store.get(["doc-0", "doc-new"]) == [
        {"id": "doc-0", "text": "text 0", "metadata": corpus.meta[0]},
        {"id": "doc-new", "text": "brand new", "metadata": {"lang": "en"}},
    ]
    assert _ids(store.search_embeddings([corpus.query(5)], k=1)[0]) == ["doc-0"]


def test_delete_is_strict_and_returns_the_number_deleted(store, corpus):
    _filled(store, corpus)
    with pytest.raises(UnknownIdError, match="ghost"):
        store.delete(["doc-0", "ghost"])
    assert store.count() == len(corpus.ids)
    assert store.delete(["doc-0", "doc-1"]) == 2
    assert store.delete(["doc-1", "doc-2", "ghost"], missing_ok=True) == 1
    assert store.count() == len(corpus.ids) - 3
    with pytest.raises(UnknownIdError):
        store.get(["doc-0"])
    hits = store.search_embeddings([corpus.query(0)], k=len(corpus.ids))[0]
    assert {"doc-0", "doc-1", "doc-2"}.isdisjoint(_ids(hits)) and len(hits) == len(corpus.ids) - 3


def test_search_returns_one_list_per_query(store, corpus):
    _filled(store, corpus)
    results = store.search_embeddings([corpus.query(0), corpus.query(5), corpus.query(9)], k=3)
    assert isinstance(results, list) and len(results) == 3
    assert [r[0]["id"] for r in results] == ["doc-0", "doc-5", "doc-9"]
    for hits in results:
        assert len(hits) == 3
        assert all(set(h) == {"id", "score", "text", "metadata"} for h in hits)
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True) and all(isinstance(s, float) for s in scores)
    top = results[1][0]
    assert top["text"] == "text 5" and top["metadata"] == corpus.meta[5]
    # one query, as a list or as a single 2-D array: still a list of one hit list
    assert store.search_embeddings([corpus.query(5)], k=3) == [results[1]]
    assert store.search_embeddings(corpus.query(5), k=3) == [results[1]]
    # positional: queries, k, filter
    assert len(store.search_embeddings([corpus.query(5)], 2, None)[0]) == 2
    # k beyond the collection: every document once
    assert len(store.search_embeddings([corpus.query(5)], k=50)[0]) == len(corpus.ids)


def test_search_on_an_empty_store_gives_empty_lists(store, corpus):
    assert store.search_embeddings([corpus.query(0), corpus.query(1)], k=3) == [[], []]
    assert store.count() == 0


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3", None])
def test_bad_k_is_refused(store, corpus, k):
    _filled(store, corpus, 3)
    with pytest.raises(InvalidArgumentError, match="k must be a positive integer"):
        store.search_embeddings([corpus.query(0)], k=k)


def test_numpy_integer_k(store, corpus):
    _filled(store, corpus)
    assert len(store.search_embeddings([corpus.query(0)], k=np.int64(4))[0]) == 4
    assert len(store.search_embeddings([corpus.query(0)], k=np.int32(2))[0]) == 2


def test_filters_equality_and_any_of_in_search_and_count(store, corpus):
    _filled(store, corpus)
    q = corpus.query(4)  # doc-4 is "fr"
    fr = store.search_embeddings([q], k=20, filter={"lang": "fr"})[0]
    assert _ids(fr)[0] == "doc-4" and {h["metadata"]["lang"] for h in fr} == {"fr"}
    assert len(fr) == store.count({"lang": "fr"}) == 4
    en_de = store.search_embeddings([q], k=20, filter={"lang": ["en", "de"]})[0]
    assert {h["metadata"]["lang"] for h in en_de} == {"en", "de"} and len(en_de) == 8
    assert store.count({"lang": ["en", "de"]}) == 8
    both = store.search_embeddings([q], k=20, filter={"lang": "fr", "n": [1, 4, 7]})[0]
    assert sorted(_ids(both)) == ["doc-1", "doc-4", "doc-7"]
    assert store.count({"n": 3}) == 1 and store.count({"lang": "none"}) == 0
    assert store.search_embeddings([q], k=5, filter={"lang": "none"}) == [[]]


@pytest.mark.parametrize("flt", [{}, {"lang": []}, {1: "en"}], ids=["empty", "empty-list", "int-key"])
def test_bad_filters_are_invalid_argument_errors(make_store, corpus, flt):
    store = _filled(make_store(), corpus, 3)
    with pytest.raises(InvalidArgumentError):
        store.search_embeddings([corpus.query(0)], k=2, filter=flt)
    with pytest.raises(InvalidArgumentError):
        store.count(flt)


def test_bad_vectors_are_refused_and_write_nothing(store, corpus):
    _filled(store, corpus, 3)
    bad = [
        [np.zeros((3, DIM + 1), dtype=np.float32)],  # wrong dim
        [np.zeros((0, DIM), dtype=np.float32)],  # no tokens
        [np.full((2, DIM), np.nan, dtype=np.float32)],  # NaN
        corpus.docs[0],  # one 2-D array instead of a list
        [],  # nothing
    ]
    for embeddings in bad:
        with pytest.raises(MaxsimError):
            store.add_embeddings(embeddings, ids=["bad"] if len(embeddings) == 1 else None)
    with pytest.raises(InvalidArgumentError):
        store.add_embeddings([corpus.docs[4], corpus.docs[5]], ids=["one"])
    with pytest.raises(MaxsimError):
        store.search_embeddings([np.ones((2, DIM - 1), dtype=np.float32)])
    assert store.count() == 3


def test_text_methods_need_a_model(store, corpus):
    _filled(store, corpus, 2)
    with pytest.raises(MissingModelError):
        store.add(["some text"])
    with pytest.raises(MissingModelError):
        store.search("a query")
    with pytest.raises(MissingModelError):
        store.upsert(["x"], ["doc-0"])
    assert store.count() == 2


DOCS = {
    "paris": "Paris is the capital and largest city of France.",
    "berlin": "Berlin ist die Hauptstadt von Deutschland.",
    "plants": "Plants turn light, water and carbon dioxide into sugar.",
    "football": "The match ended two to one after extra time.",
}


@pytest.mark.slow
def test_text_methods_with_the_default_model(make_store, default_model):
    store = make_store(model=default_model)
    ids = store.add(list(DOCS.values()), list(DOCS), [{"lang": "en"}, {"lang": "de"}, {"lang": "en"}, None])
    assert ids == list(DOCS)
    one = store.search("What is the capital of France?", k=2)
    assert len(one) == 1 and one[0][0]["id"] == "paris" and one[0][0]["text"] == DOCS["paris"]
    two = store.search(["Hauptstadt von Deutschland", "how do plants make sugar"], 1)
    assert [hits[0]["id"] for hits in two] == ["berlin", "plants"]
    assert _ids(store.search("capital city", k=4, filter={"lang": "de"})[0]) == ["berlin"]
    with pytest.raises(DuplicateIdError):
        store.add(["again"], ["paris"])
    # update re-encodes the text; metadata given only where it changes
    store.update(["football"], ["Photosynthesis happens in the leaves of green plants."])
    assert store.search("photosynthesis in leaves", k=1)[0][0]["id"] == "football"
    assert store.get(["football"])[0]["metadata"] is None
    store.update(["paris"], metadata=[{"lang": "fr"}])
    assert store.get(["paris"]) == [{"id": "paris", "text": DOCS["paris"], "metadata": {"lang": "fr"}}]
    with pytest.raises(UnknownIdError):
        store.update(["ghost"], ["text"])
    assert store.upsert(["Tokyo is the capital of Japan.", DOCS["paris"]], ["tokyo", "paris"]) == ["tokyo", "paris"]
    assert store.get(["paris"])[0]["metadata"] == {"lang": "fr"}  # upsert without metadata keeps it
    assert store.search("capital of Japan", k=1)[0][0]["id"] == "tokyo"
    assert store.count() == 5
