"""The Jina-compatible endpoints: /v1/multi-vector (= /v1/embeddings) and /v1/rerank; plus /v1/explain."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from maxsim.api.encoding import encode_vectors
from maxsim.api.errors import ApiError, dumps
from maxsim.api.limits import check_inputs
from maxsim.api.schemas import (
    DenseEmbeddingResponse,
    EmbeddingsRequest,
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
from maxsim.scoring.rerank import ScoreScale, rerank_vectors

#: Jina's ``task`` values -> how the text is framed: "query", "document", or "symmetric" (both
#: sides of a comparison alike: the dense E5 model frames them as queries, as its model card says
#: for symmetric tasks; late-interaction models as documents, which keeps every token).
TASKS: dict[str, str] = {
    "retrieval.query": "query",
    "code.query": "query",
    "retrieval.passage": "document",
    "code.passage": "document",
    "text-matching": "symmetric",
    "separation": "symmetric",
    "classification": "symmetric",
}

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


@router.post(
    "/v1/multi-vector", response_model=MultiVectorResponse, summary="Token vectors of texts (Jina multi-vector API)"
)
async def multi_vector(body: MultiVectorRequest, request: Request) -> Response:
    service_of(request).resolve_model(body.model, "/v1/multi-vector")
    return await _multi_vector(body, body.input_type, body.dimensions, request)


@router.post(
    "/v1/embeddings",
    response_model=MultiVectorResponse | DenseEmbeddingResponse,
    summary="One vector per text (dense model names) or token vectors (late-interaction model names)",
)
async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
    svc = service_of(request)
    answers = svc.resolve_model(body.model, "/v1/embeddings")
    framing = _framing(body)
    if answers == "dense":
        return await _dense(body, framing, request)
    if body.dimensions is not None and body.dimensions not in svc.model.dims:
        raise ApiError(
            422, "INPUT_INVALID", f"dimensions: {body.model!r} serves {list(svc.model.dims)}, not {body.dimensions}"
        )
    input_type = framing if framing != "symmetric" else (body.input_type or "document")
    return await _multi_vector(body, input_type, body.dimensions or max(svc.model.dims), request)


def _framing(body: EmbeddingsRequest) -> str:
    """query, document or symmetric, from ``task`` and ``input_type`` (which must agree)."""
    if body.task is None:
        return body.input_type or "document"
    framing = TASKS.get(body.task)
    if framing is None:
        raise ApiError(422, "INPUT_INVALID", f"task: {body.task!r} is not one of {sorted(TASKS)}")
    if body.input_type is not None and framing != "symmetric" and framing != body.input_type:
        raise ApiError(422, "INPUT_INVALID", f"task {body.task!r} and input_type {body.input_type!r} disagree")
    return framing


def _inputs(body: MultiVectorRequest) -> tuple[list[str], list[str | None]]:
    raw = body.input if isinstance(body.input, list) else [body.input]
    texts = [x.text if isinstance(x, TextInput) else x for x in raw]
    return texts, [x.id if isinstance(x, TextInput) else None for x in raw]


def _refuse_truncated(refuse: bool, items: list[Any], limit: int, field: str = "truncate") -> None:
    """``truncate: false`` (``truncation: false`` on /v1/rerank): an over-long text is a 422, not cut."""
    if refuse:
        cut = [i for i, it in enumerate(items) if it.truncated]
        if cut:
            what = "input" if field == "truncate" else "documents"
            raise ApiError(
                422,
                "INPUT_INVALID",
                f"{what} {cut[:10]} exceed(s) the model's limit of {limit} tokens "
                f"and {field} is false; send shorter texts or {field}: true",
            )


async def _multi_vector(body: MultiVectorRequest, input_type: str, dim: int, request: Request) -> Response:
    svc = service_of(request)
    texts, ids = _inputs(body)
    check_inputs(svc.settings.limits, len(texts), "input")
    is_query = input_type == "query"
    tok = await svc.tokenize(texts, is_query, "input")
    if not is_query:
        _refuse_truncated(getattr(body, "truncate", None) is False, tok.items, svc.model.document_length)
    tokens = svc.check_tokens(tok, client=client_of(request), headers=rate_headers(request))
    vectors = await svc.encode(tok.items, dim, request)
    svc.metrics.count_tokens("multi-vector", input_type, tokens, len(texts))
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
        return {"model": svc.model.name, "object": "list", "data": data, "usage": _usage(tokens)}

    payload = await run_in_threadpool(build)
    return await json_response(payload)


async def _dense(body: EmbeddingsRequest, framing: str, request: Request) -> Response:
    svc = service_of(request)
    dense = svc.dense
    if body.return_tokenized_input:
        raise ApiError(
            422,
            "INPUT_INVALID",
            f"return_tokenized_input: {dense.name} gives one vector per text, "
            "not one per token; use a late-interaction model name",
        )
    dim = dense.dim if body.dimensions is None else body.dimensions
    if not 1 <= dim <= dense.dim:
        raise ApiError(422, "INPUT_INVALID", f"dimensions: {dense.name} gives 1 to {dense.dim}, not {dim}")
    texts, ids = _inputs(body)
    check_inputs(svc.settings.limits, len(texts), "input")
    kind = (
        "document"
        if framing == "document" or (framing == "symmetric" and dense.pooling != "mean-pooled backbone")
        else "query"
    )
    tok = await svc.tokenize_dense(texts, kind, "input")
    _refuse_truncated(body.truncate is False, tok.items, dense.max_positions)
    tokens = svc.check_tokens(tok, client=client_of(request), headers=rate_headers(request))
    if body.late_chunking and dense.pooling == "mean-pooled backbone":
        vectors = await svc.encode_dense_late_chunked(texts, kind, dim, request)
    else:
        vectors = await svc.encode_dense(tok.items, dim, request)
    svc.metrics.count_tokens("embeddings", kind, tokens, len(texts))
    kinds = body.embedding_type

    def one(v: Any, k: str) -> Any:
        return encode_vectors(v[None, :], k)[0]

    def build() -> dict:
        data = []
        for i, v in enumerate(vectors):
            item: dict[str, Any] = {"object": "embedding", "index": i}
            if ids[i] is not None:
                item["id"] = ids[i]
            item["embedding"] = {k: one(v, k) for k in kinds} if isinstance(kinds, list) else one(v, kinds)
            data.append(item)
        return {"model": dense.name, "object": "list", "data": data, "usage": _usage(tokens)}

    return await json_response(await run_in_threadpool(build))


@router.post(
    "/v1/rerank", response_model=RerankResponse, summary="Rank documents against a query by MaxSim (Jina rerank API)"
)
async def rerank(body: RerankRequest, request: Request) -> Response:
    svc = service_of(request)
    svc.resolve_model(body.model, "/v1/rerank")
    check_inputs(svc.settings.limits, len(body.documents), "documents")
    query = body.query.text if isinstance(body.query, QueryObject) else body.query
    docs = [d if isinstance(d, str) else d.model_dump(exclude_unset=True) for d in body.documents]
    texts = [d if isinstance(d, str) else d["text"] for d in docs]
    q_tok = await svc.tokenize([query], True, "query")
    d_tok = await svc.tokenize(texts, False, "documents")
    _refuse_truncated(body.truncation is False, d_tok.items, svc.model.document_length, "truncation")
    tokens = svc.check_tokens(q_tok, d_tok, client=client_of(request), headers=rate_headers(request))
    vectors = await svc.encode(q_tok.items + d_tok.items, max(svc.model.dims), request)
    svc.metrics.count_tokens("rerank", "query", q_tok.tokens, 1)
    svc.metrics.count_tokens("rerank", "document", d_tok.tokens, len(texts))

    def build() -> dict:
        returned = [{"text": d} if isinstance(d, str) else d for d in docs] if body.return_documents else None
        scale = cast(ScoreScale, svc.settings.rerank_scores)  # checked by Settings
        results = rerank_vectors(vectors[0], vectors[1:], top_n=body.top_n, scale=scale, returned=returned)
        return {"model": svc.model.name, "object": "list", "usage": _usage(tokens), "results": results}

    return await json_response(await run_in_threadpool(build))


@router.post(
    "/v1/explain",
    response_model=ExplainResponse,
    tags=["maxsim"],
    summary="For each query token, the document token that gives its maximum (late-interaction explanation)",
)
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
