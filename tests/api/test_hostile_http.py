"""Issue 14's HTTP items, each against a real server on loopback: numbers that cannot be stored or
written back as JSON, bodies the JSON parser chokes on, a body that never arrives, and an OpenAPI
document that declares every error answer the way it really is."""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
import zlib
from pathlib import Path

import pytest

from maxsim.api import Limits, Settings
from maxsim.api.body import DRAIN_BYTES
from tests.api.conftest import assert_error

DOCS_API = Path(__file__).resolve().parents[2] / "docs" / "api.md"
BIG = 123456789012345678901234567890


def strict_json(text: str):
    """Parse as a strict parser does: NaN and Infinity are not JSON."""

    def refuse(token: str):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def documented_codes() -> set[str]:
    """The codes in docs/api.md's error table."""
    text = DOCS_API.read_text(encoding="utf-8")
    table = text[text.index("## Errors") :]
    return set(re.findall(r"`([A-Z][A-Z_]+)`", table))


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def idx(client):
    assert client.post("/v1/indexes", json={"name": "numbers"}).status_code == 201
    return "/v1/indexes/numbers"


# ---- 7. integers beyond 64 bits ------------------------------------------------------------------


def test_integers_beyond_64_bits_are_refused_naming_the_field(client, idx):
    raw = json.dumps({"documents": [{"text": "big", "id": "big", "metadata": {"n": BIG}}]}).encode()
    body = assert_error(
        client.post(f"{idx}/documents", content=raw),
        422,
        "INPUT_VALIDATION_ERROR",
        ("documents[0].metadata.n", "64-bit"),
    )
    assert body["errors"][0]["field"] == "documents[0].metadata.n"
    for flt in ({"n": BIG}, {"n": [1, -BIG]}, {"n": 2**63}):
        r = client.post(f"{idx}/search", content=json.dumps({"query": "q", "filter": flt}).encode())
        assert_error(r, 422, "INPUT_VALIDATION_ERROR", ("filter.n", "64-bit"))
    # the edges of the range are stored and filtered on exactly
    edge = {"documents": [{"text": "edge of the range", "id": "edge", "metadata": {"hi": 2**63 - 1, "lo": -(2**63)}}]}
    assert client.post(f"{idx}/documents", json=edge).status_code == 201
    hits = client.post(f"{idx}/search", json={"query": "edge", "filter": {"hi": 2**63 - 1}}).json()["results"]
    assert [h["id"] for h in hits] == ["edge"] and hits[0]["metadata"] == {"hi": 2**63 - 1, "lo": -(2**63)}
    assert client.get("/health").status_code == 200


# ---- 8. NaN, Infinity and huge numbers in a rerank document ------------------------------------------


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999", "-2.5e400"])
def test_non_finite_numbers_in_rerank_documents_are_refused(client, token):
    raw = (
        '{"model": "jina-colbert-v2", "query": "q", "documents": '
        '[{"text": "a"}, {"text": "d", "extra": {"score": ' + token + "}}]}"
    ).encode()
    r = client.post("/v1/rerank", content=raw, headers={"content-type": "application/json"})
    body = assert_error(r, 422, "INPUT_VALIDATION_ERROR", ("documents[1].extra.score",))
    strict_json(r.text)
    assert body["errors"][0]["field"] == "documents[1].extra.score"


def test_extra_fields_come_back_as_strict_json(client):
    doc = {"text": "Berlin", "year": 1237, "weight": 1.5e308, "tiny": 5e-324, "big": 2**63 - 1, "tags": ["a", None]}
    r = client.post("/v1/rerank", json={"model": "jina-colbert-v2", "query": "Berlin", "documents": [doc]})
    assert r.status_code == 200, r.text
    assert strict_json(r.text)["results"][0]["document"] == doc


# ---- 9. bodies the parser chokes on ------------------------------------------------------------------


RERANK = json.dumps(
    {"model": "jina-colbert-v2", "query": "capital of Germany", "documents": ["Berlin", "Bananas"]}
).encode()


def test_unreadable_bodies_say_what_is_wrong_with_a_documented_code(client):
    codes = documented_codes()
    cases = [
        (b'{"model": "jina-colbert-v2", "query": "q\xc3\x28", "documents": ["d"]}', {}, ("UTF-8", "position 40")),
        (
            b'{"model": "jina-colbert-v2", "query": "q", "documents": ["d"], "x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
            {},
            ("1001 levels", "64"),
        ),
        (gzip.compress(RERANK), {}, ("UTF-8", "Content-Encoding: gzip")),
        (b"not gzip at all", {"content-encoding": "gzip"}, ("gzip",)),
    ]
    for raw, headers, mentions in cases:
        r = client.post("/v1/rerank", content=raw, headers={"content-type": "application/json", **headers})
        body = assert_error(r, 422, "INPUT_VALIDATION_ERROR", mentions)
        assert body["code"] in codes and body["errors"][0]["field"] == "body"
        assert isinstance(body["detail"], str) and body["message"] == body["detail"]
    headers = {"content-type": "application/json", "content-encoding": "br"}
    r = client.post("/v1/rerank", content=RERANK, headers=headers)
    assert assert_error(r, 415, "INPUT_UNSUPPORTED_ENCODING", ("br",))["code"] in codes
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("encoding,pack", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_bodies_are_read(client, encoding, pack):
    r = client.post(
        "/v1/rerank", content=pack(RERANK), headers={"content-type": "application/json", "content-encoding": encoding}
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["document"]["text"] == "Berlin"


def test_decompression_is_bounded_by_max_body_bytes(serve):
    srv = serve(Settings(limits=Limits(max_body_bytes=10_000)))
    bomb = gzip.compress(b'{"x": "' + b"a" * 1_000_000 + b'"}')
    assert len(bomb) < 10_000
    with srv.client() as c:
        r = c.post("/v1/rerank", content=bomb, headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert_error(r, 413, "INPUT_BODY_TOO_LARGE", ("max_body_bytes=10000",))


def test_every_error_code_the_server_sends_is_documented(client):
    codes = documented_codes()
    answers = [
        client.get("/v1/nothing"),
        client.put("/v1/rerank"),
        client.get("/v1/indexes/none"),
        client.post("/v1/rerank", json={"model": "nope", "query": "q", "documents": ["d"]}),
        client.post("/v1/rerank", json={"model": "jina-colbert-v2"}),
        client.post("/v1/rerank", content=b"{bad"),
        client.post("/v1/indexes/none/search", json={"query": "q"}),
    ]
    for r in answers:
        assert r.status_code >= 400 and r.json()["code"] in codes, (r.status_code, r.text)
    assert "HTTP_ERROR" not in codes


# ---- 10. a body that never arrives ---------------------------------------------------------------------


def _raw_request(
    url: str, head: bytes, drip: bytes = b"", every: float = 0.0, wait: float = 15.0
) -> tuple[bytes, float]:
    """Send ``head`` (and ``drip`` one byte at a time); return what the server answered and when."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as s:
        t0 = time.monotonic()
        s.sendall(head)
        for b in drip:
            time.sleep(every)
            try:
                s.sendall(bytes([b]))
            except OSError:  # the server already answered and closed
                break
        received = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:  # closed by the server
                return received, time.monotonic() - t0
            received += chunk
        return received + b"<still open>", time.monotonic() - t0


def test_a_body_that_never_arrives_times_out_and_closes(serve):
    srv = serve(Settings(limits=Limits(body_timeout_s=1.0)))
    head = b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    answer, seconds = _raw_request(srv.url, head + b'{"model": ')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert not answer.endswith(b"<still open>") and 0.9 < seconds < 10
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["code"] == "INPUT_BODY_TIMEOUT"
    assert "body_timeout_s=1" in body["detail"] and "10 of 100" in body["detail"]
    # a slow drip is bounded by the same deadline (it is the whole body's, not each chunk's)
    answer, seconds = _raw_request(srv.url, head, drip=b"x" * 40, every=0.1)
    assert answer.startswith(b"HTTP/1.1 408") and seconds < 10
    with srv.client() as c:  # still serving
        assert c.post("/v1/rerank", content=RERANK).status_code == 200


def test_a_body_far_over_the_limit_is_answered_at_once_and_closed(serve):
    """A declared body more than DRAIN_BYTES over max_body_bytes is not read at all."""
    srv = serve(Settings(limits=Limits(max_body_bytes=10_000)))
    declared = 10_000 + DRAIN_BYTES + 1
    head = (
        b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % declared
    )
    answer, seconds = _raw_request(srv.url, head + b'{"model": ')
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower(), answer[:300]
    assert not answer.endswith(b"<still open>") and seconds < 5
    assert f"request body of {declared} bytes".encode() in answer


# ---- 11. the OpenAPI document and 405 --------------------------------------------------------------------


def test_openapi_declares_the_real_error_answers(client):
    doc = client.get("/openapi.json").json()
    error = doc["components"]["schemas"]["ErrorBody"]
    assert error["properties"]["detail"]["type"] == "string"
    assert set(error["required"]) == {"detail", "code", "request_id"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    ref = "#/components/schemas/ErrorBody"
    wanted = {
        ("/v1/rerank", "post"): {400, 401, 413, 422, 429},
        ("/v1/multi-vector", "post"): {400, 401, 413, 422, 429},
        ("/v1/indexes", "post"): {401, 403, 409, 413, 422, 429},
        ("/v1/indexes/{name}", "delete"): {401, 403, 404, 409, 429},
        ("/v1/indexes/{name}/documents", "post"): {401, 404, 409, 413, 422, 429},
        ("/v1/indexes/{name}/search", "post"): {401, 404, 413, 422, 429},
    }
    for (path, method), statuses in wanted.items():
        responses = doc["paths"][path][method]["responses"]
        for status in statuses:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema["$ref"] == ref, (path, method, status)
    for path, methods in doc["paths"].items():  # every declared 422 is the error body, never FastAPI's list
        for op in methods.values():
            if "422" in op["responses"]:
                assert op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"] == ref, path
    r = client.post("/v1/rerank", json={"model": "jina-colbert-v2", "query": 3, "documents": []})
    body = assert_error(r, 422, "INPUT_VALIDATION_ERROR", ("query", "documents"))
    assert isinstance(body["detail"], str)
    assert {e["field"].split(".")[0] for e in body["errors"]} >= {"query", "documents"}


def test_405_allow_names_every_method_of_the_path(client):
    for method, path, allowed in [
        ("PUT", "/v1/indexes", {"GET", "POST"}),
        ("PATCH", "/v1/indexes", {"GET", "POST"}),
        ("GET", "/v1/rerank", {"POST"}),
        ("PUT", "/v1/indexes/x", {"GET", "DELETE"}),
        ("GET", "/v1/indexes/x/documents/delete", {"POST", "DELETE"}),  # also /documents/{doc_id}
    ]:
        r = client.request(method, path)
        body = assert_error(r, 405, "METHOD_NOT_ALLOWED", (method,))
        assert {m.strip() for m in r.headers["allow"].split(",")} == allowed, (method, path, r.headers["allow"])
        assert all(m in body["detail"] for m in allowed)
