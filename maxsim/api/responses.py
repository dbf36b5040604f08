"""The error answers each endpoint can give, declared in the OpenAPI document (all share ``ErrorBody``)."""

from __future__ import annotations

from typing import Any

from maxsim.api.schemas import ErrorBody

_WHEN = {
    400: "INPUT_MODEL_NOT_FOUND: the model name is not served here",
    401: "AUTH_MISSING_API_KEY / AUTH_INVALID_API_KEY: keys are configured and none or a wrong one was sent",
    403: "INDEX_CREATION_DISABLED / INDEX_DELETION_DISABLED: the server does not manage this index directory",
    404: "INDEX_NOT_FOUND / DOCUMENT_NOT_FOUND: no such index or document",
    408: "INPUT_BODY_TIMEOUT: the body did not arrive within body_timeout_s",
    409: "INDEX_EXISTS / DOCUMENT_EXISTS / INDEX_LOCKED / INDEX_READ_ONLY",
    413: "INPUT_BODY_TOO_LARGE: the body (decompressed) is over max_body_bytes",
    415: "INPUT_UNSUPPORTED_ENCODING: a Content-Encoding other than gzip or deflate",
    422: "INPUT_VALIDATION_ERROR (with message and errors), INPUT_INVALID or INPUT_LIMIT_EXCEEDED",
    429: "RATE_REQUEST_LIMIT_EXCEEDED / RATE_TOKEN_LIMIT_EXCEEDED, with Retry-After",
    503: "SERVICE_UNAVAILABLE: the model queue is full",
    504: "SERVICE_TIMEOUT: the model did not answer within request_timeout_s",
    507: "INDEX_STORAGE_FULL: the disk holding the index is full; nothing of the request was written",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with its codes and the error body's schema."""
    return {s: {"model": ErrorBody, "description": _WHEN[s]} for s in statuses}


AUTH = (401, 429)
BODY = (408, 413, 415, 422)
ENCODES = (503, 504)
#: The Jina-compatible endpoints (the model is named in the body, texts are encoded).
JINA_ERRORS = errors(400, *AUTH, *BODY, *ENCODES)
