"""``create_app(settings, model=None)``: the FastAPI application. Nothing is loaded on import.

Layers, outermost first:
1. ``Gate`` (pure ASGI): request id, authentication, request rate limit, access log, metrics.
2. ``RequestBody`` (pure ASGI): size (413), time (408), Content-Encoding, what JSON parsing lets through (422).
3. FastAPI: validation (422), routes, error handlers that answer ``{"detail", "code", "request_id"}``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from maxsim.api.batching import Ticket
from maxsim.api.body import RequestBody
from maxsim.api.errors import ApiError, dumps, error_body, validation_body
from maxsim.api.responses import AUTH, JINA_ERRORS, errors
from maxsim.api.service import Service
from maxsim.api.settings import Settings
from maxsim.errors import MaxsimError

log = logging.getLogger("maxsim.api")
STATIC = Path(__file__).parent / "static"
_RID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: Paths anyone may read without a key: the page, its files, the API description, health.
_PUBLIC = ("/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/favicon.ico")
_MAX_ECHO = 200  # characters of a rejected input echoed back in a 422
#: Requests that will submit texts to the model: announced to the batcher on arrival.
_ENCODES = re.compile(r"^/v1/(multi-vector|embeddings|rerank|explain|indexes/[^/]+/(search|documents))$")


def request_id_of(scope: MutableMapping[str, Any]) -> str:
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), "")
        rid = incoming if _RID.match(incoming) else uuid.uuid4().hex
        state["request_id"] = rid
    return rid


class Gate:
    """Request id, authentication and the request rate limit, before anything reads the body."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        svc = self.service
        rid = request_id_of(scope)
        state = scope["state"]
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", rid.encode()))
                for k, v in state.get("rate_headers", {}).items():
                    headers.append((k.lower().encode(), v.encode()))
                message = {**message, "headers": headers}
            await send(message)

        path = scope.get("path", "")
        try:
            if not (path in _PUBLIC or path.startswith("/static/")):
                client = svc.keys.check(_header(scope, b"authorization"))
                if svc.rates.enabled:
                    client = client or (scope.get("client") or ("?", 0))[0]
                    state["rate_headers"] = svc.rates.admit(client)
                state["client"] = client
                if scope.get("method") == "POST" and _ENCODES.match(path):
                    state["ticket"] = Ticket(svc.batcher)  # released once its job is queued, or below
        except ApiError as exc:
            svc.metrics.inc("maxsim_rejected_total", {"code": exc.code})
            body = dumps(error_body(exc.code, exc.detail, rid))
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            await send_wrapped({"type": "http.response.start", "status": exc.status, "headers": headers})
            await send_wrapped({"type": "http.response.body", "body": body})
        else:
            await self.app(scope, receive, send_wrapped)
        finally:
            ticket = state.pop("ticket", None)
            if ticket is not None:
                ticket.release()
            seconds = time.perf_counter() - started
            route = scope.get("route")
            label = getattr(route, "path", None) or ("/static" if path.startswith("/static/") else "unmatched")
            svc.metrics.observe_request(label, scope.get("method", "?"), status_holder["status"], seconds)
            log.info("%s %s %s %d %.1fms", rid, scope.get("method"), path, status_holder["status"], seconds * 1000)


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v.decode("latin-1")
    return None


def _short(value: Any) -> Any:
    """A rejected input, cut so that a 422 never echoes megabytes back."""
    if isinstance(value, str):
        return value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "…"
    if isinstance(value, bytes):
        return _short(value.decode("utf-8", "replace"))
    text = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "…"


_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


def _parse_failure(cause: BaseException) -> str:
    """What made the body unreadable, for the few failures the JSON parser does not report itself."""
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte at position {cause.start})"
    if isinstance(cause, RecursionError):
        return "arrays and objects nest too deeply"
    return f"the body could not be read as JSON ({type(cause).__name__}: {_short(str(cause))})"


def _allowed_methods(routes: Any, scope: MutableMapping[str, Any]) -> set[str]:
    """Methods of every route whose path matches (Starlette names only the first one's)."""
    allowed: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router
        if inner is not None:
            allowed |= _allowed_methods(inner.routes, scope)
        elif getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
            allowed |= set(route.methods)
    return allowed


class SafeJSONResponse(JSONResponse):
    """A JSONResponse that survives lone surrogates echoed from the request."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def create_app(settings: Settings | None = None, model: Any = None) -> FastAPI:
    """Build the service. ``model`` defaults to ``maxsim.load(settings.model)``, loaded here (not on import)."""
    settings = settings or Settings()
    if model is None:
        from maxsim.models.loading import load

        model = load(settings.model)
    service = Service(settings, model)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="maxsim",
        version=__import__("maxsim").__version__,
        description="Self-hosted late-interaction (ColBERT) retrieval: Jina-compatible multi-vector and rerank "
        "endpoints, indexes, and a search page that shows why a document matched.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> SafeJSONResponse:
        service.metrics.inc("maxsim_rejected_total", {"code": exc.code})
        return SafeJSONResponse(
            error_body(exc.code, exc.detail, request_id_of(request.scope)), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> SafeJSONResponse:
        problems = []
        for e in exc.errors():
            loc = [p for p in e.get("loc", ()) if p != "body"] or ["body"]
            field = ".".join(str(p) for p in loc)
            msg = e.get("msg", "invalid value")
            if e.get("type") == "json_invalid":
                reason = (e.get("ctx") or {}).get("error", "")
                msg = (
                    f"the body is not valid JSON ({reason}) at character {loc[0]}"
                    if reason
                    else "the body is not valid JSON"
                )
                field = "body"
            problems.append(
                {"field": field, "message": msg, "type": e.get("type", "value_error"), "input": _short(e.get("input"))}
            )
        return SafeJSONResponse(validation_body(problems, request_id_of(request.scope)), status_code=422)

    @app.exception_handler(MaxsimError)
    async def maxsim_error(request: Request, exc: MaxsimError) -> SafeJSONResponse:
        from maxsim.index.errors import DiskFullError, IndexCorruptedError, IndexWriteError

        rid = request_id_of(request.scope)
        if isinstance(exc, DiskFullError):  # rolled back: the client may retry once there is space
            return SafeJSONResponse(error_body("INDEX_STORAGE_FULL", str(exc), rid), status_code=507)
        if isinstance(exc, IndexWriteError | IndexCorruptedError):  # the server's fault, not the request's
            log.error("request %s: %s", rid, exc)
            return SafeJSONResponse(error_body("INTERNAL_ERROR", str(exc), rid), status_code=500)
        return SafeJSONResponse(error_body("INPUT_INVALID", str(exc), rid), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> SafeJSONResponse:
        rid = request_id_of(request.scope)
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not parse the body
            problem = {"field": "body", "message": _parse_failure(exc.__cause__), "type": "body_invalid", "input": None}
            return SafeJSONResponse(validation_body([problem], rid), status_code=422)
        headers = dict(getattr(exc, "headers", None) or {})
        detail = str(exc.detail)
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request.app.router.routes, request.scope)
            headers["Allow"] = ", ".join(sorted(allowed))
            detail = f"{request.url.path} does not take {request.method}; it takes {', '.join(sorted(allowed))}"
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return SafeJSONResponse(error_body(code, detail, rid), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> SafeJSONResponse:
        rid = request_id_of(request.scope)
        log.error("%s internal error: %r", rid, exc, exc_info=exc)
        return SafeJSONResponse(
            error_body("INTERNAL_ERROR", f"internal error; quote request id {rid}", rid), status_code=500
        )

    from maxsim.api.routes_index import router as index_router
    from maxsim.api.routes_jina import router as jina_router

    app.include_router(jina_router, responses=JINA_ERRORS)
    app.include_router(index_router)

    @app.get("/health", tags=["service"], summary="Liveness and what is served")
    async def health() -> dict:
        dense = service.dense
        return {
            "status": "ok",
            "model": model.name,
            "model_names": service.model_names,
            "dimensions": list(model.dims),
            "rerank_model_names": service.rerank_model_names,
            "rerank_scores": settings.rerank_scores,
            "dense_model": dense
            and {
                "name": dense.name,
                "pooling": dense.pooling,
                "dimensions": dense.dim,
                "names": service.dense_model_names,
            },
            "indexes": service.indexes.names(),
            "auth": service.keys.enabled,
            "batching": settings.batching.enabled,
            "queue_depth": service.batcher.queue_depth,
        }

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses=errors(*AUTH),
    )
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(service.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(
        RequestBody,
        max_bytes=settings.limits.max_body_bytes,
        timeout_s=settings.limits.body_timeout_s,
        request_id=request_id_of,
    )
    app.add_middleware(Gate, service=service)
    return app
