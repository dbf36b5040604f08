"""Micro-batching (results equal to one-by-one encoding, batches really form, the event loop stays
free), Prometheus metrics, and the ``maxsim serve`` command."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from maxsim.api import BatchSettings, Settings
from maxsim.api.settings import SettingsError, is_loopback


def _metric(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + ("{" if labels or "{" in line.split(" ")[0] else " ")) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _concurrent(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            return await asyncio.gather(*[c.post("/v1/multi-vector", json=b) for b in bodies])

    return asyncio.run(run())


TEXTS = [
    f"document number {i} about {topic}"
    for i, topic in enumerate(
        [
            "rivers",
            "mountains",
            "Berlin",
            "東京",
            "la France",
            "potassium",
            "volcanoes",
            "songs",
            "cities",
            "trains",
            "ice",
            "sand",
        ]
    )
]


def test_batched_results_equal_single_encoding(serve, model):
    srv = serve(Settings(batching=BatchSettings(enabled=True, max_wait_ms=50)))
    bodies = [
        {
            "model": "jina-colbert-v2",
            "input": [t],
            "input_type": "query" if i % 3 == 0 else "document",
            "dimensions": (128, 96, 64)[i % 3],
        }
        for i, t in enumerate(TEXTS)
    ]
    responses = _concurrent(srv.url, bodies)
    for body, r in zip(bodies, responses, strict=True):
        assert r.status_code == 200, r.text
        encode = model.encode_queries if body["input_type"] == "query" else model.encode_documents
        want = encode(body["input"], dim=body["dimensions"])[0]
        np.testing.assert_allclose(np.asarray(r.json()["data"][0]["embeddings"], dtype=np.float32), want, atol=1e-4)
    text = httpx.get(srv.url + "/metrics").text
    jobs = _metric(text, "maxsim_batch_jobs_count")
    single = _metric(text, "maxsim_batch_jobs_bucket", 'le="1"')
    assert jobs < len(TEXTS) and single < jobs, "concurrent requests were not encoded together"
    assert _metric(text, "maxsim_batch_jobs_sum") == len(TEXTS)


def test_no_batching_encodes_one_request_per_call(serve):
    srv = serve(Settings(batching=BatchSettings(enabled=False)))
    responses = _concurrent(srv.url, [{"model": "jina-colbert-v2", "input": [t, t + "!"]} for t in TEXTS[:6]])
    assert all(r.status_code == 200 for r in responses)
    text = httpx.get(srv.url + "/metrics").text
    assert _metric(text, "maxsim_batch_jobs_count") == 6 == _metric(text, "maxsim_batch_jobs_bucket", 'le="1"')
    assert httpx.get(srv.url + "/health").json()["batching"] is False


def test_event_loop_free_during_model_work(server):
    """/health answers while a long encode is running."""
    long_docs = [" ".join(f"w{i}x{j}" for j in range(500)) for i in range(3)]  # ~2,500 tokens each

    async def run():
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as c:
            big = asyncio.create_task(
                c.post(
                    "/v1/multi-vector",
                    json={"model": "jina-colbert-v2", "input": long_docs, "embedding_type": "ubinary"},
                )
            )
            await asyncio.sleep(0.2)
            t0 = time.perf_counter()
            health = await c.get("/health")
            elapsed = time.perf_counter() - t0
            done_before = big.done()
            r = await big
            return health, elapsed, done_before, r

    health, elapsed, done_before, r = asyncio.run(run())
    assert r.status_code == 200 and health.status_code == 200
    assert not done_before, "the long request finished too fast to tell"
    assert elapsed < 2.0


def test_metrics_text(client):
    client.post("/v1/rerank", json={"model": "jina-colbert-v2", "query": "q", "documents": ["a", "b"]})
    client.post("/v1/rerank", json={"model": "nope", "query": "q", "documents": ["a"]})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    line = re.compile(r'^(# (HELP|TYPE) .+|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [-+0-9.eInf]+)$')
    assert all(line.match(x) for x in text.strip().splitlines()), [x for x in text.splitlines() if not line.match(x)][
        :3
    ]
    assert _metric(text, "maxsim_requests_total", 'route="/v1/rerank",status="200"') >= 1
    assert _metric(text, "maxsim_requests_total", 'route="/v1/rerank",status="400"') >= 1
    assert _metric(text, "maxsim_request_duration_seconds_count", 'route="/v1/rerank"') >= 2
    assert _metric(text, "maxsim_tokens_total", 'endpoint="rerank",input_type="query"') >= 32
    assert _metric(text, "maxsim_batch_inputs_count") >= 1
    assert _metric(text, "maxsim_rejected_total", 'code="INPUT_MODEL_NOT_FOUND"') >= 1
    assert "maxsim_queue_depth 0" in text


# ---- settings and the command ----------------------------------------------------------------


def test_bind_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.0.1")
    assert (
        not is_loopback("0.0.0.0")
        and not is_loopback("::")
        and not is_loopback("192.168.1.4")
        and not is_loopback("example.org")
    )
    Settings(host="127.0.0.1").check_bind()
    for host in ("0.0.0.0", "::", "10.0.0.1"):
        with pytest.raises(SettingsError, match="--allow-unauthenticated"):
            Settings(host=host).check_bind()
        Settings(host=host, allow_unauthenticated=True).check_bind()
        Settings(host=host, api_keys=frozenset({"a-long-enough-key"})).check_bind()
    with pytest.raises(SettingsError, match="8 characters"):
        Settings(api_keys=frozenset({"short"}))


def _maxsim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "maxsim.cli", *args], check=False, capture_output=True, text=True, timeout=timeout
    )


def test_serve_refuses_public_bind_without_keys():
    t0 = time.perf_counter()
    r = _maxsim("serve", "--host", "0.0.0.0", "--port", "1")
    assert r.returncode == 2 and "refusing to listen on '0.0.0.0'" in r.stderr
    assert time.perf_counter() - t0 < 30  # refused before loading the model
    r = _maxsim("serve", "--index", "bad name=/tmp/x")
    assert r.returncode == 2 and "index name" in r.stderr
    r = _maxsim("serve", "--api-keys-file", "/nonexistent/keys")
    assert r.returncode == 2 and "cannot read API keys file" in r.stderr


def test_serve_command_end_to_end(tmp_path):
    """`maxsim serve` as a user runs it: keys from a file, an index directory, real HTTP."""
    keys = tmp_path / "keys.txt"
    keys.write_text("# one key per line\nfile-key-0123456789\n")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maxsim.cli",
            "serve",
            "--port",
            str(port),
            "--api-keys-file",
            str(keys),
            "--index-dir",
            str(tmp_path / "idx"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        h = {"Authorization": "Bearer file-key-0123456789"}
        assert (
            httpx.post(
                url + "/v1/rerank", json={"model": "jina-colbert-v2", "query": "q", "documents": ["d"]}
            ).status_code
            == 401
        )
        r = httpx.post(
            url + "/v1/rerank", json={"model": "jina-colbert-v2", "query": "q", "documents": ["d"]}, headers=h
        )
        assert r.status_code == 200 and r.headers["x-request-id"]
        assert httpx.post(url + "/v1/indexes", json={"name": "cli"}, headers=h).status_code == 201
        assert (tmp_path / "idx" / "cli" / "manifest.json").exists()
        assert httpx.get(url + "/docs").status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
