"""Reading a request body before the app sees it (a pure ASGI middleware).

- size: a body over ``max_body_bytes`` (declared, streamed or once decompressed) is a 413. The
  rest of a body up to ``DRAIN_BYTES`` past the limit is read and dropped before answering: a
  server that answers and closes while the client is still sending resets the connection, and the
  client may lose the answer (it sees "connection reset" instead of the 413). Bigger bodies are
  answered at once and the connection closed;
- time: a body that has not fully arrived ``body_timeout_s`` after the headers is a 408, and the
  connection is closed, so a client that announces a body and never sends it holds nothing;
- ``Content-Encoding``: ``gzip`` and ``deflate`` are decompressed, anything else is a 415;
- what Python's JSON parser lets through but the service must refuse, each a 422
  ``INPUT_VALIDATION_ERROR`` naming the problem (and the field where it can): bytes that are not
  UTF-8, arrays/objects nested deeper than ``MAX_JSON_DEPTH``, ``NaN``/``Infinity`` (not JSON),
  numbers that overflow a 64-bit float and integers outside the signed 64-bit range (they cannot
  be stored, filtered on, or read back by strict JSON parsers).

A body sent without a JSON content type (curl's default) is read as JSON: every endpoint takes JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from maxsim.api.errors import dumps, error_body, validation_body
from maxsim.errors import MaxsimError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

#: Deepest nesting of arrays and objects accepted in a body (no endpoint needs more than a few levels).
MAX_JSON_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Content-Encoding values that are decompressed (wbits for zlib: 32 + 15 detects gzip or zlib).
_DECODED = {"gzip": 47, "x-gzip": 47, "deflate": 47}
# Outside strings: non-JSON constants, and the only numbers that can overflow (long digit runs, big exponents).
_SUSPECT = re.compile(rb"NaN|Infinity|-?\d{19,}(?:\.\d*)?(?:[eE][+-]?\d+)?|-?\d+(?:\.\d*)?[eE][+-]?\d{3,}")
_LENIENT_TYPES = (b"", b"application/x-www-form-urlencoded", b"text/plain")
_INLINE_CHECK_BYTES = 256 * 1024
#: How far past ``max_body_bytes`` a refused body is still read (and dropped) so the 413 arrives cleanly.
DRAIN_BYTES = 64 * 1024 * 1024


class BodyRefused(MaxsimError):
    """A body the service will not read: ``status``, ``code`` and the message to answer."""

    def __init__(
        self, status: int, code: str, detail: str, field: str = "body", kind: str = "body_invalid", close: bool = False
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field, self.kind = status, code, detail, field, kind
        self.close = close  # the body was not read to its end: the connection cannot be reused


class RequestBody:
    """Read, bound, decompress and check the request body, then hand the app a replay of it."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float, request_id: Callable[[Scope], str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.request_id = request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            whole = await self._read(scope, receive)
            if whole is None:  # the client went away
                return
            whole = self._decode(scope, whole)
            if len(whole) > _INLINE_CHECK_BYTES:  # a big body is checked off the event loop
                await run_in_threadpool(check_json_body, whole)
            elif whole:
                check_json_body(whole)
        except BodyRefused as exc:
            await self._refuse(scope, send, exc)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(_as_json(scope), replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes + DRAIN_BYTES:
            raise self._too_large(declared, exact=True, close=True)
        encoding = (_header(scope, b"content-encoding") or b"identity").decode("latin-1").strip().lower()
        if encoding not in ("identity", *_DECODED):
            raise BodyRefused(
                415,
                "INPUT_UNSUPPORTED_ENCODING",
                f"Content-Encoding {encoding!r} is not supported; send the body uncompressed, gzip or deflate",
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                if size > self.max_bytes:  # draining a refused body: answer what was found
                    raise self._too_large(size, exact=False, close=True) from None
                raise BodyRefused(
                    408,
                    "INPUT_BODY_TIMEOUT",
                    f"the request body did not arrive within the limit body_timeout_s={self.timeout_s:g} "
                    f"({size} of {declared if declared is not None else 'an unknown number of'} bytes "
                    "received)",
                    close=True,
                ) from None
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            size += len(body)
            more = message.get("more_body", False)
            if size > self.max_bytes:  # refused: drop the rest, up to DRAIN_BYTES more
                if not more:  # the whole body has been read: its size is known
                    raise self._too_large(size, exact=True)
                if size > self.max_bytes + DRAIN_BYTES:
                    raise self._too_large(size, exact=False, close=True)
                continue
            chunks.append(body)
            if not more:
                return b"".join(chunks)

    def _decode(self, scope: Scope, whole: bytes) -> bytes:
        encoding = (_header(scope, b"content-encoding") or b"identity").decode("latin-1").strip().lower()
        if encoding not in _DECODED:
            return whole
        inflater = zlib.decompressobj(_DECODED[encoding])
        try:
            plain = inflater.decompress(whole, self.max_bytes + 1)
        except zlib.error as exc:
            raise BodyRefused(
                422,
                "INPUT_VALIDATION_ERROR",
                f"Content-Encoding is {encoding} but the body is not {encoding} data ({exc})",
                kind="encoding_invalid",
            ) from None
        if len(plain) > self.max_bytes or inflater.unconsumed_tail:
            raise BodyRefused(
                413,
                "INPUT_BODY_TOO_LARGE",
                f"the {encoding} body decompresses to more than the limit max_body_bytes={self.max_bytes}",
            )
        if not inflater.eof:
            raise BodyRefused(
                422, "INPUT_VALIDATION_ERROR", f"the {encoding} body is truncated", kind="encoding_invalid"
            )
        rest = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        scope["headers"] = [*rest, (b"content-length", str(len(plain)).encode())]
        return plain

    def _too_large(self, size: int, exact: bool, close: bool = False) -> BodyRefused:
        return BodyRefused(
            413,
            "INPUT_BODY_TOO_LARGE",
            f"request body of {size} bytes{'' if exact else ' or more'} "
            f"exceeds the limit max_body_bytes={self.max_bytes}",
            close=close,
        )

    async def _refuse(self, scope: Scope, send: Send, exc: BodyRefused) -> None:
        rid = self.request_id(scope)
        if exc.code == "INPUT_VALIDATION_ERROR":
            problem = {"field": exc.field, "message": exc.detail, "type": exc.kind, "input": None}
            payload = validation_body([problem], rid)
        else:
            payload = error_body(exc.code, exc.detail, rid)
        body = dumps(payload)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode()),
        ]
        if exc.close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# ---- what the JSON parser lets through -----------------------------------------------------------


def check_json_body(raw: bytes) -> None:
    """Raise ``BodyRefused`` (422) for a body that is not UTF-8, nests too deeply or holds numbers
    that cannot be represented; syntax errors are left to the parser, which reports them.

    Every pass is a C-speed bytes operation; the body is cut into strings and the rest only when a
    cheap over-approximation (which looks inside strings too) says it might be needed."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = " (it looks gzip-compressed: send the header Content-Encoding: gzip)" if raw[:2] == b"\x1f\x8b" else ""
        raise BodyRefused(
            422,
            "INPUT_VALIDATION_ERROR",
            f"the body is not valid UTF-8: byte 0x{raw[exc.start]:02x} at position {exc.start}{hint}",
            kind="utf8_invalid",
        ) from None
    may_nest = raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH  # cannot nest deeper than it opens
    suspect = _may_hold_bad_numbers(raw)
    if not (may_nest or suspect):  # the common case
        return
    bare = _outside_strings(raw)  # structure, numbers and constants
    depth = _max_depth(bare) if may_nest else 0
    if depth > MAX_JSON_DEPTH:
        raise BodyRefused(
            422,
            "INPUT_VALIDATION_ERROR",
            f"arrays and objects nest {depth} levels deep; the limit is {MAX_JSON_DEPTH}",
            kind="json_too_deep",
        )
    for m in _SUSPECT.finditer(bare) if suspect else ():
        token = m.group().decode("ascii")
        if _representable(token):
            continue
        field = _field_of_bad_number(raw)
        if token in ("NaN", "Infinity"):
            why = f"{'-' if bare[m.start() - 1 : m.start()] == b'-' else ''}{token} is not a JSON number"
        elif _is_int(token):
            why = f"the integer {_cut(token)} is outside the signed 64-bit range; send it as a string"
        else:
            why = f"the number {_cut(token)} is too large for a 64-bit float"
        raise BodyRefused(422, "INPUT_VALIDATION_ERROR", why, field=field or "body", kind="number_invalid")


def _table(mapping: dict[bytes, bytes]) -> bytes:
    table = bytearray(b" " * 256)
    for chars, to in mapping.items():
        for c in chars:
            table[c] = to[0]
    return bytes(table)


_SHAPES = _table({b"0123456789": b"0", b"eE": b"e", b"+-": b"+"})  # a number's shape, everything else a space
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def _may_hold_bad_numbers(raw: bytes) -> bool:
    """Over-approximation, strings included: NaN/Infinity, 19 digits in a row, or a 3-digit exponent."""
    if b"NaN" in raw or b"Infinity" in raw:
        return True
    shapes = raw.translate(_SHAPES)
    return b"0" * 19 in shapes or b"0e000" in shapes or b"0e+000" in shapes


def _outside_strings(raw: bytes) -> bytes:
    """``raw`` without its string literals. Escaped backslashes, then escaped quotes, are dropped
    first (JSON escapes pair from the left), so that every quote left opens or closes a string."""
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(unescaped.split(b'"')[::2])


def _max_depth(bare: bytes) -> int:
    brackets = np.frombuffer(bare.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    step = np.where((brackets == 91) | (brackets == 123), 1, -1)
    return int(np.cumsum(step).max()) if len(step) else 0


def _is_int(token: str) -> bool:
    return not any(c in token for c in ".eE")


def _representable(token: str) -> bool:
    if token in ("NaN", "Infinity"):
        return False
    if _is_int(token):
        return INT64_MIN <= int(token) <= INT64_MAX
    return math.isfinite(float(token))


def _cut(token: str) -> str:
    return token if len(token) <= 40 else token[:20] + "…" + token[-8:]


def _field_of_bad_number(raw: bytes) -> str | None:
    """The dotted path of the first unrepresentable number, found by parsing leniently (only on error)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return path or "body"
        if isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
            return path or "body"
        if isinstance(v, dict):
            stack.extend((f"{path}.{k}" if path else str(k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))
    return None


def _as_json(scope: Scope) -> Scope:
    """Every endpoint takes JSON: read a body sent without a JSON content type as JSON anyway."""
    ctype = _header(scope, b"content-type") or b""
    if ctype.split(b";")[0].strip().lower() not in _LENIENT_TYPES:
        return scope
    rest = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
    scope["headers"] = [*rest, (b"content-type", b"application/json")]  # in place: outer layers read scope["route"]
    return scope


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return v
    return None


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
