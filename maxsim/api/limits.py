"""Request limits: counts and tokens (422), rate limits (429). The body's size and time limits are in ``body``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from maxsim.api.errors import ApiError, limit_exceeded
from maxsim.api.settings import Limits


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

    def __init__(
        self, requests_per_minute: int, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
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
                    raise ApiError(
                        429,
                        "RATE_REQUEST_LIMIT_EXCEEDED",
                        f"request rate over the limit requests_per_minute={self.rpm}; retry in {wait:.1f} s",
                        {"Retry-After": str(max(1, round(wait))), "X-RateLimit-Remaining-Requests": "0"},
                    )
                b.level -= 1
                headers["X-RateLimit-Remaining-Requests"] = str(int(b.level))
            if self.tpm:
                b = self._level(self._tokens, client, self.tpm)
                if b.level < 1:
                    wait = (1 - b.level) * 60.0 / self.tpm
                    raise ApiError(
                        429,
                        "RATE_TOKEN_LIMIT_EXCEEDED",
                        f"token rate over the limit tokens_per_minute={self.tpm}; retry in {wait:.1f} s",
                        {"Retry-After": str(max(1, round(wait))), "X-RateLimit-Remaining-Tokens": "0"},
                    )
                headers["X-RateLimit-Remaining-Tokens"] = str(int(b.level))
        return headers

    def spend_tokens(self, client: str, tokens: int) -> dict[str, str]:
        if not self.tpm:
            return {}
        with self._lock:
            b = self._level(self._tokens, client, self.tpm)
            if tokens > b.level:
                raise ApiError(
                    429,
                    "RATE_TOKEN_LIMIT_EXCEEDED",
                    f"this request's {tokens} tokens exceed what is left of the limit "
                    f"tokens_per_minute={self.tpm} ({int(b.level)} left)",
                    {
                        "Retry-After": str(max(1, round((tokens - b.level) * 60.0 / self.tpm))),
                        "X-RateLimit-Remaining-Tokens": str(int(b.level)),
                    },
                )
            b.level -= tokens
            return {"X-RateLimit-Remaining-Tokens": str(int(b.level))}
