"""Retries of writes with exponential back-off on transient errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from maxsim.errors import InvalidArgumentError

_T = TypeVar("_T")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of writes on transient errors: ``attempts`` tries, sleeping
    ``min(max_delay, base_delay * 2**i)`` seconds after failure ``i``."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidArgumentError(f"attempts must be >= 1; got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise InvalidArgumentError("retry delays must be non-negative")


def with_retry(
    fn: Callable[[], _T],
    policy: RetryPolicy,
    is_transient: Callable[[BaseException], bool],
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Call ``fn``; on a transient error sleep with exponential back-off and try again.

    Non-transient errors, and the last transient one, propagate unchanged.
    """
    for attempt in range(policy.attempts):
        try:
            return fn()
        except Exception as exc:
            if attempt == policy.attempts - 1 or not is_transient(exc):
                raise
            sleep(min(policy.max_delay, policy.base_delay * (2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover
