"""`maxsim serve` serves a sharded index found under --index-dir (real server on loopback)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from maxsim.api import Settings  # noqa: E402
from maxsim.index.sharded import ShardedIndex, shard_of  # noqa: E402
from tests.api.conftest import start_server  # noqa: E402

DOCS = {
    "paris": "Paris is the capital of France.",
    "berlin": "Berlin is the capital of Germany.",
    "tokyo": "Tokyo is the capital of Japan.",
    "cats": "Cats sleep most of the day.",
    "rain": "Rain falls from clouds.",
    "bread": "Bread is baked from flour.",
}


def test_server_searches_and_writes_a_sharded_index(tmp_path, default_model):
    with ShardedIndex.create(tmp_path / "indexes" / "world", 3, model=default_model) as s:
        s.add(list(DOCS.values()), ids=list(DOCS), metadata=[{"n": i} for i in range(len(DOCS))])
    server = start_server(default_model, Settings(index_dir=str(tmp_path / "indexes")))
    try:
        with server.client() as c:
            assert "world" in [d["name"] for d in c.get("/v1/indexes").json()["data"]]
            assert c.get("/v1/indexes/world").json()["documents"] == 6
            hits = c.post("/v1/indexes/world/search", json={"query": "capital of Japan", "k": 2}).json()
            assert [h["id"] for h in hits["results"]][0] == "tokyo"
            r = c.post(
                "/v1/indexes/world/documents",
                json={"documents": [{"id": "rome", "text": "Rome is the capital of Italy."}]},
            )
            assert r.status_code == 201, r.text
            hits = c.post("/v1/indexes/world/search", json={"query": "capital of Italy", "k": 1}).json()
            assert hits["results"][0]["id"] == "rome"
    finally:
        server.stop()
    with ShardedIndex.open(tmp_path / "indexes" / "world", readonly=True) as s:
        assert "rome" in s.shards[shard_of("rome", 3)] and len(s) == 7
