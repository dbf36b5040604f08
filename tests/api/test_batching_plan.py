"""What a shared model call does: identical texts encoded once, forward passes planned for little
padding, no waiting when nothing else is on its way; and batching on or off answers the same."""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import httpx
import numpy as np

from maxsim.api import BatchSettings, Settings
from maxsim.api.batching import plan_passes
from maxsim.scoring.maxsim import maxsim_scores

PASSAGES = [
    "Berlin is the capital and largest city of Germany, both by area and by population.",
    "Mount Berlin is a glacier-covered volcano in Marie Byrd Land, Antarctica.",
    "Irving Berlin was an American composer and songwriter.",
    "Paris est la capitale de la France et sa plus grande ville.",
    "東京は日本の首都であり、世界有数の大都市である。",
    "Der Rhein ist ein Strom in Mitteleuropa, der in den Alpen entspringt und in die Nordsee mündet. " * 6,
    "La paella es un plato de arroz originario de la Comunidad Valenciana.",
    "The Amazon river carries more water than any other river in the world.",
]
QUERIES = ["What is the population of Berlin?", "capital of France", "どこが日本の首都ですか", "longest river"]


def _metric(text: str, name: str, labels: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if (head == name or head.startswith(name + "{")) and labels in head:
            total += float(value)
    return total


def _post_all(url: str, path: str, bodies: list[dict]) -> list[httpx.Response]:
    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            return await asyncio.gather(*[c.post(path, json=b) for b in bodies])

    return asyncio.run(run())


def _rerank_bodies() -> list[dict]:
    """Requests whose candidate lists overlap (the same passages, in different orders and subsets)."""
    rng = random.Random(7)
    bodies = []
    for i in range(12):
        docs = rng.sample(PASSAGES, 5)
        bodies.append(
            {
                "model": "jina-colbert-v2",
                "query": QUERIES[i % len(QUERIES)],
                "documents": docs,
                "return_documents": False,
            }
        )
    return bodies


def _scores(resp: httpx.Response) -> dict[int, float]:
    assert resp.status_code == 200, resp.text
    return {r["index"]: r["relevance_score"] for r in resp.json()["results"]}


def test_shared_passages_are_encoded_once_and_score_as_if_alone(serve, model):
    srv = serve(Settings(batching=BatchSettings(enabled=True, max_wait_ms=200)))
    bodies = _rerank_bodies()
    responses = _post_all(srv.url, "/v1/rerank", bodies)
    for body, r in zip(bodies, responses, strict=True):
        q = model.encode_queries([body["query"]])[0]
        want = maxsim_scores(q, model.encode_documents(body["documents"]))
        got = _scores(r)
        np.testing.assert_allclose([got[i] for i in range(len(want))], want, rtol=1e-5, atol=1e-4)
    text = httpx.get(srv.url + "/metrics").text
    requested = _metric(text, "maxsim_model_inputs_total", 'kind="requested"')
    encoded = _metric(text, "maxsim_model_inputs_total", 'kind="encoded"')
    assert requested == sum(1 + len(b["documents"]) for b in bodies)
    calls = _metric(text, "maxsim_batch_jobs_count")
    assert calls < len(bodies), "the concurrent requests were not batched"
    # every call encodes each distinct text once: at most the distinct passages and queries, per call
    assert encoded <= calls * (len(PASSAGES) + len(QUERIES)) and encoded < requested
    padded = _metric(text, "maxsim_model_tokens_total", 'kind="padded"')
    real = _metric(text, "maxsim_model_tokens_total", 'kind="encoded"')
    assert 0 < real <= padded


def test_repeated_text_in_one_request_gets_equal_vectors(client):
    body = {"model": "jina-colbert-v2", "input": ["same text", "other text", "same text"]}
    r = client.post("/v1/multi-vector", json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data[0]["embeddings"] == data[2]["embeddings"] != data[1]["embeddings"]


def test_batching_on_and_off_answer_the_same(serve):
    on = serve(Settings(batching=BatchSettings(enabled=True, max_wait_ms=100)))
    off = serve(Settings(batching=BatchSettings(enabled=False)))
    bodies = _rerank_bodies()
    got_on = [_scores(r) for r in _post_all(on.url, "/v1/rerank", bodies)]
    got_off = [_scores(r) for r in _post_all(off.url, "/v1/rerank", bodies)]
    for a, b in zip(got_on, got_off, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5, atol=1e-4)
    embed = [{"model": "jina-colbert-v2", "input": PASSAGES[i : i + 3], "embedding_type": "float"} for i in range(5)]
    for r_on, r_off in zip(
        _post_all(on.url, "/v1/multi-vector", embed), _post_all(off.url, "/v1/multi-vector", embed), strict=True
    ):
        for x, y in zip(r_on.json()["data"], r_off.json()["data"], strict=True):
            np.testing.assert_allclose(np.asarray(x["embeddings"]), np.asarray(y["embeddings"]), atol=1e-4)


def test_a_lone_request_does_not_wait_for_company(serve):
    """With a long batching wait configured, requests sent one after another never make the worker
    wait (nothing else is on its way); concurrent ones do share calls."""
    srv = serve(Settings(batching=BatchSettings(enabled=True, max_wait_ms=1000)))
    with srv.client() as c:
        for i in range(4):
            r = c.post("/v1/multi-vector", json={"model": "jina-colbert-v2", "input": [PASSAGES[i]]})
            assert r.status_code == 200
        text = c.get("/metrics").text
    assert _metric(text, "maxsim_batch_jobs_count") == 4
    assert _metric(text, "maxsim_batch_waits_total") == 0
    responses = _post_all(srv.url, "/v1/multi-vector", [{"model": "jina-colbert-v2", "input": [p]} for p in PASSAGES])
    assert all(r.status_code == 200 for r in responses)
    text = httpx.get(srv.url + "/metrics").text
    assert _metric(text, "maxsim_batch_jobs_count") < 4 + len(PASSAGES)


def test_plan_passes_is_optimal_and_keeps_limits():
    rng = random.Random(3)

    def cost(lengths, passes, overhead):
        return sum(lengths[b - 1] * (b - a) + overhead for a, b in passes)

    for _ in range(200):
        n = rng.randint(1, 7)
        lengths = sorted(rng.choice([8, 12, 32, 40, 90, 200, 480]) for _ in range(n))
        overhead = rng.choice([0, 16, 32, 100])
        passes = plan_passes(lengths, max_texts=4, max_tokens=1000, overhead=overhead)
        assert passes[0][0] == 0 and passes[-1][1] == n and all(p[1] == q[0] for p, q in itertools.pairwise(passes))
        assert all(b - a <= 4 and (lengths[b - 1] * (b - a) <= 1000 or b - a == 1) for a, b in passes)
        best = None  # brute force over every way to cut the sorted list
        for mask in range(1 << (n - 1)):
            cuts = [0] + [i + 1 for i in range(n - 1) if mask >> i & 1] + [n]
            parts = list(itertools.pairwise(cuts))
            if all(b - a <= 4 and (lengths[b - 1] * (b - a) <= 1000 or b - a == 1) for a, b in parts):
                c = cost(lengths, parts, overhead)
                best = c if best is None else min(best, c)
        assert cost(lengths, passes, overhead) == best
    assert plan_passes([]) == []
    assert plan_passes([30, 32, 500]) == [(0, 2), (2, 3)]


def test_pass_cost_learns_the_cost_of_a_pass():
    from maxsim.api.batching import PASS_OVERHEAD_TOKENS, PassCost

    cost = PassCost()
    assert cost.overhead() == PASS_OVERHEAD_TOKENS  # nothing seen yet
    for positions in [100, 400, 2000, 50, 900, 3000, 700, 1200, 64, 5000] * 3:
        cost.add(positions, 0.05 + 0.0002 * positions)  # a pass costs 250 positions' time
    assert abs(cost.overhead() - 250) < 1
    busy = PassCost()
    for positions in [100, 400, 2000, 50, 900, 3000, 700, 1200, 64, 5000] * 3:
        busy.add(positions, 5.0 + 0.0002 * positions)  # far beyond the upper bound
    assert busy.overhead() == busy.hi
    assert plan_passes([30, 32, 200, 210, 500], overhead=0) != plan_passes([30, 32, 200, 210, 500], overhead=busy.hi)
    assert plan_passes([30, 32, 200, 210, 500], overhead=busy.hi) == [(0, 5)]


def test_request_counts_return_to_zero_after_timeouts_and_errors(serve):
    """A request that timed out while its job ran, or failed before encoding, leaves no count
    behind (a leaked count would make the worker wait before every later call)."""
    from maxsim.api import Limits

    srv = serve(Settings(limits=Limits(request_timeout_s=0.05)))
    long_docs = [" ".join(f"w{i}x{j}" for j in range(400)) for i in range(4)]
    bodies = [
        {"model": "jina-colbert-v2", "input": long_docs},
        {"model": "nope", "input": ["x"]},
        {"model": "jina-colbert-v2", "input": []},
        {"model": "jina-colbert-v2", "input": ["short"]},
    ]
    responses = _post_all(srv.url, "/v1/multi-vector", bodies)
    assert responses[0].status_code == 504 and responses[1].status_code == 400 and responses[2].status_code == 422
    batcher = srv.app.state.service.batcher
    deadline = time.monotonic() + 60
    while batcher.queue_depth or batcher._finishing or batcher.announced:
        assert time.monotonic() < deadline, (batcher.announced, batcher._finishing)
        time.sleep(0.05)
    assert batcher.announced == 0 and batcher._finishing == 0
