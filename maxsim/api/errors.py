"""Errors the service answers with: ``{"detail": ..., "code": ..., "request_id": ...}``."""

from __future__ import annotations


class ApiError(Exception):
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
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
