"""POST /v1/multi-vector and /v1/embeddings: every field, its default, and all embedding types."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.api.encoding import decode_vectors
from tests.api.conftest import assert_error


def post(client, body, path="/v1/multi-vector"):
    return client.post(path, json=body)


def test_seed_documents(client, model, seeds):
    body = seeds["embed_documents"]
    r = post(client, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == model.name and out["object"] == "list"  # the model that answered, not the alias
    expected = model.encode_documents(body["input"], dim=128)
    assert [d["index"] for d in out["data"]] == [0, 1, 2]
    for item, want in zip(out["data"], expected, strict=True):
        assert item["object"] == "embeddings"
        got = np.asarray(item["embeddings"], dtype=np.float32)
        assert got.shape == want.shape and got.shape[1] == 128
        np.testing.assert_allclose(got, want, atol=1e-5)
    n_tokens = sum(model.tokenizer.count_tokens(body["input"], is_query=False))
    assert out["usage"] == {"total_tokens": n_tokens, "prompt_tokens": n_tokens}


def test_seed_queries_have_32_vectors(client, model, seeds):
    body = seeds["embed_queries"]
    out = post(client, body).json()
    expected = model.encode_queries(body["input"], dim=128)
    for item, want in zip(out["data"], expected, strict=True):
        got = np.asarray(item["embeddings"], dtype=np.float32)
        assert got.shape == (32, 128)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert out["usage"]["total_tokens"] == 3 * 32


def test_defaults_document_float_128(client, model):
    out = post(client, {"model": "jina-colbert-v2", "input": "Late interaction keeps one vector per token."}).json()
    got = np.asarray(out["data"][0]["embeddings"], dtype=np.float32)
    want = model.encode_documents(["Late interaction keeps one vector per token."])[0]
    assert got.shape == want.shape  # a document (not 32 query vectors) of 128 floats
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert "tokenized_input" not in out["data"][0] and "id" not in out["data"][0]


def test_model_own_name_and_embeddings_alias(client, model):
    body = {"model": model.name, "input": ["a b c"], "input_type": "query"}
    a = post(client, body).json()
    b = post(client, body, "/v1/embeddings").json()
    assert a["model"] == model.name
    assert a["data"] == b["data"]


def test_unknown_model_is_400(client):
    body = assert_error(
        post(client, {"model": "jina-embeddings-v3", "input": "x"}),
        400,
        "INPUT_MODEL_NOT_FOUND",
        ("jina-embeddings-v3",),
    )
    assert "jina-colbert-v2" in body["detail"]


@pytest.mark.parametrize("dim", [64, 96, 128])
def test_dimensions(client, model, dim):
    texts = ["Matryoshka prefixes", "keep the first coordinates"]
    out = post(client, {"model": "jina-colbert-v2", "input": texts, "dimensions": dim}).json()
    for item, want in zip(out["data"], model.encode_documents(texts, dim=dim), strict=True):
        got = np.asarray(item["embeddings"], dtype=np.float32)
        assert got.shape[1] == dim
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("dim", [0, 32, 100, 256, -1, "128", 128.5, None, True])
def test_bad_dimensions(client, dim):
    assert_error(
        post(client, {"model": "jina-colbert-v2", "input": "x", "dimensions": dim}),
        422,
        "INPUT_VALIDATION_ERROR",
        ("dimensions",),
    )


def test_input_forms_and_ids(client, model):
    texts = ["first text", "second text", "third"]
    want = model.encode_queries(texts)
    forms = [
        (texts[0], [None]),
        ({"text": texts[0], "id": "a"}, ["a"]),
        ([{"text": texts[0], "id": "a"}, {"text": texts[1]}], ["a", None]),
        ([texts[0], {"text": texts[1], "id": "b"}, texts[2]], [None, "b", None]),
    ]
    for inp, ids in forms:
        out = post(client, {"model": "jina-colbert-v2", "input": inp, "input_type": "query"}).json()
        assert len(out["data"]) == len(ids)
        for i, (item, id_) in enumerate(zip(out["data"], ids, strict=True)):
            assert item["index"] == i
            assert item.get("id") == id_
            np.testing.assert_allclose(np.asarray(item["embeddings"], dtype=np.float32), want[i], atol=1e-5)


@pytest.mark.parametrize("kind", ["float", "base64", "binary", "ubinary"])
@pytest.mark.parametrize("input_type", ["query", "document"])
def test_embedding_types_decode_to_the_vectors(client, model, kind, input_type):
    texts = ["Berlin is the capital of Germany.", "東京は日本の首都です。"]
    out = post(
        client,
        {
            "model": "jina-colbert-v2",
            "input": texts,
            "input_type": input_type,
            "embedding_type": kind,
            "dimensions": 96,
        },
    ).json()
    encode = model.encode_queries if input_type == "query" else model.encode_documents
    for item, want in zip(out["data"], encode(texts, dim=96), strict=True):
        got = decode_vectors(item["embeddings"], kind, 96)
        if kind == "float":
            np.testing.assert_allclose(got, want, atol=1e-5)
        elif kind == "base64":
            assert all(isinstance(s, str) for s in item["embeddings"])
            np.testing.assert_allclose(got, want, atol=1e-5)
        else:
            raw = np.asarray(item["embeddings"])
            assert raw.shape == (len(want), 12)  # 96 sign bits -> 12 bytes
            if kind == "binary":
                assert raw.min() >= -128 and raw.max() <= 127
            else:
                assert raw.min() >= 0 and raw.max() <= 255
            # the bits are the signs of the float vector (a value exactly 0 would be ambiguous: skip it)
            sure = np.abs(want) > 1e-4
            np.testing.assert_array_equal(got[sure], (want > 0)[sure])


def test_list_of_types_and_encoding_type_alias(client, model):
    text = "one text, four encodings"
    out = post(
        client, {"model": "jina-colbert-v2", "input": text, "embedding_type": ["float", "base64", "binary", "ubinary"]}
    ).json()
    emb = out["data"][0]["embeddings"]
    assert set(emb) == {"float", "base64", "binary", "ubinary"}
    np.testing.assert_allclose(
        decode_vectors(emb["base64"], "base64", 128), np.asarray(emb["float"], dtype=np.float32), atol=0
    )
    np.testing.assert_array_equal(
        decode_vectors(emb["binary"], "binary", 128), decode_vectors(emb["ubinary"], "ubinary", 128)
    )
    old = post(client, {"model": "jina-colbert-v2", "input": text, "encoding_type": "ubinary"}).json()
    assert old["data"][0]["embeddings"] == emb["ubinary"]
    assert_error(
        post(client, {"model": "jina-colbert-v2", "input": text, "encoding_type": "float", "embedding_type": "float"}),
        422,
        mentions=("encoding_type",),
    )
    for bad in (["float", "float"], [], "int8", ["float", "int8"]):
        assert_error(
            post(client, {"model": "jina-colbert-v2", "input": text, "embedding_type": bad}),
            422,
            mentions=("embedding_type",),
        )


@pytest.mark.parametrize("input_type", ["query", "document"])
def test_return_tokenized_input(client, model, input_type):
    text = "Wie viele Einwohner hat Berlin?"
    out = post(
        client, {"model": "jina-colbert-v2", "input": [text], "input_type": input_type, "return_tokenized_input": True}
    ).json()
    item = out["data"][0]
    tokens = model.query_tokens(text) if input_type == "query" else model.document_tokens(text)
    assert item["tokenized_input"] == tokens
    assert len(item["tokenized_input"]) == len(item["embeddings"])


def test_long_query_still_32_and_long_document_truncated(client, model):
    long_query = " ".join(["population"] * 100)
    out = post(client, {"model": "jina-colbert-v2", "input": long_query, "input_type": "query"}).json()
    assert len(out["data"][0]["embeddings"]) == 32
    assert out["usage"]["total_tokens"] == 32
    long_doc = " ".join(f"word{i}" for i in range(5000))  # > 8192 tokens
    out = post(client, {"model": "jina-colbert-v2", "input": long_doc, "embedding_type": "ubinary"}).json()
    assert out["usage"]["total_tokens"] == 8192
    assert 0 < len(out["data"][0]["embeddings"]) <= 8192


def test_unknown_fields_rejected(client):
    for extra in ({"truncate": True}, {"task": "retrieval.query"}, {"normalized": True}):
        body = {"model": "jina-colbert-v2", "input": "x", **extra}
        assert_error(post(client, body), 422, "INPUT_VALIDATION_ERROR", (next(iter(extra)),))
    assert_error(
        post(client, {"model": "jina-colbert-v2", "input": {"text": "x", "image": "y"}}), 422, mentions=("image",)
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({"input": "x"}, "model"),
        ({"model": "jina-colbert-v2"}, "input"),
        ({"model": "jina-colbert-v2", "input": []}, "input"),
        ({"model": "jina-colbert-v2", "input": 42}, "input"),
        ({"model": "jina-colbert-v2", "input": [1, 2]}, "input"),
        ({"model": "jina-colbert-v2", "input": [None]}, "input"),
        ({"model": "jina-colbert-v2", "input": {"id": "a"}}, "input"),
        ({"model": "jina-colbert-v2", "input": "x", "input_type": "passage"}, "input_type"),
        ({"model": "jina-colbert-v2", "input": "x", "input_type": None}, "input_type"),
        ({"model": "jina-colbert-v2", "input": "x", "return_tokenized_input": "yes"}, "return_tokenized_input"),
        ({"model": 7, "input": "x"}, "model"),
    ],
)
def test_wrong_types(client, body, field):
    assert_error(post(client, body), 422, "INPUT_VALIDATION_ERROR", (field,))


def test_empty_string_is_a_valid_input(client):
    out = post(client, {"model": "jina-colbert-v2", "input": ["", "x"]}).json()
    assert len(out["data"]) == 2 and len(out["data"][0]["embeddings"]) >= 1
    out = post(client, {"model": "jina-colbert-v2", "input": "", "input_type": "query"}).json()
    assert len(out["data"][0]["embeddings"]) == 32
