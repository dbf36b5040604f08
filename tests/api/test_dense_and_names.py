"""/v1/embeddings with dense model names, Jina's embeddings fields, model names and the 0-1 rerank scale."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from maxsim.api.encoding import decode_vectors
from maxsim.api.settings import DENSE_MODEL_ALIASES, RERANKER_ALIASES, SettingsError
from tests.api.conftest import Settings, assert_error

TEXTS = ["Berlin is the capital of Germany.", "東京は日本の首都です。"]


@pytest.fixture(scope="module")
def dense(model):
    from maxsim.models.dense import dense_model_for

    return dense_model_for(model)


def embed(client, **body):
    return client.post("/v1/embeddings", json=body)


@pytest.mark.parametrize("name", [*DENSE_MODEL_ALIASES, "maxsim-e5-small-dense"])
def test_dense_names_get_one_vector_per_text(client, dense, name):
    r = embed(client, model=name, input=TEXTS)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == dense.name == "maxsim-e5-small-dense" and out["object"] == "list"
    want = dense.encode(TEXTS, "document")
    for i, item in enumerate(out["data"]):
        assert item["object"] == "embedding" and item["index"] == i and "embeddings" not in item
        np.testing.assert_allclose(np.asarray(item["embedding"], dtype=np.float32), want[i], atol=1e-5)
    n = sum(len(it) for it in dense.tokenize(TEXTS, "document"))
    assert out["usage"] == {"total_tokens": n, "prompt_tokens": n}


@pytest.mark.parametrize(
    "fields, kind",
    [
        ({}, "document"),
        ({"task": "retrieval.passage"}, "document"),
        ({"task": "retrieval.query"}, "query"),
        ({"input_type": "query"}, "query"),
        ({"task": "text-matching"}, "query"),
        ({"task": "code.query"}, "query"),
        ({"task": "retrieval.query", "input_type": "query"}, "query"),
        ({"task": "classification", "input_type": "document"}, "query"),
    ],
)
def test_task_and_input_type_pick_the_framing(client, dense, fields, kind):
    out = embed(client, model="jina-embeddings-v3", input=TEXTS[0], **fields).json()
    np.testing.assert_allclose(
        np.asarray(out["data"][0]["embedding"], dtype=np.float32), dense.encode(TEXTS[:1], kind)[0], atol=1e-5
    )


@pytest.mark.parametrize("kind", ["float", "base64", "binary", "ubinary"])
def test_dense_embedding_types(client, dense, kind):
    out = embed(client, model="jina-embeddings-v3", input=TEXTS, embedding_type=kind).json()
    want = dense.encode(TEXTS, "document")
    for item, w in zip(out["data"], want, strict=True):
        value = item["embedding"]
        got = decode_vectors([value] if kind in ("base64", "binary", "ubinary") else value, kind, 384)[0]
        if kind in ("float", "base64"):
            np.testing.assert_allclose(got, w, atol=1e-5)
        else:
            assert len(value) == 48  # 384 sign bits
            sure = np.abs(w) > 1e-4
            np.testing.assert_array_equal(got[sure], (w > 0)[sure])
    both = embed(client, model="jina-embeddings-v3", input=TEXTS[0], encoding_type=["float", "ubinary"]).json()
    assert set(both["data"][0]["embedding"]) == {"float", "ubinary"}


def test_dense_dimensions(client, dense):
    out = embed(client, model="jina-embeddings-v3", input=TEXTS, dimensions=128).json()
    full = dense.encode(TEXTS, "document")
    for item, w in zip(out["data"], full, strict=True):
        got = np.asarray(item["embedding"], dtype=np.float32)
        np.testing.assert_allclose(got, w[:128] / np.linalg.norm(w[:128]), atol=1e-5)
    for bad in (0, 385, 1024):
        assert_error(
            embed(client, model="jina-embeddings-v3", input="x", dimensions=bad),
            422,
            "INPUT_INVALID",
            ("dimensions", "384"),
        )


def test_accepted_fields_and_their_checks(client, model):
    ok = embed(client, model="jina-embeddings-v3", input="x", late_chunking=True, normalized=True, truncate=True)
    assert ok.status_code == 200, ok.text
    long_text = " ".join(f"word{i}" for i in range(1500))
    cut = embed(client, model="jina-embeddings-v3", input=[long_text], truncate=True).json()
    assert cut["usage"]["total_tokens"] == 512
    assert_error(
        embed(client, model="jina-embeddings-v3", input=["short", long_text], truncate=False),
        422,
        "INPUT_INVALID",
        ("[1]", "512", "truncate"),
    )
    assert_error(
        embed(client, model="jina-colbert-v2", input=[" ".join(["w"] * 9000)], truncate=False),
        422,
        "INPUT_INVALID",
        ("8192",),
    )
    assert_error(
        embed(client, model="jina-embeddings-v3", input="x", task="retrieval"),
        422,
        "INPUT_INVALID",
        ("task", "retrieval.query"),
    )
    assert_error(
        embed(client, model="jina-embeddings-v3", input="x", task="retrieval.query", input_type="document"),
        422,
        "INPUT_INVALID",
        ("disagree",),
    )
    assert_error(
        embed(client, model="jina-embeddings-v3", input="x", return_tokenized_input=True),
        422,
        "INPUT_INVALID",
        ("return_tokenized_input",),
    )
    assert_error(
        embed(client, model="jina-embeddings-v3", input="x", late_chunking="yes"),
        422,
        "INPUT_VALIDATION_ERROR",
        ("late_chunking",),
    )


def test_late_interaction_names_on_embeddings_keep_multi_vectors(client, model):
    out = embed(client, model="jina-colbert-v2", input=TEXTS, task="retrieval.query").json()
    assert out["model"] == model.name
    for item, want in zip(out["data"], model.encode_queries(TEXTS), strict=True):
        got = np.asarray(item["embeddings"], dtype=np.float32)
        assert got.shape == (32, 128)
        np.testing.assert_allclose(got, want, atol=1e-5)
    out = embed(client, model="jina-colbert-v2", input=TEXTS[0], dimensions=64, normalized=True).json()
    np.testing.assert_allclose(
        np.asarray(out["data"][0]["embeddings"], dtype=np.float32),
        model.encode_documents(TEXTS[:1], dim=64)[0],
        atol=1e-5,
    )
    assert_error(
        embed(client, model="jina-colbert-v2", input="x", dimensions=384), 422, "INPUT_INVALID", ("dimensions", "128")
    )


def test_each_endpoint_answers_its_own_names(client, model):
    seed = {"query": "population of Berlin", "documents": ["Berlin has 3.85 million inhabitants.", "Bananas."]}
    for name in RERANKER_ALIASES:
        out = client.post("/v1/rerank", json={"model": name, **seed}).json()
        assert out["model"] == model.name and out["results"][0]["index"] == 0
        assert_error(embed(client, model=name, input="x"), 400, "INPUT_MODEL_NOT_FOUND", (name, "/v1/rerank"))
    assert_error(
        client.post("/v1/rerank", json={"model": "jina-embeddings-v3", **seed}),
        400,
        "INPUT_MODEL_NOT_FOUND",
        ("/v1/embeddings",),
    )
    assert_error(
        client.post("/v1/multi-vector", json={"model": "jina-embeddings-v3", "input": "x"}),
        400,
        "INPUT_MODEL_NOT_FOUND",
        ("/v1/embeddings",),
    )
    health = client.get("/health").json()
    assert health["dense_model"]["names"] == ["maxsim-e5-small-dense", *DENSE_MODEL_ALIASES]
    assert set(RERANKER_ALIASES) <= set(health["rerank_model_names"])


def test_aliases_add_to_the_built_in_names(serve, model):
    srv = serve(Settings(model_aliases=("my-colbert",), dense_model_aliases=("my-dense",)))
    with srv.client() as c:
        for name in ("my-colbert", "jina-colbert-v2", model.name):
            r = c.post("/v1/multi-vector", json={"model": name, "input": "x"})
            assert r.status_code == 200 and r.json()["model"] == model.name
        assert c.post("/v1/rerank", json={"model": "my-colbert", "query": "q", "documents": ["d"]}).status_code == 200
        for name in ("my-dense", "jina-embeddings-v3"):
            assert (
                c.post("/v1/embeddings", json={"model": name, "input": "x"}).json()["model"] == "maxsim-e5-small-dense"
            )
    with pytest.raises(SettingsError, match="both"):
        Settings(model_aliases=("jina-embeddings-v3",))
    with pytest.raises(SettingsError, match="rerank_scores"):
        Settings(rerank_scores="percent")


def test_serve_flags_add_aliases():
    from maxsim.cli.serve import add_serve_commands, settings_from_args

    parser = argparse.ArgumentParser()
    add_serve_commands(parser.add_subparsers())
    args = parser.parse_args(
        ["serve", "--model-alias", "a", "--model-alias", "b", "--dense-model-alias", "c", "--rerank-scores", "unit"]
    )
    s = settings_from_args(args)
    assert (s.model_aliases, s.dense_model_aliases, s.rerank_scores) == (("a", "b"), ("c",), "unit")
    assert settings_from_args(parser.parse_args(["serve"])).rerank_scores == "maxsim"


def test_unit_rerank_scores(serve, model, seeds):
    body = seeds["rerank"]
    with serve(Settings(rerank_scores="unit")).client() as c:
        unit = c.post("/v1/rerank", json={**body, "top_n": None}).json()["results"]
    raw = model.rerank(body["query"], body["documents"])
    assert [r["index"] for r in unit] == [r["index"] for r in raw]
    assert {r["index"] for r in unit[:3]} == set(seeds["rerank_expected_relevant_indices"])
    for u, r in zip(unit, raw, strict=True):
        assert 0.0 <= u["relevance_score"] <= 1.0
        assert u["relevance_score"] == pytest.approx(max(r["relevance_score"] / 32, 0.0), abs=1e-4)


def test_fuzz_embeddings_bodies_never_5xx(client):
    """A bounded, seeded fuzz of /v1/embeddings with every field it accepts, dense and late-interaction names."""
    import json
    import random

    from tests.api.test_robustness import _random_value

    fields = [
        "model",
        "input",
        "input_type",
        "embedding_type",
        "dimensions",
        "task",
        "late_chunking",
        "truncate",
        "normalized",
        "return_tokenized_input",
    ]
    rng = random.Random(4321)
    statuses = []
    for _ in range(120):
        body = {f: _random_value(rng) for f in fields if rng.random() < 0.6}
        if rng.random() < 0.7:
            body["model"] = rng.choice(["jina-embeddings-v3", "jina-colbert-v2", "jina-reranker-v1-base-en"])
        if rng.random() < 0.5:
            body["input"] = rng.choice(["text", ["a", "b"], [{"text": "c", "id": "x"}]])
        r = client.post(
            "/v1/embeddings", content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        assert r.status_code < 500, (body, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert r.json()["code"]
        statuses.append(r.status_code)
    assert any(s >= 400 for s in statuses)
    assert embed(client, model="jina-embeddings-v3", input="still serving").status_code == 200


def test_rerank_truncation_false_refuses_long_documents(client):
    long_doc = " ".join(["w"] * 9000)
    body = {"model": "jina-reranker-v1-base-en", "query": "q", "documents": ["short", long_doc]}
    assert client.post("/v1/rerank", json=body).status_code == 200
    assert_error(
        client.post("/v1/rerank", json={**body, "truncation": False}),
        422,
        "INPUT_INVALID",
        ("documents [1]", "8192", "truncation is false"),
    )


def test_symmetric_task_keeps_input_type_for_late_interaction(client, model):
    out = embed(client, model="jina-colbert-v2", input="a b", task="text-matching", input_type="query").json()
    assert len(out["data"][0]["embeddings"]) == 32
    out = embed(client, model="jina-colbert-v2", input="a b", task="text-matching").json()
    assert len(out["data"][0]["embeddings"]) == len(model.encode_documents(["a b"])[0])


def test_late_chunking_over_http(client, dense):
    texts = ["Berlin is the capital of Germany.", "It has 3.85 million inhabitants."]
    out = embed(client, model="jina-embeddings-v3", input=texts, late_chunking=True, dimensions=256).json()
    want, _, _ = dense.encode_late_chunked(texts, "document", 256)
    for item, w in zip(out["data"], want, strict=True):
        np.testing.assert_allclose(np.asarray(item["embedding"], dtype=np.float32), w, atol=1e-5)
    alone = embed(client, model="jina-embeddings-v3", input=texts, dimensions=256).json()
    assert alone["data"][1]["embedding"] != out["data"][1]["embedding"]
    assert out["usage"] == alone["usage"]  # billed per text, as without late chunking
