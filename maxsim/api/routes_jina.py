"""The Jina-compatible endpoints: /v1/multi-vector (= /v1/embeddings) and /v1/rerank; plus /v1/explain."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from maxsim.api.encoding import encode_vectors
from maxsim.api.errors import dumps
from maxsim.api.limits import check_inputs
from maxsim.api.schemas import (
    ExplainRequest,
    ExplainResponse,
    MultiVectorRequest,
    MultiVectorResponse,
    QueryObject,
    RerankRequest,
    RerankResponse,
    TextInput,
)
from maxsim.api.service import Service

router = APIRouter(tags=["jina-compatible"])


def service_of(request: Request) -> Service:
    return request.app.state.service


def client_of(request: Request) -> str | None:
    return request.scope.get("state", {}).get("client")


def rate_headers(request: Request) -> dict[str, str]:
    return request.scope.setdefault("state", {}).setdefault("rate_headers", {})


async def json_response(payload: Any, status: int = 200) -> Response:
    """Serialise off the event loop (a response of many float vectors is megabytes of text)."""
    body = await run_in_threadpool(dumps, payload)
    return Response(body, status_code=status, media_type="application/json")


def _usage(tokens: int) -> dict[str, int]:
    return {"total_tokens": tokens, "prompt_tokens": tokens}


@router.post("/v1/multi-vector", response_model=MultiVectorResponse, summary="Token vectors of texts (Jina multi-vector API)")
async def multi_vector(body: MultiVectorRequest, request: Request) -> Response:
    return await _multi_vector(body, request)


@router.post("/v1/embeddings", response_model=MultiVectorResponse, summary="Same as /v1/multi-vector (ColBERT models)")
async def embeddings(body: MultiVectorRequest, request: Request) -> Response:
    return await _multi_vector(body, request)


async def _multi_vector(body: MultiVectorRequest, request: Request) -> Response:
    svc = service_of(request)
    name = svc.resolve_model(body.model)
    raw = body.input if isinstance(body.input, list) else [body.input]
    check_inputs(svc.settings.limits, len(raw), "input")
    texts = [x.text if isinstance(x, TextInput) else x for x in raw]
    ids = [x.id if isinstance(x, TextInput) else None for x in raw]
    is_query = body.input_type == "query"
    tok = await svc.tokenize(texts, is_query, "input")
    tokens = svc.check_tokens(tok, client=client_of(request), headers=rate_headers(request))
    vectors = await svc.encode(tok.items, body.dimensions, request)
    svc.metrics.count_tokens("multi-vector", body.input_type, tokens, len(texts))
    kinds = body.embedding_type

    def build() -> dict:
        data = []
        for i, v in enumerate(vectors):
            if isinstance(kinds, list):
                emb: Any = {k: encode_vectors(v, k) for k in kinds}
            else:
                emb = encode_vectors(v, kinds)
            item: dict[str, Any] = {"object": "embeddings", "index": i}
            if ids[i] is not None:
                item["id"] = ids[i]
            item["embeddings"] = emb
            if body.return_tokenized_input:
                it = tok.items[i]
                item["tokenized_input"] = svc.model.tokenizer.tokens(it.ids[it.keep])
            data.append(item)
        return {"model": name, "object": "list", "data": data, "usage": _usage(tokens)}

    payload = await run_in_threadpool(build)
    return await json_response(payload)


@router.post("/v1/rerank", response_model=RerankResponse, summary="Rank documents against a query by MaxSim (Jina rerank API)")
async def rerank(body: RerankRequest, request: Request) -> Response:
    from maxsim.scoring.maxsim import maxsim_scores

    svc = service_of(request)
    name = svc.resolve_model(body.model)
    check_inputs(svc.settings.limits, len(body.documents), "documents")
    query = body.query.text if isinstance(body.query, QueryObject) else body.query
    docs = [d if isinstance(d, str) else d.model_dump(exclude_unset=True) for d in body.documents]
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    q_tok = await svc.tokenize([query], True, "query")
    d_tok = await svc.tokenize(texts, False, "documents")
    tokens = svc.check_tokens(q_tok, d_tok, client=client_of(request), headers=rate_headers(request))
    vectors = await svc.encode(q_tok.items + d_tok.items, max(svc.model.dims), request)
    svc.metrics.count_tokens("rerank", "query", q_tok.tokens, 1)
    svc.metrics.count_tokens("rerank", "document", d_tok.tokens, len(texts))

    def build() -> dict:
        scores = maxsim_scores(vectors[0], vectors[1:])
        order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), i))[: body.top_n or len(docs)]
        results = []
        for i in order:
            r: dict[str, Any] = {"index": i, "relevance_score": float(scores[i])}
            if body.return_documents:
                r["document"] = {"text": docs[i]} if isinstance(docs[i], str) else docs[i]
            results.append(r)
        return {"model": name, "object": "list", "usage": _usage(tokens), "results": results}

    return await json_response(await run_in_threadpool(build))


@router.post("/v1/explain", response_model=ExplainResponse, tags=["maxsim"],
             summary="For each query token, the document token that gives its maximum (late-interaction explanation)")
async def explain(body: ExplainRequest, request: Request) -> Response:
    svc = service_of(request)
    check_inputs(svc.settings.limits, len(body.documents), "documents")
    q_tok = await svc.tokenize([body.query], True, "query")
    d_tok = await svc.tokenize(body.documents, False, "documents")
    tokens = svc.check_tokens(q_tok, d_tok, client=client_of(request), headers=rate_headers(request))
    vectors = await svc.encode(q_tok.items + d_tok.items, body.dimensions, request)

    def build() -> dict:
        q_item, q = q_tok.items[0], vectors[0]
        results = [svc.explain(q_item, q, it, v) for it, v in zip(d_tok.items, vectors[1:], strict=True)]
        return {"model": svc.model.name, "usage": _usage(tokens), "results": results}

    return await json_response(await run_in_threadpool(build))
