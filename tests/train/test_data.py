from __future__ import annotations

import json

import pytest

from maxsim.evaluation.datasets import Collection
from maxsim.train.data import (
    Pair,
    TrainDataError,
    batches,
    carve_by_article,
    carve_like,
    mine_bm25_negatives,
    read_pairs,
    split_by_document,
)


def test_read_pairs_fields_and_errors(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text(
        json.dumps({"query": "q", "positive": "p", "lang": "en"})
        + "\n"
        + json.dumps({"query": "q2", "positive": "p2", "negative": "n", "negatives": ["m"], "scores": [3, 1, 0]})
        + "\n"
    )
    a, b = read_pairs(f)
    assert (a.query, a.positive, a.lang, a.negatives) == ("q", "p", "en", [])
    assert b.negatives == ["n", "m"] and b.scores == [3.0, 1.0, 0.0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q"}\n')
    with pytest.raises(TrainDataError, match=r"bad.jsonl:1: .*positive"):
        read_pairs(bad)
    bad.write_text('{"query": "q", "positive": "p", "negatives": ["n"], "scores": [1]}\n')
    with pytest.raises(TrainDataError, match="scores"):
        read_pairs(bad)


def test_split_by_document_is_disjoint(pairs):
    train, dev = split_by_document(pairs, 0.25, seed=1)
    assert train and dev and len(train) + len(dev) == len(pairs)
    assert not {p.positive for p in train} & {p.positive for p in dev}


def test_carve_by_article_keeps_sides_apart():
    corpus = {f"p{i:03d}": f"doc {i}" for i in range(200)}
    queries = {f"q{i}": f"question {i}" for i in range(200)}
    qrels = {f"q{i}": {f"p{i:03d}": 1} for i in range(200)}
    col = Collection("c", corpus, queries, qrels, ("en",))
    train, dev = carve_by_article(col, 0.3, block=20, seed=0)
    train_docs = {p.positive for p in train}
    dev_docs = set(dev.corpus.values())
    assert train and dev.queries and not train_docs & dev_docs
    # the guard: no dev document sits in a block right next to a training block
    block_of = lambda text: int(text.split()[1]) // 20  # noqa: E731
    train_blocks = {block_of(t) for t in train_docs}
    assert not {block_of(t) for t in dev_docs} & ({b + 1 for b in train_blocks} | {b - 1 for b in train_blocks})
    assert all(list(r)[0] in dev.corpus for r in dev.qrels.values())
    by_article, dev2 = carve_by_article(col, 0.5, article_of=lambda d: d[:3], seed=0)  # articles p00, p01, ...
    assert not {p.positive for p in by_article} & set(dev2.corpus.values())


def test_carve_like_follows_the_reference_across_languages():
    # an English collection and its translation share question ids; paragraph ids differ
    en = Collection(
        "en",
        {f"p{i:03d}": f"doc {i}" for i in range(100)},
        {f"q{i}": f"question {i}" for i in range(200)},
        {f"q{i}": {f"p{i // 2:03d}": 1} for i in range(200)},
        ("en",),
    )
    train, dev = carve_by_article(en, 0.3, block=10, seed=0)
    trained_q = {q for q, rels in en.qrels.items() if en.corpus[next(iter(rels))] in {p.positive for p in train}}
    one_trained, one_dev = sorted(trained_q)[0], sorted(dev.qrels)[0]
    es_docs = {f"x{i:03d}": f"doc-es {i}" for i in range(100)} | {"xmix": "doc-es mixed"}
    es_qrels = {
        f"q{i}": {f"x{(99 - i // 2):03d}": 1} for i in range(200) if i != 7
    }  # order shuffled, one question missing
    # a paragraph whose questions sit on both sides of the English carve
    es_qrels[one_trained] = {"xmix": 1}
    es_qrels[one_dev] = {"xmix": 1}
    es = Collection("es", es_docs, {q: f"pregunta {q}" for q in es_qrels}, es_qrels, ("es",))
    es_train, es_dev = carve_like(es, trained_q, set(dev.qrels), "en")
    assert es_train and es_dev.queries
    assert set(es_dev.qrels) <= set(dev.qrels)  # nothing evaluated in Spanish was trained on in English
    assert {es.queries[q] for q in set(dev.qrels) & set(es.queries)}.isdisjoint({p.query for p in es_train})
    assert not {p.positive for p in es_train} & set(es_dev.corpus.values())
    # the mixed paragraph goes nowhere, and neither do its questions
    assert "xmix" not in es_dev.corpus and "doc-es mixed" not in {p.positive for p in es_train}
    assert one_dev not in es_dev.qrels and es.queries[one_trained] not in {p.query for p in es_train}


def test_bm25_negatives_are_hard_and_never_the_positive():
    docs = ["red apple fruit", "green apple pie", "blue sky above", "dark night sky", "apple tree orchard"]
    # the pool is every positive of the source
    pairs = [
        Pair("apple fruit", docs[0], source="s"),
        Pair("night sky", docs[3], source="s"),
        Pair("sky", docs[2], source="s"),
        Pair("pie", docs[1], source="s"),
        Pair("tree", docs[4], source="s"),
    ]
    mined = mine_bm25_negatives(pairs, n=1, depth=1)
    assert mined[0].negatives[0] in {docs[1], docs[4]}  # the other apple documents
    assert mined[1].negatives == [docs[2]]
    assert all(p.positive not in p.negatives for p in mined)
    assert pairs[0].negatives == []  # the input is not modified


def test_batches_are_reproducible_and_single_source(pairs):
    a = batches(pairs, 4, epoch=0, seed=3)
    assert a == batches(pairs, 4, epoch=0, seed=3)
    assert a != batches(pairs, 4, epoch=1, seed=3)
    for b in a:
        assert len({pairs[i].source for i in b}) == 1


def test_model_negatives_never_the_positive(tiny, pairs):
    from maxsim.train.data import mine_model_negatives

    mined = mine_model_negatives(tiny, pairs[:12], n=2, depth=5)
    assert all(len(p.negatives) == 2 and p.positive not in p.negatives for p in mined)
    assert all(n in {q.positive for q in pairs[:12] if q.source == p.source} for p in mined for n in p.negatives)
