"""API keys, body/input/token/k limits (413/422 naming the limit), rate limits (429), timeouts (504)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from maxsim.api import Limits, Settings
from maxsim.api.auth import KeyChecker
from tests.api.conftest import assert_error

KEYS = frozenset({"key-one-0123456789", "key-two-abcdefghij"})
EMBED = {"model": "jina-colbert-v2", "input": ["hello"]}


@pytest.fixture(scope="module")
def auth_server(serve, tmp_path_factory):
    return serve(Settings(api_keys=KEYS, index_dir=str(tmp_path_factory.mktemp("auth-idx"))))


def test_auth_required(auth_server):
    with auth_server.client() as c:
        assert_error(c.post("/v1/multi-vector", json=EMBED), 401, "AUTH_MISSING_API_KEY", ("Bearer",))
        r = c.post("/v1/multi-vector", json=EMBED, headers={"Authorization": "Bearer wrong-key-000000"})
        assert_error(r, 401, "AUTH_INVALID_API_KEY")
        assert r.headers["www-authenticate"] == "Bearer"
        assert_error(
            c.post("/v1/multi-vector", json=EMBED, headers={"Authorization": "Basic a2V5LW9uZQ=="}),
            401,
            "AUTH_MISSING_API_KEY",
        )
        assert_error(c.post("/v1/multi-vector", json=EMBED, headers={"Authorization": "Bearer"}), 401)
        # a key that differs in the last character, and a prefix, are refused
        assert_error(
            c.post("/v1/rerank", json={}, headers={"Authorization": "Bearer key-one-012345678X"}),
            401,
            "AUTH_INVALID_API_KEY",
        )
        assert_error(
            c.post("/v1/rerank", json={}, headers={"Authorization": "Bearer key-one"}), 401, "AUTH_INVALID_API_KEY"
        )
        for key in KEYS:
            r = c.post("/v1/multi-vector", json=EMBED, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
        r = c.post("/v1/multi-vector", json=EMBED, headers={"authorization": f"bearer  {min(KEYS)}"})
        assert r.status_code == 200


def test_auth_comes_before_parsing(auth_server):
    with auth_server.client() as c:
        assert_error(c.post("/v1/rerank", content=b"{not json", headers={"content-type": "application/json"}), 401)
        assert_error(c.get("/v1/indexes"), 401)
        assert_error(c.post("/v1/indexes", json={"name": "x"}), 401)
        assert_error(c.get("/metrics"), 401)


def test_public_paths_without_key(auth_server):
    with auth_server.client() as c:
        health = c.get("/health").json()
        assert health["auth"] is True
        assert c.get("/").status_code == 200
        assert c.get("/static/app.js").status_code == 200
        assert c.get("/openapi.json").status_code == 200
        h = {"Authorization": f"Bearer {sorted(KEYS)[1]}"}
        assert c.get("/metrics", headers=h).status_code == 200
        assert c.get("/v1/indexes", headers=h).status_code == 200


def test_auth_off_by_default(client):
    assert client.get("/health").json()["auth"] is False
    assert client.post("/v1/multi-vector", json=EMBED).status_code == 200
    # a key sent to a server without keys is ignored
    assert client.post("/v1/multi-vector", json=EMBED, headers={"Authorization": "Bearer anything"}).status_code == 200


def test_key_checker_compares_every_key():
    checker = KeyChecker(KEYS)
    assert checker.check("Bearer key-two-abcdefghij")
    with pytest.raises(Exception, match="invalid API key"):
        checker.check("Bearer key-two-abcdefghiJ")
    assert not KeyChecker(frozenset()).enabled and KeyChecker(frozenset()).check(None) is None


# ---- limits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(serve, tmp_path_factory):
    limits = Limits(max_body_bytes=4096, max_inputs_per_request=4, max_tokens_per_request=300, max_k=5)
    return serve(Settings(limits=limits, index_dir=str(tmp_path_factory.mktemp("tight-idx"))))


def test_body_size_limit(tight):
    with tight.client() as c:
        big = {"model": "jina-colbert-v2", "input": "x" * 5000}
        assert_error(c.post("/v1/multi-vector", json=big), 413, "INPUT_BODY_TOO_LARGE", ("max_body_bytes=4096",))

        def chunks():  # no Content-Length: the limit applies while reading
            yield b'{"model": "jina-colbert-v2", "input": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}'

        r = c.post("/v1/multi-vector", content=chunks(), headers={"content-type": "application/json"})
        assert_error(r, 413, "INPUT_BODY_TOO_LARGE", ("max_body_bytes=4096",))
        assert (
            c.post(
                "/v1/multi-vector", json={"model": "jina-colbert-v2", "input": "x" * 3000, "input_type": "query"}
            ).status_code
            == 200
        )


def test_huge_body_on_default_server(client):
    """16 MiB default: a 20 MB body is refused with 413, every time. The server reads the rest of
    the body before answering, so the answer is not lost to a connection reset (it was, now and
    then, when the server answered and closed while the client was still sending) and the
    connection stays open for the next request."""
    body = b'{"input": "' + b"z" * 20_000_000 + b'"}'
    for _ in range(3):
        r = client.post("/v1/multi-vector", content=body, headers={"content-type": "application/json"})
        assert_error(r, 413, "INPUT_BODY_TOO_LARGE", ("max_body_bytes=16777216", f"{len(body)} bytes"))
        assert r.headers.get("connection") != "close"
    assert client.get("/health").status_code == 200


def test_inputs_per_request_limit(tight):
    with tight.client() as c:
        assert c.post("/v1/multi-vector", json={"model": "jina-colbert-v2", "input": ["a"] * 4}).status_code == 200
        assert_error(
            c.post("/v1/multi-vector", json={"model": "jina-colbert-v2", "input": ["a"] * 5}),
            422,
            "INPUT_LIMIT_EXCEEDED",
            ("max_inputs_per_request=4",),
        )
        assert_error(
            c.post("/v1/rerank", json={"model": "jina-colbert-v2", "query": "q", "documents": ["d"] * 5}),
            422,
            "INPUT_LIMIT_EXCEEDED",
            ("max_inputs_per_request=4",),
        )
        assert_error(
            c.post("/v1/explain", json={"query": "q", "documents": ["d"] * 5}),
            422,
            mentions=("max_inputs_per_request=4",),
        )
        c.post("/v1/indexes", json={"name": "lim"})
        assert_error(
            c.post("/v1/indexes/lim/documents", json={"documents": ["d"] * 5}),
            422,
            mentions=("max_inputs_per_request=4",),
        )


def test_tokens_per_request_limit(tight):
    with tight.client() as c:
        long_doc = " ".join(f"w{i}" for i in range(400))
        assert_error(
            c.post("/v1/multi-vector", json={"model": "jina-colbert-v2", "input": long_doc}),
            422,
            "INPUT_LIMIT_EXCEEDED",
            ("max_tokens_per_request=300",),
        )
        # queries cost 32 tokens each however short: 4 queries = 128 tokens pass
        assert (
            c.post(
                "/v1/multi-vector", json={"model": "jina-colbert-v2", "input": ["q"] * 4, "input_type": "query"}
            ).status_code
            == 200
        )
        assert_error(
            c.post("/v1/rerank", json={"model": "jina-colbert-v2", "query": "q", "documents": [long_doc]}),
            422,
            mentions=("max_tokens_per_request=300",),
        )


def test_k_limit(tight):
    with tight.client() as c:
        c.post("/v1/indexes", json={"name": "klim"})
        c.post("/v1/indexes/klim/documents", json={"documents": ["alpha", "beta"]})
        assert c.post("/v1/indexes/klim/search", json={"query": "alpha", "k": 5}).status_code == 200
        assert_error(
            c.post("/v1/indexes/klim/search", json={"query": "alpha", "k": 6}),
            422,
            "INPUT_LIMIT_EXCEEDED",
            ("max_k=5",),
        )


def test_rate_limits(serve):
    srv = serve(Settings(api_keys=KEYS, limits=Limits(requests_per_minute=3, tokens_per_minute=100)))
    a = {"Authorization": f"Bearer {min(KEYS)}"}
    b = {"Authorization": f"Bearer {sorted(KEYS)[1]}"}
    q = {"model": "jina-colbert-v2", "input": ["q"], "input_type": "query"}  # 32 tokens
    with srv.client() as c:
        r1 = c.post("/v1/multi-vector", json=q, headers=a)
        assert r1.status_code == 200
        assert r1.headers["x-ratelimit-remaining-requests"] == "2"
        assert r1.headers["x-ratelimit-remaining-tokens"] == "68"
        r2 = c.post("/v1/multi-vector", json={**q, "input": ["q", "r", "s"]}, headers=a)  # 96 > 68 left
        assert_error(r2, 429, "RATE_TOKEN_LIMIT_EXCEEDED", ("tokens_per_minute=100",))
        assert int(r2.headers["retry-after"]) >= 1
        assert c.post("/v1/multi-vector", json=q, headers=a).status_code == 200
        r4 = c.post("/v1/multi-vector", json=q, headers=a)
        assert_error(r4, 429, "RATE_REQUEST_LIMIT_EXCEEDED", ("requests_per_minute=3",))
        assert r4.headers["x-ratelimit-remaining-requests"] == "0"
        # another key has its own budget
        assert c.post("/v1/multi-vector", json=q, headers=b).status_code == 200


def test_timeout_is_504(serve):
    srv = serve(Settings(limits=Limits(request_timeout_s=0.000001)))
    with srv.client() as c:
        assert_error(c.post("/v1/multi-vector", json=EMBED), 504, "SERVICE_TIMEOUT")
        assert c.get("/health").status_code == 200


def test_queue_full_is_503(serve):
    from maxsim.api import BatchSettings

    srv = serve(Settings(limits=Limits(max_queue=1), batching=BatchSettings(enabled=False)))
    doc = " ".join(f"token{i}" for i in range(200))

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as c:
            body = json.dumps({"model": "jina-colbert-v2", "input": [doc] * 2, "embedding_type": "ubinary"})
            rs = await asyncio.gather(*[c.post("/v1/multi-vector", content=body) for _ in range(8)])
            for r in rs:
                if r.status_code == 503:
                    assert r.json()["code"] == "SERVICE_UNAVAILABLE"
            return [r.status_code for r in rs]

    statuses = asyncio.run(burst())
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
