"""Request limits: body size (an ASGI middleware, 413), counts and tokens (422), rate limits (429)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from maxsim.api.errors import ApiError, limit_exceeded
from maxsim.api.settings import Limits

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app reads them.

    A declared Content-Length over the limit is refused at once; a chunked body is read up to the
    limit and refused as soon as it goes over, so a huge upload is never held in memory.
    """

    def __init__(self, app: Any, max_bytes: int, request_id: Callable[[Scope], str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send, declared)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, send, size)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False
        whole = b"".join(chunks)

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(_as_json(scope), replay, send)

    async def _refuse(self, scope: Scope, send: Send, size: int) -> None:
        rid = self.request_id(scope)
        detail = f"request body of {size} bytes{' or more' if _content_length(scope) is None else ''} exceeds the limit max_body_bytes={self.max_bytes}"
        body = json.dumps({"detail": detail, "code": "INPUT_BODY_TOO_LARGE", "request_id": rid}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode()), (b"connection", b"close"),
        ]})
        await send({"type": "http.response.body", "body": body})


#: Content types under which a body is still read as JSON: curl's default and none at all.
_LENIENT_TYPES = (b"", b"application/x-www-form-urlencoded", b"text/plain")


def _as_json(scope: Scope) -> Scope:
    """Every endpoint takes JSON: read a body sent without a JSON content type as JSON anyway."""
    headers = scope.get("headers", [])
    ctype = next((v for k, v in headers if k == b"content-type"), b"")
    if ctype.split(b";")[0].strip().lower() not in _LENIENT_TYPES:
        return scope
    rest = [(k, v) for k, v in headers if k != b"content-type"]
    scope["headers"] = [*rest, (b"content-type", b"application/json")]  # in place: outer layers read scope["route"]
    return scope


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", []):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


def check_inputs(limits: Limits, n: int, what: str) -> None:
    if n > limits.max_inputs_per_request:
        raise limit_exceeded("max_inputs_per_request", limits.max_inputs_per_request, n, f"{what} holds {n} items")


def check_tokens(limits: Limits, n: int) -> None:
    if n > limits.max_tokens_per_request:
        raise limit_exceeded("max_tokens_per_request", limits.max_tokens_per_request, n, "the request's token count")


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, level: float, stamp: float) -> None:
        self.level = level
        self.stamp = stamp


class RateLimiter:
    """Token buckets per client: ``requests_per_minute`` and ``tokens_per_minute`` (0 = off).

    A bucket holds at most a minute's allowance and refills continuously. ``admit`` spends one
    request; ``spend_tokens`` spends a request's tokens once they are counted.
    """

    def __init__(self, requests_per_minute: int, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, _Bucket] = {}
        self._tokens: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.rpm or self.tpm)

    def _level(self, buckets: dict[str, _Bucket], client: str, per_minute: int) -> _Bucket:
        now = self.clock()
        b = buckets.get(client)
        if b is None:
            if len(buckets) > 100_000:  # forget idle clients rather than grow without bound
                buckets.clear()
            b = buckets[client] = _Bucket(float(per_minute), now)
        else:
            b.level = min(float(per_minute), b.level + (now - b.stamp) * per_minute / 60.0)
            b.stamp = now
        return b

    def admit(self, client: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        with self._lock:
            if self.rpm:
                b = self._level(self._requests, client, self.rpm)
                if b.level < 1:
                    wait = (1 - b.level) * 60.0 / self.rpm
                    raise ApiError(429, "RATE_REQUEST_LIMIT_EXCEEDED",
                                   f"request rate over the limit requests_per_minute={self.rpm}; retry in {wait:.1f} s",
                                   {"Retry-After": str(max(1, round(wait))), "X-RateLimit-Remaining-Requests": "0"})
                b.level -= 1
                headers["X-RateLimit-Remaining-Requests"] = str(int(b.level))
            if self.tpm:
                b = self._level(self._tokens, client, self.tpm)
                if b.level < 1:
                    wait = (1 - b.level) * 60.0 / self.tpm
                    raise ApiError(429, "RATE_TOKEN_LIMIT_EXCEEDED",
                                   f"token rate over the limit tokens_per_minute={self.tpm}; retry in {wait:.1f} s",
                                   {"Retry-After": str(max(1, round(wait))), "X-RateLimit-Remaining-Tokens": "0"})
                headers["X-RateLimit-Remaining-Tokens"] = str(int(b.level))
        return headers

    def spend_tokens(self, client: str, tokens: int) -> dict[str, str]:
        if not self.tpm:
            return {}
        with self._lock:
            b = self._level(self._tokens, client, self.tpm)
            if tokens > b.level:
                raise ApiError(429, "RATE_TOKEN_LIMIT_EXCEEDED",
                               f"this request's {tokens} tokens exceed what is left of the limit "
                               f"tokens_per_minute={self.tpm} ({int(b.level)} left)",
                               {"Retry-After": str(max(1, round((tokens - b.level) * 60.0 / self.tpm))),
                                "X-RateLimit-Remaining-Tokens": str(int(b.level))})
            b.level -= tokens
            return {"X-RateLimit-Remaining-Tokens": str(int(b.level))}
