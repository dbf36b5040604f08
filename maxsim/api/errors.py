"""Errors the service answers with: ``{"detail": ..., "code": ..., "request_id": ...}``.

``detail`` is always a string. A request that does not validate (422 ``INPUT_VALIDATION_ERROR``)
also carries ``message`` (the same one-line summary) and ``errors``, one
``{"field", "message", "type", "input"}`` per problem (Jina's newer error shape).
"""

from __future__ import annotations

from typing import Any

from maxsim.errors import InvalidTypeError, MaxsimError


class ApiError(MaxsimError):
    """An error with an HTTP status and a Jina-style code; the message is shown to the client."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}


def model_not_found(name: str, known: list[str]) -> ApiError:
    return ApiError(400, "INPUT_MODEL_NOT_FOUND", f"model {name!r} is not served here; use one of {known}")


def limit_exceeded(limit: str, value: int, got: int, what: str) -> ApiError:
    return ApiError(422, "INPUT_LIMIT_EXCEEDED", f"{what}: {got} exceeds the limit {limit}={value}")


def error_body(code: str, detail: str, request_id: str, **extra: Any) -> dict:
    return {"detail": detail, "code": code, "request_id": request_id, **extra}


def validation_body(problems: list[dict], request_id: str) -> dict:
    """The 422 ``INPUT_VALIDATION_ERROR`` body for ``problems`` (each ``{field, message, type, input}``)."""
    summary = "invalid request: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    if len(problems) > 5:
        summary += f" (and {len(problems) - 5} more)"
    return error_body("INPUT_VALIDATION_ERROR", summary, request_id, message=summary, errors=problems)


def dumps(payload: object) -> bytes:
    """JSON bytes. orjson writes float32 arrays directly (an embedding response is mostly floats,
    and formatting them one by one as Python floats was a sizeable share of a request's CPU); strings
    holding lone surrogates (valid JSON escapes, not valid UTF-8) fall back to escaped ASCII."""
    import orjson

    try:
        return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:
        import json

        return json.dumps(payload, ensure_ascii=True, separators=(",", ":"), default=_plain).encode("ascii")


def _plain(value: object) -> object:
    """numpy arrays and scalars as plain Python values, for the standard-library fallback."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise InvalidTypeError(f"{type(value).__name__} is not JSON serialisable")
