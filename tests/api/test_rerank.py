"""POST /v1/rerank: the seed example, every field and its default."""

from __future__ import annotations

import pytest

from tests.api.conftest import assert_error

DOCS = [
    "Berlin is the capital of Germany.",
    "Bananas are yellow.",
    "Paris is the capital of France.",
    "Die Hauptstadt Deutschlands ist Berlin.",
]


def rerank(client, **body):
    body.setdefault("model", "jina-colbert-v2")
    return client.post("/v1/rerank", json=body)


def test_seed_rerank(client, model, seeds):
    body = seeds["rerank"]
    r = client.post("/v1/rerank", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == model.name and out["object"] == "list"  # the model that answered, not the alias
    assert len(out["results"]) == 3
    assert {x["index"] for x in out["results"]} == set(seeds["rerank_expected_relevant_indices"])
    scores = [x["relevance_score"] for x in out["results"]]
    assert scores == sorted(scores, reverse=True)
    local = model.rerank(body["query"], body["documents"], top_n=3)
    assert [x["index"] for x in out["results"]] == [x["index"] for x in local]
    for got, want in zip(out["results"], local, strict=True):
        assert got["relevance_score"] == pytest.approx(want["relevance_score"], abs=1e-3)
        assert got["document"] == {"text": body["documents"][got["index"]]}
    n = 32 + sum(model.tokenizer.count_tokens(body["documents"], is_query=False))
    assert out["usage"] == {"total_tokens": n, "prompt_tokens": n}


def test_defaults_all_documents_with_text(client):
    out = rerank(client, query="capital of Germany", documents=DOCS).json()
    assert sorted(x["index"] for x in out["results"]) == [0, 1, 2, 3]
    assert out["results"][0]["index"] in (0, 3)
    assert out["results"][-1]["index"] == 1
    assert all(x["document"]["text"] == DOCS[x["index"]] for x in out["results"])


def test_return_documents_false_and_top_n(client):
    out = rerank(client, query="capital of Germany", documents=DOCS, top_n=2, return_documents=False).json()
    assert len(out["results"]) == 2
    assert all(x.get("document") is None for x in out["results"])
    out = rerank(client, query="capital", documents=DOCS, top_n=100).json()
    assert len(out["results"]) == 4


def test_objects_keep_their_fields(client):
    docs = [
        {"text": DOCS[0], "id": "de", "url": "https://example.org/de", "rank": 7},
        DOCS[1],
        {"text": DOCS[2], "id": 3},
    ]
    out = rerank(client, query={"text": "capital of France"}, documents=docs).json()
    by_index = {x["index"]: x["document"] for x in out["results"]}
    assert by_index[0] == docs[0]
    assert by_index[1] == {"text": DOCS[1]}
    assert by_index[2] == {"text": DOCS[2], "id": 3}
    assert out["results"][0]["index"] == 2


@pytest.mark.parametrize("truncation", [True, False, None])
def test_truncation_accepted(client, truncation):
    assert rerank(client, query="q", documents=["d"], truncation=truncation).status_code == 200


def test_single_document_and_unicode(client):
    out = rerank(client, query="¿Dónde está Tokio?", documents=["東京は日本の首都です。"]).json()
    assert len(out["results"]) == 1 and out["results"][0]["relevance_score"] > 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"query": "q"}, "documents"),
        ({"documents": ["d"]}, "query"),
        ({"query": "q", "documents": []}, "documents"),
        ({"query": "q", "documents": "d"}, "documents"),
        ({"query": "q", "documents": [1]}, "documents"),
        ({"query": "q", "documents": [{"id": "x"}]}, "documents"),
        ({"query": 5, "documents": ["d"]}, "query"),
        ({"query": {"text": "q", "x": 1}, "documents": ["d"]}, "query"),
        ({"query": "q", "documents": ["d"], "top_n": 0}, "top_n"),
        ({"query": "q", "documents": ["d"], "top_n": -3}, "top_n"),
        ({"query": "q", "documents": ["d"], "top_n": 1.5}, "top_n"),
        ({"query": "q", "documents": ["d"], "top_n": "3"}, "top_n"),
        ({"query": "q", "documents": ["d"], "return_documents": "no"}, "return_documents"),
        ({"query": "q", "documents": ["d"], "truncation": "auto"}, "truncation"),
        ({"query": "q", "documents": ["d"], "rank_fields": ["text"]}, "rank_fields"),
    ],
)
def test_invalid_bodies(client, body, field):
    assert_error(rerank(client, **body), 422, "INPUT_VALIDATION_ERROR", (field,))


def test_unknown_model(client):
    assert_error(
        client.post("/v1/rerank", json={"model": "jina-reranker-v2", "query": "q", "documents": ["d"]}),
        400,
        "INPUT_MODEL_NOT_FOUND",
        ("jina-reranker-v2",),
    )


def test_explain_matches_rerank(client):
    r = client.post("/v1/explain", json={"query": "capital of Germany", "documents": DOCS[:2]}).json()
    scores = {
        x["index"]: x["relevance_score"]
        for x in rerank(client, query="capital of Germany", documents=DOCS[:2]).json()["results"]
    }
    for i, ex in enumerate(r["results"]):
        assert ex["score"] == pytest.approx(scores[i], abs=1e-3)
        assert len(ex["matches"]) == 32 == len(ex["query_tokens"]) == len(ex["query_token_kinds"])
        assert len(ex["document_tokens"]) == len(ex["document_token_kinds"])
        assert sum(m["similarity"] for m in ex["matches"]) == pytest.approx(ex["score"], abs=1e-3)
        for m in ex["matches"]:
            assert ex["document_token_kinds"][m["document_token"]] in ("text", "special")
    # the text token "Germany" of the query finds the document token "Germany"
    ex = r["results"][0]
    q = ex["query_tokens"].index("▁Germany")
    assert ex["document_tokens"][ex["matches"][q]["document_token"]] == "▁Germany"
