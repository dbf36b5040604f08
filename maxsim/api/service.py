"""The state one app holds: model, batcher, indexes, auth, limits, metrics; and the shared steps
of every endpoint (resolve the model name, tokenise off the event loop, count, encode, explain)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from maxsim.api.auth import KeyChecker
from maxsim.api.batching import Batcher
from maxsim.api.errors import ApiError, model_not_found
from maxsim.api.index_registry import IndexRegistry
from maxsim.api.limits import RateLimiter, check_tokens
from maxsim.api.metrics import Metrics
from maxsim.api.settings import (
    DEFAULT_MODEL_ALIASES,
    DENSE_MODEL_ALIASES,
    RERANKER_ALIASES,
    Settings,
)
from maxsim.text.clean import validate_texts

log = logging.getLogger("maxsim.api")


@dataclass
class Tokenized:
    """Texts after tokenisation: the model inputs and what they cost."""

    items: list[Any]  # TokenizedText
    tokens: int
    is_query: bool


class Service:
    """Everything the routes share. Built by ``create_app``; started and stopped by its lifespan."""

    def __init__(self, settings: Settings, model: Any) -> None:
        self.settings = settings
        self.model = model
        self.metrics = Metrics()
        self.batcher = Batcher(model, settings.batching, settings.limits.max_queue, self.metrics)
        self.metrics.set_gauge("maxsim_queue_depth", lambda: self.batcher.queue_depth)
        self.metrics.set_gauge("maxsim_pass_overhead_positions", lambda: round(self.batcher.pass_cost.overhead(), 1))
        self.keys = KeyChecker(settings.api_keys)
        self.rates = RateLimiter(settings.limits.requests_per_minute, settings.limits.tokens_per_minute)
        self.indexes = IndexRegistry(settings, model)
        #: Names of the late-interaction model (multi-vector answers, reranking), built-in ones first.
        self.model_names = _unique([model.name, *DEFAULT_MODEL_ALIASES, *settings.model_aliases])
        self.rerank_model_names = _unique([*self.model_names, *RERANKER_ALIASES])
        self.dense = self._dense_model(model)
        self.dense_model_names = (
            _unique([self.dense.name, *DENSE_MODEL_ALIASES, *settings.dense_model_aliases])
            if self.dense is not None
            else []
        )
        # the dense model's own queue: its passes differ from the late-interaction ones
        self.dense_batcher = (
            Batcher(self.dense, settings.batching, settings.limits.max_queue, self.metrics)
            if self.dense is not None
            else None
        )
        self.indexes.open_all()  # here, so that a bad index fails create_app with its message

    @staticmethod
    def _dense_model(model: Any) -> Any:
        from maxsim.models.colbert import Model
        from maxsim.models.dense import dense_model_for

        return dense_model_for(model) if isinstance(model, Model) else None

    def start(self) -> None:
        self.batcher.start()
        if self.dense_batcher is not None:
            self.dense_batcher.start()

    def stop(self) -> None:
        self.batcher.close()
        if self.dense_batcher is not None:
            self.dense_batcher.close()
        self.indexes.close()

    # ---- steps shared by the endpoints --------------------------------------------------------
    def resolve_model(self, name: str, endpoint: str = "/v1/multi-vector") -> str:
        """Which model answers ``name`` on ``endpoint``: "late-interaction" or "dense"; else a 400
        that lists the names this endpoint accepts."""
        if endpoint == "/v1/rerank":
            if name in self.rerank_model_names:
                return "late-interaction"
            known = self.rerank_model_names
        else:
            if name in self.model_names:
                return "late-interaction"
            if endpoint == "/v1/embeddings" and name in self.dense_model_names:
                return "dense"
            known = self.model_names + (self.dense_model_names if endpoint == "/v1/embeddings" else [])
        err = model_not_found(name, known)
        if name in self.dense_model_names:
            err.detail += f"; {name!r} is the dense model here, served on /v1/embeddings"
        elif name in self.rerank_model_names:
            err.detail += f"; {name!r} is a reranker name, served on /v1/rerank"
        err.args = (err.detail,)
        raise err

    async def tokenize_dense(self, texts: list[str], kind: str, what: str) -> Tokenized:
        """Clean and tokenise for the dense model in a worker thread."""

        def work() -> Tokenized:
            items = self.dense.tokenize(validate_texts(texts, what), kind)
            return Tokenized(items, int(sum(len(it) for it in items)), kind == "query")

        return await run_in_threadpool(work)

    async def encode_dense(self, items: list[Any], dim: int, request: Any = None) -> list[np.ndarray]:
        """One vector per item through the dense model's queue."""
        ticket = request.scope.get("state", {}).get("ticket") if request is not None else None
        if ticket is not None:
            ticket.queued()  # the ticket counts for the late-interaction queue, which this request leaves alone
        if self.dense_batcher is None:  # resolve_model never answers "dense" then
            raise ApiError(400, "INPUT_MODEL_NOT_FOUND", "this server serves no dense model")
        rows = await self.dense_batcher.encode(items, dim, self.settings.limits.request_timeout_s)
        return [r[0] for r in rows]

    async def encode_dense_late_chunked(self, texts: list[str], kind: str, dim: int, request: Any = None) -> list:
        """Late chunking (``maxsim.models.dense.DenseModel.encode_late_chunked``): the request's texts
        share forward passes, so it runs on its own, off the event loop, not through the queue."""
        ticket = request.scope.get("state", {}).get("ticket") if request is not None else None
        if ticket is not None:
            ticket.queued()
        clean = validate_texts(texts, "input")
        vectors, _, _ = await run_in_threadpool(self.dense.encode_late_chunked, clean, kind, dim)
        return list(vectors)

    async def tokenize(self, texts: list[str], is_query: bool, what: str) -> Tokenized:
        """Clean and tokenise in a worker thread; check the token limit."""

        def work() -> Tokenized:
            clean = validate_texts(texts, what)
            tok = self.model.tokenizer
            items = tok.queries(clean) if is_query else tok.documents(clean)
            return Tokenized(items, int(sum(len(it) for it in items)), is_query)

        result = await run_in_threadpool(work)
        return result

    def check_tokens(self, *parts: Tokenized, client: str | None, headers: dict[str, str]) -> int:
        total = sum(p.tokens for p in parts)
        check_tokens(self.settings.limits, total)
        if self.rates.enabled and client is not None:
            headers.update(self.rates.spend_tokens(client, total))
        return total

    async def encode(self, items: list[Any], dim: int, request: Any = None) -> list[np.ndarray]:
        """Encode through the batcher; ``request`` releases the request's arrival ticket once queued."""
        ticket = request.scope.get("state", {}).get("ticket") if request is not None else None
        return await self.batcher.encode(items, dim, self.settings.limits.request_timeout_s, ticket)

    def explain(self, q_item: Any, q: np.ndarray, d_item: Any, d: np.ndarray) -> dict:
        """Per query token: the document token giving its maximum (positions in the full token lists)."""
        from maxsim.scoring.maxsim import maxsim_token_matches

        tok = self.model.tokenizer
        s = tok.settings
        best, sims = maxsim_token_matches(q, d)
        kept_positions = np.flatnonzero(d_item.keep)
        q_kinds = _token_kinds(len(q_item), len(s.query_marker_ids), q_item.ids == s.expansion_token_id, None)
        d_kinds = _token_kinds(len(d_item), len(s.document_marker_ids), None, ~d_item.keep)
        matches = [
            {"query_token": i, "document_token": int(kept_positions[j]) if j >= 0 else -1, "similarity": float(sims[i])}
            for i, j in enumerate(best.tolist())
        ]
        return {
            "score": float(sims.sum()),
            "query_tokens": tok.tokens(q_item.ids),
            "query_token_kinds": q_kinds,
            "document_tokens": tok.tokens(d_item.ids),
            "document_token_kinds": d_kinds,
            "matches": matches,
        }


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _token_kinds(n: int, n_marker: int, expansion: np.ndarray | None, skipped: np.ndarray | None) -> list[str]:
    """'special' (start, marker, end), 'expansion' (query padding), 'skipped' (no vector), or 'text'."""
    kinds = ["text"] * n
    for i in range(min(n, 1 + n_marker)):
        kinds[i] = "special"
    if expansion is not None:
        for i in np.flatnonzero(expansion).tolist():
            kinds[i] = "expansion"
        real_end = int(np.flatnonzero(~expansion)[-1]) if (~expansion).any() else n - 1
        kinds[real_end] = "special"
    else:
        kinds[n - 1] = "special"
    if skipped is not None:
        for i in np.flatnonzero(skipped).tolist():
            if kinds[i] == "text":
                kinds[i] = "skipped"
    return kinds
