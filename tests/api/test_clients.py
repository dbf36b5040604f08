"""The real Jina client libraries against a real ``maxsim serve`` on loopback.

Each client runs its documented usage with its default model argument; only the base URL is
changed (for the two without a base-URL option, LangChain's module constant; for LlamaIndex's
``JinaEmbedding``, which ignores ``base_url``, its caller's URL; docs/api.md shows each line).
Every reranker must put the Berlin seed example's passages 0, 3 and 6 on top; every embedder
must get one vector per text of the dense model's size. The libraries are the pinned ``clients``
extra of pyproject.toml (part of ``dev``, so ``make test`` installs them); a missing one skips.
"""

from __future__ import annotations

import os

import pytest

from tests.api.conftest import Settings

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic notes about LiteLLM's own types

KEY = "not-a-real-key"  # the server runs without keys; clients insist on having one
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download of LiteLLM's price list
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")


@pytest.fixture(scope="module")
def url(serve) -> str:
    return serve(Settings()).url


@pytest.fixture(scope="module")
def berlin(seeds) -> tuple[str, list[str], set[int]]:
    ex = seeds["rerank"]
    return ex["query"], ex["documents"], set(seeds["rerank_expected_relevant_indices"])


@pytest.fixture(scope="module")
def dense_dim(model) -> int:
    from maxsim.models.dense import dense_model_for

    return dense_model_for(model).dim


TEXTS = ["Berlin is the capital of Germany.", "Paris ist die Hauptstadt Frankreichs.", "東京は日本の首都です。"]


def _check_vectors(vectors, n: int, dim: int) -> None:
    import numpy as np

    assert len(vectors) == n
    for v in vectors:
        assert len(v) == dim
        assert abs(float(np.linalg.norm(np.asarray(v, dtype=np.float64))) - 1.0) < 1e-4


# ---- rerankers ---------------------------------------------------------------------------------


def test_langchain_jina_rerank(url, berlin, monkeypatch):
    mod = pytest.importorskip("langchain_community.document_compressors.jina_rerank")
    from langchain_core.documents import Document

    monkeypatch.setattr(mod, "JINA_API_URL", f"{url}/v1/rerank")  # the client has no base-URL option
    query, docs, expected = berlin
    compressor = mod.JinaRerank(jina_api_key=KEY)  # default model jina-reranker-v1-base-en, top_n 3
    out = compressor.compress_documents(
        [Document(page_content=d, metadata={"i": i}) for i, d in enumerate(docs)], query
    )
    assert {d.metadata["i"] for d in out} == expected
    scores = [d.metadata["relevance_score"] for d in out]
    assert scores == sorted(scores, reverse=True)


def test_llamaindex_jina_rerank(url, berlin):
    mod = pytest.importorskip("llama_index.postprocessor.jinaai_rerank")
    from llama_index.core.schema import NodeWithScore, TextNode

    query, docs, expected = berlin
    rerank = mod.JinaRerank(api_key=KEY, top_n=3, base_url=f"{url}/v1")
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(docs)]
    out = rerank.postprocess_nodes(nodes, query_str=query)
    assert {int(n.node.node_id) for n in out} == expected


def test_haystack_jina_ranker(url, berlin):
    mod = pytest.importorskip("haystack_integrations.components.rankers.jina")
    from haystack import Document
    from haystack.utils import Secret

    query, docs, expected = berlin
    ranker = mod.JinaRanker(api_key=Secret.from_token(KEY), base_url=f"{url}/v1/rerank")
    out = ranker.run(query=query, documents=[Document(content=d, meta={"i": i}) for i, d in enumerate(docs)], top_k=3)
    assert {d.meta["i"] for d in out["documents"]} == expected


def test_rerankers_jina(url, berlin):
    rerankers = pytest.importorskip("rerankers")

    query, docs, expected = berlin
    ranker = rerankers.Reranker("jina", api_key=KEY, url=f"{url}/v1/rerank", verbose=0)
    results = ranker.rank(query=query, docs=docs)
    assert {r.document.doc_id for r in results.top_k(3)} == expected


def test_litellm_rerank(url, berlin):
    litellm = pytest.importorskip("litellm")

    query, docs, expected = berlin
    out = litellm.rerank(
        model="jina_ai/jina-reranker-v2-base-multilingual",
        query=query,
        documents=docs,
        top_n=3,
        api_base=url,
        api_key=KEY,
    )
    assert {r["index"] for r in out.results} == expected


# ---- embedders ---------------------------------------------------------------------------------


def test_langchain_jina_embeddings(url, dense_dim, monkeypatch):
    mod = pytest.importorskip("langchain_community.embeddings.jina")

    monkeypatch.setattr(mod, "JINA_API_URL", f"{url}/v1/embeddings")  # the client has no base-URL option
    emb = mod.JinaEmbeddings(jina_api_key=KEY)  # default model jina-embeddings-v2-base-en
    _check_vectors(emb.embed_documents(TEXTS), len(TEXTS), dense_dim)
    _check_vectors([emb.embed_query("What is the capital of Germany?")], 1, dense_dim)


def test_llamaindex_jina_embedding(url, dense_dim):
    mod = pytest.importorskip("llama_index.embeddings.jinaai")

    emb = mod.JinaEmbedding(api_key=KEY)  # default model jina-embeddings-v3
    emb._api.api_url = f"{url}/v1/embeddings"  # JinaEmbedding passes no base_url to its caller
    _check_vectors(emb.get_text_embedding_batch(TEXTS), len(TEXTS), dense_dim)
    _check_vectors([emb.get_query_embedding("What is the capital of Germany?")], 1, dense_dim)


def test_haystack_jina_embedders(url, dense_dim):
    mod = pytest.importorskip("haystack_integrations.components.embedders.jina")
    from haystack import Document
    from haystack.utils import Secret

    text = mod.JinaTextEmbedder(api_key=Secret.from_token(KEY), base_url=f"{url}/v1/embeddings")
    out = text.run(text="What is the capital of Germany?")
    _check_vectors([out["embedding"]], 1, dense_dim)
    assert out["meta"]["model"] == "maxsim-e5-small-dense"  # the model that answered
    docs = mod.JinaDocumentEmbedder(api_key=Secret.from_token(KEY), base_url=f"{url}/v1/embeddings")
    out = docs.run(documents=[Document(content=t) for t in TEXTS])
    _check_vectors([d.embedding for d in out["documents"]], len(TEXTS), dense_dim)


def test_litellm_embedding(url, dense_dim):
    litellm = pytest.importorskip("litellm")

    out = litellm.embedding(model="jina_ai/jina-embeddings-v3", input=TEXTS, api_base=f"{url}/v1", api_key=KEY)
    _check_vectors([d["embedding"] for d in out.data], len(TEXTS), dense_dim)


def test_task_framing_reaches_the_dense_model(url, model):
    """Haystack's documented ``task="retrieval.query"`` gives the query framing: E5's "query: " prefix."""
    mod = pytest.importorskip("haystack_integrations.components.embedders.jina")
    import numpy as np
    from haystack.utils import Secret

    from maxsim.models.dense import dense_model_for

    question = "What is the capital of Germany?"
    dense = dense_model_for(model)
    for task, kind in (("retrieval.query", "query"), ("retrieval.passage", "document")):
        emb = mod.JinaTextEmbedder(api_key=Secret.from_token(KEY), base_url=f"{url}/v1/embeddings", task=task)
        got = np.asarray(emb.run(text=question)["embedding"], dtype=np.float32)
        np.testing.assert_allclose(got, dense.encode([question], kind)[0], atol=1e-5)
