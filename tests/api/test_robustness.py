"""Malformed and hostile requests get a 4xx with a clear message, never a 5xx, and the server keeps answering."""

from __future__ import annotations

import json
import random

import pytest

from tests.api.conftest import assert_error

ENDPOINTS = ["/v1/multi-vector", "/v1/embeddings", "/v1/rerank", "/v1/explain"]


def healthy(client) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "raw",
    [
        b"{bad json",
        b"",
        b"[1, 2",
        b'{"model": "jina-colbert-v2", "input": "x",}',
        b"\xff\xfe\x00garbage",
        b"null",
        b"[]",
        b"42",
        b'"a string"',
        b"{}",
    ],
)
def test_malformed_bodies(client, path, raw):
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    body = assert_error(r, 422, "INPUT_VALIDATION_ERROR")
    assert body["message"].startswith("invalid request: ")
    assert body["errors"] and all("field" in e and "message" in e for e in body["errors"])


def test_malformed_json_message_says_json(client):
    body = assert_error(
        client.post("/v1/rerank", content=b"{bad json", headers={"content-type": "application/json"}), 422
    )
    assert "not valid JSON" in body["message"]


def test_body_without_json_content_type_is_read_as_json(client):
    payload = json.dumps({"model": "jina-colbert-v2", "query": "q", "documents": ["d"]})
    for ctype in (None, "application/x-www-form-urlencoded", "text/plain"):
        headers = {"content-type": ctype} if ctype else {}
        r = client.post("/v1/rerank", content=payload.encode(), headers=headers)
        assert r.status_code == 200, (ctype, r.text)


GARBAGE = [
    "\ud800 lone surrogate \udfff",
    "\x00\x01\x02 controls \x1b[31m \x7f\x9f",
    "\u202e\u202d bidi \u200b\u200c\u200d\ufeff zero width",
    "e\u0301" * 300,  # combining accents
    "🏳️‍🌈👩‍👩‍👧‍👦" * 50,
    "\U0010ffff\ue000\uffff\ufffe",
    "a" * 4_000,  # one enormous word
    " \n\t\r " * 1000,
    "ﷺ" * 200 + "𒐫" * 200,
]


@pytest.mark.parametrize("text", GARBAGE, ids=[f"garbage{i}" for i in range(len(GARBAGE))])
def test_unicode_garbage_never_5xx(client, text):
    for path, body in [
        (
            "/v1/multi-vector",
            {"model": "jina-colbert-v2", "input": [text], "input_type": "query", "embedding_type": "ubinary"},
        ),
        (
            "/v1/multi-vector",
            {"model": "jina-colbert-v2", "input": {"text": text, "id": text[:50]}, "embedding_type": "binary"},
        ),
        ("/v1/rerank", {"model": "jina-colbert-v2", "query": text, "documents": [text, "plain"]}),
    ]:
        # ensure_ascii escapes lone surrogates as \udXXX, which JSON allows and Python decodes
        r = client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        assert r.status_code < 500, (path, r.status_code, r.text[:300])
        if r.status_code == 200:
            assert r.json()["usage"]["total_tokens"] > 0
    healthy(client)


def test_invalid_utf8_inside_a_string(client):
    raw = b'{"model": "jina-colbert-v2", "input": "\xc3\x28 \xed\xa0\x80 bad utf-8"}'
    r = client.post("/v1/multi-vector", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    healthy(client)


def test_escaped_lone_surrogate_is_repaired(client):
    raw = b'{"model": "jina-colbert-v2", "input": "caf\\ud800e", "return_tokenized_input": true}'
    r = client.post("/v1/multi-vector", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embeddings"]) == len(r.json()["data"][0]["tokenized_input"])


def test_deeply_nested_json(client):
    raw = ("[" * 5000 + "]" * 5000).encode()
    r = client.post("/v1/multi-vector", content=raw, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    raw = json.dumps({"model": "jina-colbert-v2", "input": {"text": "x", "id": {"a": [[[[[1]]]]]}}}).encode()
    assert client.post("/v1/multi-vector", content=raw).status_code == 422
    healthy(client)


def _random_value(rng: random.Random, depth: int = 0):
    choices = ["str", "int", "float", "bool", "null", "list", "dict", "unicode"]
    kind = rng.choice(choices if depth < 3 else choices[:5])
    if kind == "str":
        return rng.choice(["", "x", "query", "document", "float", "base64", "jina-colbert-v2", "128"])
    if kind == "int":
        return rng.choice([0, -1, 1, 3, 64, 128, 2**63, -(2**70)])
    if kind == "float":
        return rng.choice([0.5, -1e308, 1e308, 128.0])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "unicode":
        return (
            "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randrange(1, 40)))
            .encode("utf-8", "surrogatepass")
            .decode("utf-8", "replace")
        )
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {
        rng.choice(["text", "id", "input", "model", "query", "documents", "x"]): _random_value(rng, depth + 1)
        for _ in range(rng.randrange(0, 4))
    }


FIELDS = {
    "/v1/multi-vector": [
        "model",
        "input",
        "input_type",
        "embedding_type",
        "encoding_type",
        "dimensions",
        "return_tokenized_input",
    ],
    "/v1/rerank": ["model", "query", "documents", "top_n", "return_documents", "truncation"],
    "/v1/indexes/fuzz/search": ["query", "k", "filter", "explain", "return_documents"],
    "/v1/indexes/fuzz/documents": ["documents"],
}


def test_fuzz_bodies_never_5xx(client):
    """A bounded, seeded fuzz: 200 bodies built from the real field names with random values."""
    client.post("/v1/indexes", json={"name": "fuzz"})
    client.post(
        "/v1/indexes/fuzz/documents",
        json={"documents": [{"text": "seed document", "id": "seed", "metadata": {"a": 1}}]},
    )
    rng = random.Random(1234)
    statuses = []
    for _ in range(200):
        path = rng.choice(list(FIELDS))
        body = {f: _random_value(rng) for f in FIELDS[path] if rng.random() < 0.7}
        if rng.random() < 0.5 and "model" in FIELDS[path]:
            body["model"] = "jina-colbert-v2"
        r = client.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
        assert r.status_code < 500, (path, body, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert r.json()["code"] and r.headers["x-request-id"]
        statuses.append(r.status_code)
    assert any(s >= 400 for s in statuses)
    healthy(client)


def test_unknown_route_and_method(client):
    assert_error(client.get("/v1/nothing-here"), 404, "NOT_FOUND", ("/v1/nothing-here",))
    assert_error(client.get("/v1/rerank"), 405, "METHOD_NOT_ALLOWED")


def test_request_ids(client):
    r = client.post(
        "/v1/rerank", json={"model": "nope", "query": "q", "documents": ["d"]}, headers={"x-request-id": "my-trace-42"}
    )
    assert r.headers["x-request-id"] == "my-trace-42" and r.json()["request_id"] == "my-trace-42"
    r = client.get("/health", headers={"x-request-id": b"bad id with spaces\xc3\xa9"})
    assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32
    a, b = client.get("/health"), client.get("/health")
    assert a.headers["x-request-id"] != b.headers["x-request-id"]
