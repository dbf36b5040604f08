"""Index endpoints: create, list, describe, add (ids, metadata), delete, search (k, filter, explain)."""

from __future__ import annotations

import pytest

from maxsim.api import Settings
from maxsim.api.settings import SettingsError
from tests.api.conftest import assert_error, start_server

DOCS = [
    {
        "text": "Berlin is the capital and largest city of Germany.",
        "id": "berlin",
        "metadata": {"lang": "en", "year": 2024},
    },
    {"text": "Paris est la capitale de la France.", "id": "paris", "metadata": {"lang": "fr", "year": 2023}},
    {"text": "東京は日本の首都であり、最大の都市です。", "id": "tokyo", "metadata": {"lang": "ja", "year": 2024}},
    {"text": "Bananas are rich in potassium.", "id": "banana", "metadata": {"lang": "en", "year": 2020}},
]


@pytest.fixture(scope="module")
def idx(client):
    r = client.post("/v1/indexes", json={"name": "cities"})
    assert r.status_code == 201, r.text
    r = client.post("/v1/indexes/cities/documents", json={"documents": DOCS})
    assert r.status_code == 201, r.text
    return "cities"


@pytest.fixture(scope="module")
def client(server):
    with server.client() as c:
        yield c


def test_create_list_describe(client, idx, model):
    listed = client.get("/v1/indexes").json()["data"]
    assert {
        "name": "cities",
        "model": model.name,
        "dimensions": 128,
        "nbits": 2,
        "refine_bits": 0,
        "documents": 4,
    } in listed
    d = client.get("/v1/indexes/cities").json()
    assert d["name"] == "cities" and d["documents"] == 4 and d["dimensions"] == 128 and d["model"] == model.name
    assert d["tokens"] > 20 and d["bytes_on_disk"] > 0 and d["segments"] >= 1
    r = client.post("/v1/indexes", json={"name": "small", "dimensions": 64, "nbits": 1})
    assert r.status_code == 201 and r.json()["dimensions"] == 64 and r.json()["nbits"] == 1
    assert_error(client.post("/v1/indexes", json={"name": "cities"}), 409, "INDEX_EXISTS")
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 65, "sp ace"):
        assert_error(client.post("/v1/indexes", json={"name": bad}), 422, mentions=("name",))
    assert_error(client.post("/v1/indexes", json={"name": "d", "dimensions": 100}), 422, mentions=("dimensions",))
    assert_error(client.post("/v1/indexes", json={"name": "d", "nbits": 3}), 422, mentions=("nbits",))
    assert_error(client.get("/v1/indexes/nope"), 404, "INDEX_NOT_FOUND", ("nope",))


def test_create_with_a_refinement_plane(client):
    r = client.post("/v1/indexes", json={"name": "twoplane", "nbits": 2, "refine_bits": 2})
    assert r.status_code == 201, r.text
    assert r.json()["refine_bits"] == 2
    assert client.post("/v1/indexes/twoplane/documents", json={"documents": DOCS}).status_code == 201
    assert client.get("/v1/indexes/twoplane").json()["refine_bits"] == 2
    hits = client.post("/v1/indexes/twoplane/search", json={"query": "capitale de la France", "k": 1}).json()
    assert hits["results"][0]["id"] == "paris"
    # the plane must match nbits (1 or 2): a clear 422 naming the field, nothing created
    assert_error(
        client.post("/v1/indexes", json={"name": "tp2", "nbits": 4, "refine_bits": 2}), 422, mentions=("refine_bits",)
    )
    assert_error(client.post("/v1/indexes", json={"name": "tp3", "refine_bits": 3}), 422, mentions=("refine_bits",))
    assert_error(client.post("/v1/indexes", json={"name": "tp4", "refine_bits": False}), 422, mentions=("refine_bits",))
    assert "tp2" not in [d["name"] for d in client.get("/v1/indexes").json()["data"]]


def test_search_k_and_multilingual(client, idx):
    out = client.post(
        "/v1/indexes/cities/search", json={"query": "Quelle est la capitale de la France ?", "k": 2}
    ).json()
    assert out["results"][0]["id"] == "paris"
    assert len(out["results"]) == 2
    assert out["results"][0]["text"] == DOCS[1]["text"] and out["results"][0]["metadata"] == DOCS[1]["metadata"]
    assert out["usage"]["total_tokens"] == 32
    scores = [h["score"] for h in out["results"]]
    assert scores == sorted(scores, reverse=True)
    out = client.post("/v1/indexes/cities/search", json={"query": "日本の首都はどこですか", "k": 10}).json()
    assert out["results"][0]["id"] == "tokyo" and len(out["results"]) == 4
    out = client.post("/v1/indexes/cities/search", json={"query": "capital", "return_documents": False}).json()
    assert all(set(h) == {"id", "score"} for h in out["results"])


def test_search_filter(client, idx):
    out = client.post("/v1/indexes/cities/search", json={"query": "capital city", "filter": {"lang": "en"}}).json()
    assert {h["id"] for h in out["results"]} == {"berlin", "banana"}
    out = client.post(
        "/v1/indexes/cities/search", json={"query": "capital city", "filter": {"lang": ["fr", "ja"], "year": 2024}}
    ).json()
    assert [h["id"] for h in out["results"]] == ["tokyo"]
    out = client.post("/v1/indexes/cities/search", json={"query": "capital", "filter": {"lang": "de"}}).json()
    assert out["results"] == []
    assert_error(client.post("/v1/indexes/cities/search", json={"query": "q", "filter": {}}), 422, mentions=("filter",))
    # SQL is not accepted over HTTP, only key/value objects
    assert_error(
        client.post("/v1/indexes/cities/search", json={"query": "q", "filter": "1=1; DROP TABLE docs"}),
        422,
        mentions=("filter",),
    )
    assert_error(
        client.post("/v1/indexes/cities/search", json={"query": "q", "filter": {"lang": {"$ne": "x"}}}),
        422,
        mentions=("filter",),
    )


def test_search_hybrid(client, idx):
    plain = client.post("/v1/indexes/cities/search", json={"query": "potassium", "k": 4}).json()["results"]
    out = client.post("/v1/indexes/cities/search", json={"query": "potassium", "k": 4, "hybrid": True}).json()
    assert out["results"][0]["id"] == "banana" and len(out["results"]) == 4
    assert [h["score"] for h in out["results"]] != [h["score"] for h in plain]  # fused scores, not MaxSim
    lexical_only = client.post("/v1/indexes/cities/search", json={"query": "potassium", "hybrid": 1.0}).json()[
        "results"
    ]
    assert [h["id"] for h in lexical_only] == ["banana"]  # BM25 alone: only documents sharing a term
    filtered = client.post(
        "/v1/indexes/cities/search", json={"query": "potassium", "hybrid": True, "filter": {"lang": "fr"}}
    )
    assert [h["id"] for h in filtered.json()["results"]] == ["paris"]
    assert_error(
        client.post("/v1/indexes/cities/search", json={"query": "q", "hybrid": 1.5}), 422, mentions=("hybrid",)
    )


def test_search_explain(client, idx):
    out = client.post("/v1/indexes/cities/search", json={"query": "capital of Germany", "k": 1, "explain": True}).json()
    hit = out["results"][0]
    assert hit["id"] == "berlin"
    ex = hit["explanation"]
    assert len(ex["matches"]) == 32
    assert ex["score"] == pytest.approx(sum(m["similarity"] for m in ex["matches"]), abs=1e-3)
    assert ex["score"] == pytest.approx(hit["score"], rel=0.1)  # the index score is from compressed vectors
    q = ex["query_tokens"].index("▁Germany")
    assert ex["document_tokens"][ex["matches"][q]["document_token"]] == "▁Germany"
    assert (
        "".join(t for t, k in zip(ex["document_tokens"], ex["document_token_kinds"], strict=True) if k != "special")
        .replace("▁", " ")
        .strip()
        == DOCS[0]["text"]
    )


def test_add_generated_ids_and_errors(client, idx, tmp_path):
    r = client.post("/v1/indexes/cities/documents", json={"documents": ["Madrid is the capital of Spain."]})
    assert r.status_code == 201
    new_id = r.json()["ids"][0]
    assert len(new_id) == 32 and r.json()["documents"] == 5
    assert_error(
        client.post("/v1/indexes/cities/documents", json={"documents": [{"text": "again", "id": "berlin"}]}),
        409,
        "DOCUMENT_EXISTS",
        ("berlin",),
    )
    assert_error(
        client.post("/v1/indexes/cities/documents", json={"documents": [{"text": "a", "id": "x"}, {"text": "b"}]}),
        422,
        mentions=("id",),
    )
    assert_error(
        client.post(
            "/v1/indexes/cities/documents", json={"documents": [{"text": "a", "id": "d"}, {"text": "b", "id": "d"}]}
        ),
        422,
        mentions=("duplicate",),
    )
    assert_error(client.post("/v1/indexes/cities/documents", json={"documents": []}), 422, mentions=("documents",))
    assert_error(
        client.post("/v1/indexes/cities/documents", json={"documents": [{"text": "a", "metadata": [1]}]}),
        422,
        mentions=("metadata",),
    )
    assert_error(
        client.post("/v1/indexes/cities/documents", content=b'{"documents": [{"text": "a", "id": "\\udc80"}]}'),
        422,
        mentions=("surrogate",),
    )
    assert_error(client.post("/v1/indexes/nope/documents", json={"documents": ["a"]}), 404, "INDEX_NOT_FOUND")
    r = client.post("/v1/indexes/cities/documents/delete", json={"ids": [new_id]})
    assert r.json() == {"index": "cities", "deleted": 1, "documents": 4}


def test_writes_are_durable_when_acknowledged(client, server, idx):
    """What a 201 acknowledged is on disk: a fresh reader (separate catalog connection) sees it."""
    from maxsim.index import Index

    r = client.post(
        "/v1/indexes/cities/documents",
        json={"documents": [{"text": "Rome is the capital of Italy.", "id": "rome", "metadata": {"lang": "en"}}]},
    )
    assert r.status_code == 201
    path = f"{server.settings.index_dir}/cities"
    with Index.open(path, readonly=True) as reader:
        assert "rome" in reader and len(reader) == 5
        assert reader.get(["rome"])[0]["metadata"] == {"lang": "en"}
    r = client.delete("/v1/indexes/cities/documents/rome")
    assert r.json()["deleted"] == 1
    with Index.open(path, readonly=True) as reader:
        assert "rome" not in reader and len(reader) == 4
    assert_error(client.delete("/v1/indexes/cities/documents/rome"), 404, "DOCUMENT_NOT_FOUND", ("rome",))
    assert_error(
        client.post("/v1/indexes/cities/documents/delete", json={"ids": ["paris", "nope"]}), 404, mentions=("nope",)
    )
    assert client.get("/v1/indexes/cities").json()["documents"] == 4  # all or nothing


def test_served_index_and_model_check(model, tmp_path):
    from maxsim.index import Index

    with Index.create(tmp_path / "pre", model=model) as ix:
        ix.add(["pre-built document about rivers"], ids=["river"])
    srv = start_server(model, Settings(indexes=(("pre", str(tmp_path / "pre")),)))
    try:
        with srv.client() as c:
            assert [d["name"] for d in c.get("/v1/indexes").json()["data"]] == ["pre"]
            assert c.post("/v1/indexes/pre/search", json={"query": "rivers"}).json()["results"][0]["id"] == "river"
            assert_error(c.post("/v1/indexes", json={"name": "new"}), 403, "INDEX_CREATION_DISABLED", ("--index-dir",))
    finally:
        srv.stop()
    import json as _json

    manifest = tmp_path / "pre" / "manifest.json"
    data = _json.loads(manifest.read_text())
    manifest.write_text(_json.dumps({**data, "model": "some-other-model"}))
    with pytest.raises(SettingsError, match="some-other-model"):
        srv = start_server(model, Settings(indexes=(("pre", str(tmp_path / "pre")),)))


def test_disk_full_is_507_and_nothing_is_written(client, idx, monkeypatch):
    """A full disk under a served index: a documented 507 naming the cause, not a 500, and the
    write rolled back (the server runs in this process, so numpy's writes can be made to fail)."""
    import errno

    import numpy as np

    before = client.get(f"/v1/indexes/{idx}").json()["documents"]

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", no_space)
    r = client.post(
        f"/v1/indexes/{idx}/documents", json={"documents": [{"text": "Lisbon is in Portugal.", "id": "lx"}]}
    )
    monkeypatch.undo()
    assert_error(r, 507, "INDEX_STORAGE_FULL", ("disk full",))
    assert client.get(f"/v1/indexes/{idx}").json()["documents"] == before
    r = client.post(
        f"/v1/indexes/{idx}/documents", json={"documents": [{"text": "Lisbon is in Portugal.", "id": "lx"}]}
    )
    assert r.status_code == 201, r.text  # the same write succeeds once there is space
