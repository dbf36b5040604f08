"""Index endpoints: list, create, describe, delete, add documents, delete documents, search.

Writes answer only after the index has committed them (durable: fsynced arrays, then one
SQLite commit with synchronous=FULL), so an acknowledged write survives a crash. Each write
opens its own writer and closes it (see ``index_registry``): other processes can write between.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from maxsim.api.errors import ApiError
from maxsim.api.index_registry import ServedIndex
from maxsim.api.limits import check_inputs
from maxsim.api.responses import AUTH, BODY, ENCODES, errors
from maxsim.api.routes_jina import (
    _usage,
    client_of,
    json_response,
    rate_headers,
    service_of,
)
from maxsim.api.schemas import (
    AddDocumentsRequest,
    AddDocumentsResponse,
    CreateIndexRequest,
    DeleteDocumentsRequest,
    DeleteDocumentsResponse,
    DeleteIndexResponse,
    IndexDescription,
    IndexList,
    SearchRequest,
    SearchResponse,
)
from maxsim.errors import MaxsimError
from maxsim.text.clean import validate_texts

router = APIRouter(tags=["indexes"])


def _describe(name: str, index: Any, full: bool) -> dict:
    if not full:
        return {
            "name": name,
            "model": index.model_name,
            "dimensions": index.dim,
            "nbits": index.nbits,
            "refine_bits": index.refine_bits,
            "documents": len(index),
        }
    info = index.info()
    return {
        "name": name,
        "model": info["model"],
        "dimensions": info["dim"],
        "nbits": info["nbits"],
        "refine_bits": info["refine_bits"],
        "documents": info["documents"],
        "tokens": info["tokens"],
        "segments": info["segments"],
        "bytes_on_disk": info["bytes_on_disk"],
    }


def _index_error(exc: Exception) -> ApiError:
    """Map the index's own errors to statuses with its message."""
    from maxsim.index import IndexLockedError, IndexReadOnlyError
    from maxsim.index.errors import DiskFullError

    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, DiskFullError):  # the write was rolled back: the client may retry later
        return ApiError(507, "INDEX_STORAGE_FULL", msg)
    if isinstance(exc, IndexLockedError):
        return ApiError(409, "INDEX_LOCKED", msg)
    if isinstance(exc, IndexReadOnlyError):
        return ApiError(409, "INDEX_READ_ONLY", msg)
    if isinstance(exc, KeyError):
        return ApiError(404, "DOCUMENT_NOT_FOUND", msg)
    if isinstance(exc, ValueError) and "already in the index" in msg:
        return ApiError(409, "DOCUMENT_EXISTS", msg.split(" (use update()")[0] + "; delete them first to replace them")
    if isinstance(exc, ValueError | TypeError):
        return ApiError(422, "INPUT_INVALID", msg)
    raise exc


def _check_utf8(value: Any, what: str) -> None:
    """Ids, metadata and filters are stored as given: refuse strings that are not valid Unicode."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "INPUT_INVALID", f"{what}: contains a lone surrogate (not valid Unicode)") from None


async def _in_thread(served: ServedIndex, fn: Any) -> Any:
    from maxsim.index import IndexLockedError, IndexReadOnlyError

    try:
        return await run_in_threadpool(fn)
    except ApiError:
        raise
    except Exception as exc:
        served.check_live()  # deleted while this request used it: 404, whatever the index raised
        # the index's own errors only: a bare TypeError is a bug, answered as one (500), not blamed on the client
        if isinstance(exc, MaxsimError) and isinstance(
            exc, IndexLockedError | IndexReadOnlyError | KeyError | ValueError | TypeError
        ):
            raise _index_error(exc) from None
        raise


@router.get("/v1/indexes", response_model=IndexList, summary="List the served indexes", responses=errors(*AUTH))
async def list_indexes(request: Request) -> Response:
    svc = service_of(request)

    def build() -> dict:
        data = []
        for name in svc.indexes.names():
            try:
                data.append(_describe(name, svc.indexes.get(name).index, full=False))
            except Exception:  # noqa: BLE001 - deleted while listing
                continue
        return {"object": "list", "data": data}

    return await json_response(await run_in_threadpool(build))


@router.post(
    "/v1/indexes",
    response_model=IndexDescription,
    status_code=201,
    summary="Create an empty index",
    responses=errors(*AUTH, *BODY, 403, 409, 507),
)
async def create_index(body: CreateIndexRequest, request: Request) -> Response:
    svc = service_of(request)
    served = await run_in_threadpool(svc.indexes.create, body.name, body.dimensions, body.nbits, body.refine_bits)
    return await json_response(_describe(body.name, served.index, full=False), status=201)


@router.get(
    "/v1/indexes/{name}",
    response_model=IndexDescription,
    summary="Size, dimensions and model of an index",
    responses=errors(*AUTH, 404, 422),
)
async def describe_index(name: str, request: Request) -> Response:
    svc = service_of(request)
    served = svc.indexes.get(name)
    return await json_response(await _in_thread(served, lambda: _describe(name, served.index, full=True)))


@router.delete(
    "/v1/indexes/{name}",
    response_model=DeleteIndexResponse,
    summary="Delete an index and its files (only indexes under --index-dir)",
    responses=errors(*AUTH, 403, 404, 409, 422),
)
async def delete_index(name: str, request: Request) -> Response:
    svc = service_of(request)
    await run_in_threadpool(svc.indexes.delete, name)
    return await json_response({"index": name, "deleted": True})


@router.post(
    "/v1/indexes/{name}/documents",
    response_model=AddDocumentsResponse,
    status_code=201,
    summary="Add documents (text, optional id and metadata); answers once they are durable",
    responses=errors(*AUTH, *BODY, *ENCODES, 404, 409, 507),
)
async def add_documents(name: str, body: AddDocumentsRequest, request: Request) -> Response:
    svc = service_of(request)
    served = svc.indexes.get(name)
    index = served.index
    check_inputs(svc.settings.limits, len(body.documents), "documents")
    docs = [{"text": d} if isinstance(d, str) else d.model_dump() for d in body.documents]
    texts = [d["text"] for d in docs]
    given = [d.get("id") for d in docs]
    if any(i is not None for i in given) and any(i is None for i in given):
        raise ApiError(
            422, "INPUT_INVALID", "documents: give an id to every document or to none (ids are then generated)"
        )
    ids = given if given and given[0] is not None else None
    metadata = [d.get("metadata") for d in docs]
    _check_utf8(given, "documents[].id")
    _check_utf8(metadata, "documents[].metadata")
    tok = await svc.tokenize(texts, False, "documents")
    tokens = svc.check_tokens(tok, client=client_of(request), headers=rate_headers(request))
    clean = validate_texts(texts, "documents")  # what is stored: the text that was encoded
    if index.model_name is None:
        # an index that has not recorded a model yet: let it encode, so it records ours
        new_ids = await _in_thread(served, lambda: served.write(lambda w: w.add(clean, ids=ids, metadata=metadata)))
    else:
        vectors = await svc.encode(tok.items, index.dim, request)
        new_ids = await _in_thread(
            served, lambda: served.write(lambda w: w.add_embeddings(vectors, ids=ids, texts=clean, metadata=metadata))
        )
    svc.metrics.count_tokens("index-add", "document", tokens, len(texts))
    n = await _in_thread(served, lambda: len(served.index))
    return await json_response({"index": name, "ids": new_ids, "documents": n, "usage": _usage(tokens)}, status=201)


@router.post(
    "/v1/indexes/{name}/documents/delete",
    response_model=DeleteDocumentsResponse,
    summary="Delete documents by id (all or nothing: an unknown id is a 404)",
    responses=errors(*AUTH, *BODY, 404, 409, 507),
)
async def delete_documents(name: str, body: DeleteDocumentsRequest, request: Request) -> Response:
    svc = service_of(request)
    served = svc.indexes.get(name)
    check_inputs(svc.settings.limits, len(body.ids), "ids")
    _check_utf8(body.ids, "ids")
    deleted = await _in_thread(served, lambda: served.write(lambda w: w.delete(body.ids)))
    n = await _in_thread(served, lambda: len(served.index))
    return await json_response({"index": name, "deleted": deleted, "documents": n})


@router.delete(
    "/v1/indexes/{name}/documents/{doc_id}",
    response_model=DeleteDocumentsResponse,
    summary="Delete one document by id",
    responses=errors(*AUTH, 404, 409, 422, 507),
)
async def delete_document(name: str, doc_id: str, request: Request) -> Response:
    svc = service_of(request)
    served = svc.indexes.get(name)
    _check_utf8(doc_id, "doc_id")
    deleted = await _in_thread(served, lambda: served.write(lambda w: w.delete([doc_id])))
    n = await _in_thread(served, lambda: len(served.index))
    return await json_response({"index": name, "deleted": deleted, "documents": n})


@router.post(
    "/v1/indexes/{name}/search",
    response_model=SearchResponse,
    summary="Search an index; 'filter' keeps documents whose metadata matches every key",
    responses=errors(*AUTH, *BODY, *ENCODES, 404),
)
async def search_index(name: str, body: SearchRequest, request: Request) -> Response:
    svc = service_of(request)
    served = svc.indexes.get(name)
    index = served.index
    limits = svc.settings.limits
    if body.k > limits.max_k:
        raise ApiError(422, "INPUT_LIMIT_EXCEEDED", f"k: {body.k} exceeds the limit max_k={limits.max_k}")
    if body.filter is not None and not body.filter:
        raise ApiError(422, "INPUT_INVALID", "filter: the object is empty; omit it to search everything")
    _check_utf8(body.filter, "filter")
    q_tok = await svc.tokenize([body.query], True, "query")
    tokens = svc.check_tokens(q_tok, client=client_of(request), headers=rate_headers(request))
    q = (await svc.encode(q_tok.items, index.dim, request))[0]
    hybrid_search = getattr(index, "search_hybrid_embeddings", None)
    if body.hybrid is not False and hybrid_search is None:
        raise ApiError(422, "INPUT_VALIDATION_ERROR", f"index {name!r} is sharded; hybrid search needs a single index")
    if body.hybrid is False or hybrid_search is None:
        hits = await _in_thread(served, lambda: index.search_embeddings([q], k=body.k, filter=body.filter)[0])
    else:
        hits = await _in_thread(
            served, lambda: hybrid_search([q], [body.query], k=body.k, filter=body.filter, hybrid=body.hybrid)[0]
        )
    svc.metrics.count_tokens("index-search", "query", tokens, 1)
    results = []
    for h in hits:
        r: dict[str, Any] = {"id": h["id"], "score": float(h["score"])}
        if body.return_documents:
            r["text"], r["metadata"] = h["text"], h["metadata"]
        results.append(r)
    if body.explain:
        explained = [i for i, h in enumerate(hits) if h["text"] is not None]
        if explained:
            d_tok = await svc.tokenize([hits[i]["text"] for i in explained], False, "documents")
            vectors = await svc.encode(d_tok.items, index.dim, request)

            def build() -> None:
                for i, item, v in zip(explained, d_tok.items, vectors, strict=True):
                    results[i]["explanation"] = svc.explain(q_tok.items[0], q, item, v)

            await run_in_threadpool(build)
    return await json_response({"index": name, "model": svc.model.name, "results": results, "usage": _usage(tokens)})
