"""Late-interaction encoding conventions on the real default model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from maxsim.models.colbert import Model
from maxsim.text.clean import InputError
from maxsim.tokens.late_interaction import LateInteractionTokenizer

DIMS = (128, 96, 64)


@pytest.mark.parametrize("dim", DIMS)
def test_query_shape_and_normalisation(default_model, dim):
    out = default_model.encode_queries(["what is late interaction?", "短い"], dim=dim)
    assert len(out) == 2
    for v in out:
        assert v.shape == (32, dim) and v.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("dim", DIMS)
def test_document_shape_and_normalisation(default_model, dim):
    texts = ["Late interaction keeps one vector per token.", "Un deuxième document, plus long que le premier."]
    out = default_model.encode_documents(texts, dim=dim)
    for text, v in zip(texts, out):
        assert v.shape == (len(default_model.document_tokens(text)), dim)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_query_markers_and_mask_expansion(default_model):
    tokens = default_model.query_tokens("hello world")
    assert len(tokens) == 32
    assert tokens[0] == "<s>"
    assert "".join(tokens[1:4]).replace("\u2581", "") == "query:"  # the E5 query prefix is the marker
    end = tokens.index("</s>")
    assert tokens[end + 1 :] == ["<mask>"] * (32 - end - 1)
    assert len(tokens[end + 1 :]) > 20


def test_query_attends_to_mask_tokens(default_model):
    """The real tokens' vectors change when the model may not see the expansion tokens."""
    tok = default_model.tokenizer
    blind = LateInteractionTokenizer(
        tok.tokenizer, dataclasses.replace(tok.settings, attend_to_expansion=False), pre_normalize=tok.pre_normalize
    )
    ids = tok.queries(["cross-lingual retrieval"])[0]
    assert ids.attention.all()
    assert not blind.queries(["cross-lingual retrieval"])[0].attention.all()
    other = Model(default_model.encoder, default_model.heads, blind, name="blind", max_positions=512)
    a = default_model.encode_queries(["cross-lingual retrieval"])[0]
    b = other.encode_queries(["cross-lingual retrieval"])[0]
    n_real = int(np.flatnonzero(ids.ids == 2)[0]) + 1  # up to </s>
    assert np.abs(a[:n_real] - b[:n_real]).max() > 1e-3


def test_long_query_is_truncated_to_32_with_end_token(default_model):
    tokens = default_model.query_tokens("word " * 100)
    assert len(tokens) == 32 and tokens[-1] == "</s>" and "<mask>" not in tokens


def test_document_marker_kept_and_punctuation_dropped(default_model):
    tokens = default_model.document_tokens("Hello, world! (Really?) 你好，世界。¿Qué?")
    assert tokens[0] == "<s>" and tokens[1] == "\u2581passage" and tokens[-1] == "</s>"
    for punct in (",", "!", "(", ")", "?", "，", "。", "¿", ":"):
        assert all(t.replace("\u2581", "") != punct for t in tokens), (punct, tokens)
    assert any("Hello" in t for t in tokens) and any("世界" in t or "世" in t for t in tokens)


def test_matryoshka_dims_are_renormalised_prefixes(default_model):
    text = ["Matryoshka representations nest smaller vectors inside larger ones."]
    full = default_model.encode_documents(text, dim=128)[0]
    for dim in (96, 64):
        small = default_model.encode_documents(text, dim=dim)[0]
        expect = full[:, :dim] / np.linalg.norm(full[:, :dim], axis=1, keepdims=True)
        np.testing.assert_allclose(small, expect, atol=1e-5)
        # slicing without re-normalising would be wrong
        assert np.abs(np.linalg.norm(full[:, :dim], axis=1) - 1).max() > 1e-3


def test_batched_equals_one_by_one(default_model):
    texts = ["short", "a somewhat longer document about rivers and lakes", "третий документ", "x " * 200]
    batched = default_model.encode_documents(texts)
    for text, b in zip(texts, batched):
        single = default_model.encode_documents([text])[0]
        np.testing.assert_allclose(b, single, atol=2e-4)
    qb = default_model.encode_queries(texts)
    for text, b in zip(texts, qb):
        np.testing.assert_allclose(b, default_model.encode_queries([text])[0], atol=2e-4)


def test_long_document_windows_cover_every_token(default_model):
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(300))
    n_kept = len(default_model.document_tokens(text))
    assert n_kept > 1500  # longer than the backbone's 512 positions
    v = default_model.encode_documents([text])[0]
    assert v.shape == (n_kept, 128)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Windows agree with a single pass where a single pass is possible: encode the head of the
    # document both ways by shrinking the model's positions.
    head = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(30))
    narrow = Model(default_model.encoder, default_model.heads, default_model.tokenizer, name="narrow", max_positions=96)
    wide_v = default_model.encode_documents([head])[0]
    narrow_v = narrow.encode_documents([head])[0]
    assert narrow_v.shape == wide_v.shape
    cos = (wide_v * narrow_v).sum(axis=1)
    assert cos.mean() > 0.8


def test_document_of_8192_tokens(default_model):
    text = "maxsim " + "alpha beta gamma delta " * 2100
    v = default_model.encode_documents([text])[0]
    assert 8000 <= v.shape[0] <= default_model.document_length


def test_rerank_berlin_seed_example(default_model, shared_dir):
    import json

    seed = json.loads((shared_dir / "specs" / "seed-examples.json").read_text())
    ex = seed["rerank"]
    results = default_model.rerank(ex["query"], ex["documents"], top_n=ex["top_n"])
    assert len(results) == 3
    assert [r["relevance_score"] for r in results] == sorted((r["relevance_score"] for r in results), reverse=True)
    for r in results:
        assert r["document"] == ex["documents"][r["index"]]
    top = {r["index"] for r in results}
    assert len(top & set(seed["rerank_expected_relevant_indices"])) >= 2, results


def test_rerank_options(default_model):
    docs = ["cats purr", "dogs bark", "the cat sat on the mat"]
    all_results = default_model.rerank("cat", docs)
    assert sorted(r["index"] for r in all_results) == [0, 1, 2]
    bare = default_model.rerank("cat", docs, top_n=1, return_documents=False)
    assert bare[0]["index"] == all_results[0]["index"] and "document" not in bare[0]
    assert default_model.rerank("cat", []) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.encode_documents([1, 2]), r"documents\[0\] must be a str"),
        (lambda m: m.encode_queries(None), "queries must be str or a list of str"),
        (lambda m: m.encode_queries(b"bytes"), "not bytes"),
        (lambda m: m.encode_documents(["ok"], dim=100), "dim must be one of"),
        (lambda m: m.encode_documents(["ok"], dim=True), "dim must be one of"),
        (lambda m: m.rerank(3, ["a"]), "query must be a str"),
        (lambda m: m.rerank("q", ["a"], top_n=0), "top_n must be a positive integer"),
    ],
)
def test_bad_input_is_a_clear_error(default_model, call, message):
    with pytest.raises(InputError, match=message):
        call(default_model)


def test_odd_but_valid_input(default_model):
    assert default_model.encode_documents([]) == []
    empty_q = default_model.encode_queries([""])[0]
    assert empty_q.shape == (32, 128)
    empty_d = default_model.encode_documents([""])[0]
    assert empty_d.shape[0] == 3  # <s>, the passage marker, </s>
    weird = default_model.encode_documents(["ctrl\x00\x07chars \ud800 lone surrogate \udfff end"])[0]
    assert np.isfinite(weird).all() and weird.shape[0] > 3
    assert default_model.encode_documents("a single string")[0].shape[1] == 128


def test_one_megabyte_document_is_truncated_not_crashed(default_model):
    text = ("Ein sehr langes Dokument über Flüsse. " * 30000)[:1_000_000]
    v = default_model.encode_documents([text])[0]
    assert v.shape[0] <= default_model.document_length
    assert np.isfinite(v).all()
