"""The state one app holds: model, batcher, indexes, auth, limits, metrics; and the shared steps
of every endpoint (resolve the model name, tokenise off the event loop, count, encode, explain)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from maxsim.api.auth import KeyChecker
from maxsim.api.batching import Batcher
from maxsim.api.errors import ApiError, model_not_found
from maxsim.api.limits import RateLimiter, check_tokens
from maxsim.api.metrics import Metrics
from maxsim.api.settings import INDEX_NAME, Settings, SettingsError
from maxsim.errors import MaxsimError
from maxsim.text.clean import validate_texts

log = logging.getLogger("maxsim.api")


@dataclass
class Tokenized:
    """Texts after tokenisation: the model inputs and what they cost."""

    items: list[Any]  # TokenizedText
    tokens: int
    is_query: bool


class IndexRegistry:
    """Indexes served by name: the ones given with --index plus every index under index_dir."""

    def __init__(self, settings: Settings, model: Any) -> None:
        self.settings = settings
        self.model = model
        self._lock = threading.Lock()
        self._indexes: dict[str, Any] = {}
        self._paths: dict[str, Path] = {}

    def _open(self, path: Path | str) -> Any:
        """An index directory, or a sharded index (``shards.json``: searched on all shards at once)."""
        from maxsim.index import Index
        from maxsim.index.sharded import ShardedIndex, is_sharded

        if is_sharded(path):
            return ShardedIndex.open(path, model=self.model)
        return Index.open(path, model=self.model)

    def open_all(self) -> None:
        for name, path in self.settings.indexes:
            index = self._open(path)
            self._check_model(name, index)
            self._indexes[name], self._paths[name] = index, Path(path).resolve()
        if self.settings.index_dir:
            root = Path(self.settings.index_dir)
            root.mkdir(parents=True, exist_ok=True)
            for sub in sorted(p for p in root.iterdir()
                              if p.is_dir() and ((p / "manifest.json").exists() or (p / "shards.json").exists())):
                if sub.name in self._indexes or not INDEX_NAME.match(sub.name) or sub.resolve() in self._paths.values():
                    continue
                try:
                    index = self._open(sub)
                    self._check_model(sub.name, index)
                except (MaxsimError, Exception) as exc:  # noqa: BLE001 - one bad folder must not stop the server
                    log.warning("not serving %s: %s", sub, exc)
                    continue
                self._indexes[sub.name], self._paths[sub.name] = index, sub.resolve()

    def _check_model(self, name: str, index: Any) -> None:
        if index.model_name not in (None, self.model.name):
            index.close()
            raise SettingsError(
                f"index {name!r} was built with model {index.model_name!r}, but this server runs "
                f"{self.model.name!r}; serve it with --model {index.model_name}"
            )
        if index.dim not in self.model.dims:
            index.close()
            raise SettingsError(f"index {name!r} has dim {index.dim}; the model serves {list(self.model.dims)}")

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._indexes)

    def get(self, name: str) -> Any:
        with self._lock:
            index = self._indexes.get(name)
        if index is None:
            raise ApiError(404, "INDEX_NOT_FOUND", f"no index named {name!r}; known: {self.names()}")
        return index

    def create(self, name: str, dim: int, nbits: int) -> Any:
        from maxsim.index import Index, IndexExistsError

        if not self.settings.index_dir:
            raise ApiError(403, "INDEX_CREATION_DISABLED", "this server was started without --index-dir, so it cannot create indexes")
        if not INDEX_NAME.match(name):
            raise ApiError(422, "INPUT_INVALID", f"name: {name!r} must match {INDEX_NAME.pattern}")
        if dim not in self.model.dims:
            raise ApiError(422, "INPUT_INVALID", f"dimensions: the model serves {list(self.model.dims)}, not {dim}")
        with self._lock:
            if name in self._indexes:
                raise ApiError(409, "INDEX_EXISTS", f"an index named {name!r} already exists")
            try:
                index = Index.create(Path(self.settings.index_dir) / name, model=self.model, dim=dim, nbits=nbits)
            except IndexExistsError:
                raise ApiError(409, "INDEX_EXISTS", f"{name!r} already exists on disk and is not an empty index") from None
            except ValueError as exc:
                raise ApiError(422, "INPUT_INVALID", str(exc)) from None
            self._indexes[name] = index
            self._paths[name] = (Path(self.settings.index_dir) / name).resolve()
            return index

    def close(self) -> None:
        with self._lock:
            for index in self._indexes.values():
                try:
                    index.close()
                except Exception:
                    log.exception("closing an index failed")
            self._indexes.clear()


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
        names = [model.name, *settings.model_aliases]
        self.model_names = list(dict.fromkeys(names))
        self.indexes.open_all()  # here, so that a bad index fails create_app with its message

    def start(self) -> None:
        self.batcher.start()

    def stop(self) -> None:
        self.batcher.close()
        self.indexes.close()

    # ---- steps shared by the endpoints --------------------------------------------------------
    def resolve_model(self, name: str) -> str:
        if name not in self.model_names:
            raise model_not_found(name, self.model_names)
        return name

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
