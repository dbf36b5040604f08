"""Settings of the HTTP service: one frozen dataclass, built at the edge (CLI or tests) and passed in.

Nothing here is computed on import; ``Settings()`` gives the documented defaults and every field
is checked in ``__post_init__`` so that a bad value fails at start-up with a message that names it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from maxsim.errors import MaxsimError

#: Late-interaction model names that Jina clients send; the loaded model answers to these (and to
#: its own name and to ``--model-alias``) on /v1/multi-vector, /v1/embeddings and /v1/rerank.
DEFAULT_MODEL_ALIASES: tuple[str, ...] = ("jina-colbert-v2", "jina-colbert-v1-en")
#: Reranker names that Jina clients send by default (LangChain, LlamaIndex, Haystack and rerankers:
#: v1-base-en; LiteLLM's documented example: v2-base-multilingual); /v1/rerank only.
RERANKER_ALIASES: tuple[str, ...] = ("jina-reranker-v1-base-en", "jina-reranker-v2-base-multilingual")
#: Embedding model names that Jina clients send by default (LangChain: v2-base-en; LlamaIndex,
#: Haystack and LiteLLM's documented example: v3); /v1/embeddings only, answered by the dense model.
DENSE_MODEL_ALIASES: tuple[str, ...] = ("jina-embeddings-v2-base-en", "jina-embeddings-v3")
#: Scales of /v1/rerank scores (see maxsim.scoring.rerank).
RERANK_SCORE_SCALES: tuple[str, ...] = ("maxsim", "unit")

#: Index names allowed in URLs and on disk.
INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SettingsError(MaxsimError, ValueError):
    """A setting of the service is invalid."""


@dataclass(frozen=True)
class Limits:
    """Per-request limits. A request over one is refused with 413 (body size), 408 (body time) or 422 (the others),
    and the message names the limit, e.g. ``max_inputs_per_request=512``."""

    max_body_bytes: int = 16 * 1024 * 1024
    #: Seconds a request body may take to arrive in full once the headers are in (408 above).
    body_timeout_s: float = 30.0
    max_inputs_per_request: int = 512
    max_tokens_per_request: int = 262_144
    max_k: int = 1000
    #: Requests and tokens per minute for each API key (or each client address without keys); 0 = off.
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    #: Seconds a request may wait for the model before a 504.
    request_timeout_s: float = 60.0
    #: Encode jobs waiting for the model before new requests get a 503.
    max_queue: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SettingsError(f"limit {f.name} must be a number, got {value!r}")
            allow_zero = f.name in ("requests_per_minute", "tokens_per_minute")
            if value < 0 or (value == 0 and not allow_zero):
                raise SettingsError(f"limit {f.name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class BatchSettings:
    """The micro-batching queue in front of the model.

    With ``enabled``, the worker takes every job waiting in the queue and, only while more requests
    are on their way, waits at most ``max_wait_ms`` for them, up to ``max_batch_inputs`` texts or
    ``max_batch_tokens`` tokens; then it encodes them in one call. A lone request never waits. Disabled, each request's texts are encoded on their own (still off
    the event loop, one job at a time).
    """

    enabled: bool = True
    max_wait_ms: float = 10.0
    max_batch_inputs: int = 256
    max_batch_tokens: int = 65_536

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise SettingsError(f"batching enabled must be a bool, got {self.enabled!r}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise SettingsError(f"batch max_wait_ms must be within 0..1000, got {self.max_wait_ms!r}")
        if self.max_batch_inputs < 1 or self.max_batch_tokens < 1:
            raise SettingsError("batch max_batch_inputs and max_batch_tokens must be >= 1")


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` needs besides an already-loaded model.

    Parameters
    ----------
    host, port : where ``maxsim serve`` binds (the app itself does not bind).
    model : model folder or hub id for ``maxsim.load`` (None: the offline default model).
    model_aliases : names the late-interaction model answers to, added to ``DEFAULT_MODEL_ALIASES``
        (and, on /v1/rerank, ``RERANKER_ALIASES``).
    dense_model_aliases : names the dense model answers to on /v1/embeddings, added to
        ``DENSE_MODEL_ALIASES``.
    rerank_scores : "maxsim" (raw MaxSim sums) or "unit" (mean best cosine per query token,
        floored at 0: a 0-1 scale; see ``maxsim.scoring.rerank``).
    indexes : (name, path) pairs of existing indexes to serve.
    index_dir : directory where ``POST /v1/indexes`` creates new indexes; indexes already in it
        are served too. None disables creation.
    api_keys : accepted bearer keys; empty means no authentication (local use only).
    allow_unauthenticated : allow binding a non-loopback host without keys.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    model_aliases: tuple[str, ...] = ()
    dense_model_aliases: tuple[str, ...] = ()
    rerank_scores: str = "maxsim"
    indexes: tuple[tuple[str, str], ...] = ()
    index_dir: str | None = None
    api_keys: frozenset[str] = frozenset()
    allow_unauthenticated: bool = False
    limits: Limits = field(default_factory=Limits)
    batching: BatchSettings = field(default_factory=BatchSettings)
    log_level: str = "info"

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be within 0..65535, got {self.port!r}")
        names = [n for n, _ in self.indexes]
        for name in names:
            if not INDEX_NAME.match(name):
                raise SettingsError(f"index name {name!r} must match {INDEX_NAME.pattern}")
        if len(set(names)) != len(names):
            raise SettingsError(f"index names must be unique, got {names}")
        for key in self.api_keys:
            if not isinstance(key, str) or len(key) < 8 or key != key.strip():
                raise SettingsError(
                    "every API key must be a string of at least 8 characters without surrounding spaces"
                )
        both = set(self.model_aliases) & set(self.dense_model_aliases + DENSE_MODEL_ALIASES)
        both |= set(self.dense_model_aliases) & set(self.model_aliases + DEFAULT_MODEL_ALIASES + RERANKER_ALIASES)
        if both:
            raise SettingsError(
                f"model names {sorted(both)} are given to both the late-interaction and the dense model"
            )
        if self.rerank_scores not in RERANK_SCORE_SCALES:
            raise SettingsError(f"rerank_scores must be one of {list(RERANK_SCORE_SCALES)}, got {self.rerank_scores!r}")
        if self.log_level not in ("critical", "error", "warning", "info", "debug"):
            raise SettingsError(f"log_level must be one of critical/error/warning/info/debug, got {self.log_level!r}")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    def check_bind(self) -> None:
        """Refuse to serve without keys on anything but loopback, unless explicitly allowed."""
        if self.auth_enabled or self.allow_unauthenticated or is_loopback(self.host):
            return
        raise SettingsError(
            f"refusing to listen on {self.host!r} without API keys: anyone who can reach this address "
            "could use the service. Pass --api-key/--api-keys-file, bind to 127.0.0.1, or pass "
            "--allow-unauthenticated if this is really what you want."
        )


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_api_keys_file(path: str | Path) -> frozenset[str]:
    """One key per line; blank lines and lines starting with '#' are ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read API keys file {path}: {exc.strerror or exc}") from None
    keys = frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not keys:
        raise SettingsError(f"API keys file {path} holds no keys")
    return keys


def parse_index_arg(value: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (name, path)."""
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise SettingsError(f"--index expects NAME=PATH, got {value!r}")
    if not INDEX_NAME.match(name):
        raise SettingsError(f"index name {name!r} must match {INDEX_NAME.pattern}")
    return name, path
