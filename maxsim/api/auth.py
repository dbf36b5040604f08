"""Bearer-key authentication with constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac

from maxsim.api.errors import ApiError


class KeyChecker:
    """Holds SHA-256 digests of the accepted keys; ``check`` compares against all of them.

    Comparing fixed-length digests with ``hmac.compare_digest``, and always against every key,
    keeps the time independent of how much of a key matched and of which key matched.
    """

    def __init__(self, keys: frozenset[str]) -> None:
        self._digests = [hashlib.sha256(k.encode("utf-8")).digest() for k in sorted(keys)]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def check(self, authorization: str | None) -> str | None:
        """Return a short key label for rate limiting (None without auth); raise ApiError(401)."""
        if not self._digests:
            return None
        if not authorization:
            raise ApiError(
                401,
                "AUTH_MISSING_API_KEY",
                "missing API key: send the header 'Authorization: Bearer <key>'",
                {"WWW-Authenticate": "Bearer"},
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "AUTH_MISSING_API_KEY",
                "the Authorization header must be 'Bearer <key>'",
                {"WWW-Authenticate": "Bearer"},
            )
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        ok = False
        for d in self._digests:
            ok |= hmac.compare_digest(d, digest)
        if not ok:
            raise ApiError(401, "AUTH_INVALID_API_KEY", "invalid API key", {"WWW-Authenticate": "Bearer"})
        return digest.hex()[:16]
