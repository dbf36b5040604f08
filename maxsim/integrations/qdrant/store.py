"""Qdrant store: MaxSim multivector collections with a single-vector first stage.

One collection per model and dim holds, per document (or per part of a long document):

- ``maxsim``: the token vectors as a multivector, compared with ``MAX_SIM`` and dot product
  (maxsim vectors are L2-normalised, so dot is cosine). HNSW is off on it (``m=0``): it is
  only used to rerank candidates, never to find them.
- ``muvera``: the MUVERA fixed dimensional encoding (:mod:`maxsim.postprocess.muvera`), a dense
  vector whose dot product tracks MaxSim; this is the default first stage.
- ``pooled``: the mean token vector, L2-normalised, the cheaper alternative first stage.

Search is one ``query_points`` request: a ``prefetch`` takes ``prefetch_limit`` candidates by
the first-stage vector, then MaxSim on ``maxsim`` reranks them and returns the top ``k``.

The same code runs on three engines, chosen by the ``location`` of :meth:`QdrantStore.create`:

- ``":memory:"`` or a directory path: qdrant-client's embedded local mode;
- ``"edge:/some/dir"``: Qdrant Edge (``qdrant-edge-py``), the Rust engine in-process;
- ``"http://host:6333"`` / ``"https://..."``: a Qdrant server or cluster (``api_key``; and
  ``shard_number`` / ``replication_factor`` in :class:`QdrantSettings` on create).

User ids are strings; each maps to a stable point id, ``uuid5(MAXSIM_NAMESPACE, id)``.
The payload is ``{"doc_id", "text", "metadata", "part", "n_parts"}``; filters match
``metadata`` keys. Writes are batched, retried with exponential back-off on transient
errors, and idempotent (the same document gives the same points).

:class:`QdrantStore` keeps the store contract of :mod:`maxsim.store` (the one
``maxsim.index.Index`` keeps): ``add_embeddings`` refuses stored ids, ``update_embeddings``,
``delete`` and ``get`` refuse unknown ones, a ``None`` text or metadata keeps the stored value,
and search returns one hit list per query. Qdrant has no transactions: ``add`` looks the ids up
before writing, so on a server shared by several writers the check is not atomic with the write
(two writers adding the same new id at once both succeed, the last write wins), and a write that
fails half-way (after the retries) may leave some of its documents written.

Qdrant caps one multivector at 1,048,576 floats (8,192 tokens at dim 128). Longer documents
are split into parts that share ``doc_id`` (``long_docs="split"``, the default; a document's
score is its best part's) or mean-pooled down to the cap (``long_docs="pool"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from maxsim.errors import DuplicateIdError, InvalidArgumentError, UnknownIdError
from maxsim.integrations.qdrant.engines import Engine, Hit, Point, open_engine
from maxsim.integrations.qdrant.errors import CollectionError
from maxsim.integrations.qdrant.filters import Condition, parse_filter
from maxsim.integrations.qdrant.layout import (
    MANIFEST_FORMAT,
    MANIFEST_KEY,
    MANIFEST_VERSION,
    MAXSIM_VECTOR,
    MUVERA_VECTOR,
    POOLED_VECTOR,
    point_id,
    pool_tokens,
)
from maxsim.integrations.qdrant.retry import RetryPolicy
from maxsim.integrations.qdrant.settings import QdrantSettings
from maxsim.postprocess.muvera import Muvera, pooled_vector
from maxsim.store import (
    Encoder,
    StoredDocument,
    TextMethods,
    check_ids,
    check_k,
    check_metadata,
    check_side,
    check_update,
    check_vectors,
    new_ids,
    query_list,
)
from maxsim.types import SUPPORTED_DIMS, SearchHit, TokenVectors

FirstStage = Literal["muvera", "pooled", "none"]

#: The model protocol of the text methods (kept under its old name).
EncoderModel = Encoder


class QdrantStore(TextMethods):
    """A maxsim collection in Qdrant, with the store contract of :mod:`maxsim.store`.

    Build one with :meth:`create` or :meth:`open`. Text methods (``add``, ``update``,
    ``upsert``, ``search``) need a ``model`` (``maxsim.load()``); the ``*_embeddings`` methods
    take token vectors directly.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        dim: int,
        settings: QdrantSettings,
        model_name: str | None,
        model: Encoder | None = None,
        batch_size: int = 64,
    ) -> None:
        self._engine = engine
        self.dim = dim
        self.settings = settings
        self.model_name = model_name
        self.model = model
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size = batch_size
        self._muvera = Muvera(dim, settings.muvera) if settings.muvera is not None else None

    # ---- construction

    @classmethod
    def create(
        cls,
        location: str | Path | Any,
        collection: str = "maxsim",
        *,
        dim: int = 128,
        model: Encoder | str | None = None,
        settings: QdrantSettings | None = None,
        api_key: str | None = None,
        timeout: int | None = None,
        retry: RetryPolicy | None = None,
        exist_ok: bool = False,
        recreate: bool = False,
        batch_size: int = 64,
    ) -> QdrantStore:
        """Create a collection for ``model`` (an object or its name) at ``dim`` and open it.

        ``exist_ok`` opens an existing collection made with the same dim, model and settings;
        ``recreate`` drops it first. Otherwise an existing collection is an error.
        """
        if dim not in SUPPORTED_DIMS:
            raise InvalidArgumentError(f"dim must be one of {SUPPORTED_DIMS}; got {dim!r}")
        settings = settings if settings is not None else QdrantSettings()
        if settings.muvera is not None:
            try:  # validates the parameters against dim before touching Qdrant
                Muvera(dim, settings.muvera)
            except ValueError as exc:
                raise InvalidArgumentError(f"settings.muvera: {exc}") from None
        model_obj = None if isinstance(model, str) or model is None else model
        model_name = model if isinstance(model, str) else getattr(model_obj, "name", None)
        engine = open_engine(location, collection, api_key, timeout, retry or RetryPolicy())
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "model": model_name,
            "dim": dim,
            "settings": settings.to_dict(),
        }
        if _exists(engine):
            if recreate:
                engine.drop()
            elif exist_ok:
                found = engine.manifest()
                if found != manifest:
                    engine.close()
                    raise CollectionError(
                        f"collection {collection!r} exists with a different layout: {found!r}; "
                        "use recreate=True to replace it"
                    )
                return cls(
                    engine, dim=dim, settings=settings, model_name=model_name, model=model_obj, batch_size=batch_size
                )
            else:
                engine.close()
                raise CollectionError(f"collection {collection!r} already exists; pass exist_ok=True or recreate=True")
        engine.create(dim, settings, manifest)
        return cls(engine, dim=dim, settings=settings, model_name=model_name, model=model_obj, batch_size=batch_size)

    @classmethod
    def open(
        cls,
        location: str | Path | Any,
        collection: str = "maxsim",
        *,
        model: Encoder | None = None,
        api_key: str | None = None,
        timeout: int | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int = 64,
    ) -> QdrantStore:
        """Open a collection made by :meth:`create`; its dim and settings come from the collection."""
        engine = open_engine(location, collection, api_key, timeout, retry or RetryPolicy())
        if not _exists(engine):
            engine.close()
            raise CollectionError(f"no collection {collection!r} at {location!r}; create it first")
        manifest = engine.manifest()
        if not manifest or manifest.get("format") != MANIFEST_FORMAT:
            engine.close()
            raise CollectionError(f"collection {collection!r} was not created by maxsim (no '{MANIFEST_KEY}' metadata)")
        if manifest.get("version") != MANIFEST_VERSION:
            engine.close()
            raise CollectionError(
                f"collection {collection!r} has layout version {manifest.get('version')}; "
                f"this maxsim reads version {MANIFEST_VERSION}"
            )
        if model is not None and manifest.get("model") and model.name != manifest["model"]:
            engine.close()
            raise CollectionError(
                f"collection {collection!r} holds vectors of model {manifest['model']!r}, not {model.name!r}"
            )
        return cls(
            engine,
            dim=int(manifest["dim"]),
            settings=QdrantSettings.from_dict(manifest["settings"]),
            model_name=manifest.get("model"),
            model=model,
            batch_size=batch_size,
        )

    @property
    def engine(self) -> str:
        """Which engine holds the collection: ``"local"``, ``"edge"`` or ``"server"``."""
        return self._engine.kind

    def close(self) -> None:
        """Flush and release the engine (local mode and Edge hold a lock on their directory)."""
        self._engine.close()

    def __enter__(self) -> QdrantStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes

    def add_embeddings(
        self,
        embeddings: Sequence[TokenVectors],
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Add new documents given as token vectors (float [n_tokens, dim] each; rows are
        L2-normalised); returns their ids (fresh uuid4 hex strings when ``ids`` is None).

        :class:`~maxsim.errors.DuplicateIdError` if an id is already stored; nothing is written
        then. The ids are looked up before the write, which on a server with several writers is
        not atomic with it (see the module docstring).
        """
        vectors = check_vectors(embeddings, self.dim, "embeddings")
        ids = new_ids(len(vectors)) if ids is None else check_ids(ids, len(vectors))
        texts = check_side(texts, len(ids), "texts", str)
        metadata = check_metadata(metadata, len(ids))
        stored = self._stored(ids)
        if stored:
            found = [i for i in ids if i in stored]
            raise DuplicateIdError(
                f"ids already in the collection: {found[:5]!r} (use upsert() or update() to replace them)"
            )
        self._write(vectors, ids, texts, metadata)
        return ids

    def update_embeddings(
        self,
        ids: Sequence[str],
        embeddings: Sequence[TokenVectors] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Replace stored documents, keeping their ids; a None text or metadata entry keeps the
        stored value (``{}`` clears metadata). With ``embeddings=None`` only metadata changes.
        :class:`~maxsim.errors.UnknownIdError` for unknown ids; nothing is changed then."""
        ids, vectors, metadata = check_update(ids, embeddings, texts, metadata, self.dim)
        if vectors is None:
            self._require(ids)
            changed = [(i, m) for i, m in zip(ids, metadata, strict=True) if m is not None]
            for start in range(0, len(changed), self.batch_size):
                batch = changed[start : start + self.batch_size]
                self._engine.set_metadata([i for i, _ in batch], [m for _, m in batch])
            return
        texts = check_side(texts, len(ids), "texts", str)
        stored = self._require(ids)
        texts, metadata = _keep_stored(ids, stored, texts, metadata)
        self._write(vectors, ids, texts, metadata)

    def upsert_embeddings(
        self,
        embeddings: Sequence[TokenVectors],
        ids: Sequence[str],
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Add the new ids and replace the stored ones (a None text or metadata entry keeps the
        stored value). Returns ``ids``."""
        vectors = check_vectors(embeddings, self.dim, "embeddings")
        ids = check_ids(ids, len(vectors))
        texts = check_side(texts, len(ids), "texts", str)
        metadata = check_metadata(metadata, len(ids))
        texts, metadata = _keep_stored(ids, self._stored(ids), texts, metadata)
        self._write(vectors, ids, texts, metadata)
        return ids

    def delete(self, ids: Sequence[str], missing_ok: bool = False) -> int:
        """Delete documents (all their parts) by id; returns how many were deleted. Unknown ids
        raise :class:`~maxsim.errors.UnknownIdError` and nothing is deleted, unless ``missing_ok``."""
        ids = check_ids(ids)
        found = list(self._stored(ids)) if missing_ok else list(self._require(ids))
        for start in range(0, len(found), self.batch_size):
            self._engine.delete(found[start : start + self.batch_size])
        return len(found)

    def _write(self, vectors: list[np.ndarray], ids: list[str], texts: list, metadata: list) -> None:
        """Upsert the points of documents (split or pooled per ``settings.long_docs``); parts
        left over from a longer earlier version of a document are removed, so writes are idempotent."""
        cap = self.settings.token_cap(self.dim)
        n = len(ids)
        for start in range(0, n, self.batch_size):
            points: list[Point] = []
            parts_of: dict[str, int] = {}
            for i in range(start, min(n, start + self.batch_size)):
                doc_id, tokens, meta = ids[i], vectors[i], metadata[i]
                if len(tokens) > cap and self.settings.long_docs == "pool":
                    pieces = [pool_tokens(tokens, cap)]
                else:
                    pieces = [tokens[j : j + cap] for j in range(0, len(tokens), cap)]
                parts_of[doc_id] = len(pieces)
                for part, piece in enumerate(pieces):
                    payload = {
                        "doc_id": doc_id,
                        "text": texts[i],
                        "metadata": meta,
                        "part": part,
                        "n_parts": len(pieces),
                    }
                    points.append(Point(point_id(doc_id, part), self._vectors(piece), payload))
            for j in range(0, len(points), self.batch_size):
                self._engine.upsert(points[j : j + self.batch_size])
            # parts are numbered 0..n-1, so an earlier, longer version left stale parts exactly when
            # part n exists: look those up by id (cheap) and delete only for those documents
            stale = {p["doc_id"] for p in self._engine.retrieve([point_id(d, n) for d, n in parts_of.items()])}
            if stale:
                self._engine.delete(sorted(stale), min_part={d: parts_of[d] for d in stale})

    # ---- reads

    def search_embeddings(
        self,
        queries: Sequence[TokenVectors] | TokenVectors,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,  # noqa: A002
        *,
        first_stage: FirstStage = "muvera",
        prefetch_limit: int = 200,
        exact_first_stage: bool = False,
    ) -> list[list[SearchHit]]:
        """Top ``k`` documents by MaxSim for each query: one hit list per query, best first (a
        single 2-D array is one query). All queries go in one batched request.

        Per query, ``prefetch`` takes ``prefetch_limit`` candidates by the ``first_stage``
        vector (``"muvera"`` or ``"pooled"``), then MaxSim over the multivectors ranks them.
        ``first_stage="none"`` scores every document by MaxSim (a full scan). ``filter``
        restricts both stages (see :func:`~maxsim.integrations.qdrant.filters.parse_filter`);
        ``exact_first_stage`` scans the first stage instead of using HNSW. A document split into
        parts scores as its best part.
        """
        queries = check_vectors(query_list(queries), self.dim, "queries")
        k = check_k(k)
        conditions = parse_filter(filter)
        if first_stage not in ("muvera", "pooled", "none"):
            raise InvalidArgumentError(f"first_stage must be 'muvera', 'pooled' or 'none'; got {first_stage!r}")
        if first_stage == "muvera" and self._muvera is None:
            raise InvalidArgumentError("this collection has no MUVERA vectors; use first_stage='pooled' or 'none'")
        if first_stage == "pooled" and not self.settings.pooled:
            raise InvalidArgumentError("this collection has no pooled vectors; use first_stage='muvera' or 'none'")
        valid_limit = isinstance(prefetch_limit, int | np.integer) and not isinstance(prefetch_limit, bool)
        if first_stage != "none" and (not valid_limit or prefetch_limit < k):
            raise InvalidArgumentError(f"prefetch_limit must be an integer >= k ({k}); got {prefetch_limit!r}")
        prefetch_limit = int(prefetch_limit) if valid_limit else k
        requests = []
        for q in queries:
            first: tuple[str, list[float]] | None = None
            if first_stage == "muvera":
                first = (MUVERA_VECTOR, self._muvera.encode_query(q).tolist())  # type: ignore[union-attr]
            elif first_stage == "pooled":
                first = (POOLED_VECTOR, pooled_vector(q).tolist())
            requests.append((q.tolist(), first))
        results: list[list[SearchHit] | None] = [None] * len(requests)
        todo = list(range(len(requests)))
        limit = k
        while todo:
            batch = self._engine.query(
                [requests[i] for i in todo], prefetch_limit, limit, conditions, exact_first_stage
            )
            again = []
            for i, hits in zip(todo, batch, strict=True):
                best = _best_per_document(hits)
                exhausted = len(hits) < limit or (first_stage != "none" and limit >= prefetch_limit)
                if len(best) >= k or exhausted:
                    results[i] = best[:k]
                else:  # parts of one document took several places: ask for more
                    again.append(i)
            todo = again
            limit = min(limit * 2, prefetch_limit) if first_stage != "none" else limit * 2
        return [r if r is not None else [] for r in results]

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        """Stored id, text and metadata of documents, in the order asked
        (:class:`~maxsim.errors.UnknownIdError`, a ``KeyError``, for unknown ids)."""
        ids = check_ids(ids)
        stored = self._require(ids)
        return [StoredDocument(id=i, text=stored[i].get("text"), metadata=stored[i].get("metadata")) for i in ids]

    def parts(self, ids: Sequence[str]) -> list[int]:
        """How many points each document is stored as (more than 1 when split for length)."""
        ids = check_ids(ids)
        stored = self._require(ids)
        return [int(stored[i].get("n_parts", 1)) for i in ids]

    def count(self, filter: Mapping[str, Any] | None = None) -> int:  # noqa: A002
        """Number of documents (not parts), optionally those matching ``filter``."""
        return self._engine.count([Condition("part", "value", 0), *parse_filter(filter)])

    def optimize(self) -> None:
        """Build indexes now (Edge runs its optimizers in-process; servers do it on their own)."""
        self._engine.optimize()

    # ---- helpers

    def _encoded_with(self, model: Encoder) -> None:
        """Refuse to write vectors of another model than the collection's."""
        name = getattr(model, "name", None)
        if self.model_name and name and name != self.model_name:
            raise InvalidArgumentError(f"this collection holds vectors of model {self.model_name!r}, not {name!r}")

    def _stored(self, ids: list[str]) -> dict[str, dict]:
        """Payload of part 0 of each stored document among ``ids`` (absent ids are left out)."""
        out: dict[str, dict] = {}
        for start in range(0, len(ids), 1000):
            for payload in self._engine.retrieve([point_id(i) for i in ids[start : start + 1000]]):
                out[payload["doc_id"]] = payload
        return out

    def _require(self, ids: list[str]) -> dict[str, dict]:
        """:meth:`_stored`, or UnknownIdError naming the ids that are not stored."""
        stored = self._stored(ids)
        missing = [i for i in ids if i not in stored]
        if missing:
            raise UnknownIdError(f"ids not in the collection: {missing[:5]!r}")
        return stored

    def _vectors(self, tokens: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {MAXSIM_VECTOR: tokens.tolist()}
        if self._muvera is not None:
            out[MUVERA_VECTOR] = self._muvera.encode_document(tokens).tolist()
        if self.settings.pooled:
            out[POOLED_VECTOR] = pooled_vector(tokens).tolist()
        return out


def _exists(engine: Engine) -> bool:
    """``engine.exists()``, closing the engine when that fails (an unreachable server)."""
    try:
        return engine.exists()
    except Exception:
        engine.close()
        raise


def _keep_stored(ids: list[str], stored: Mapping[str, dict], texts: list, metadata: list) -> tuple[list, list]:
    """Fill the None text/metadata entries of stored documents with their stored values."""
    texts, metadata = list(texts), list(metadata)
    for j, doc_id in enumerate(ids):
        if doc_id in stored:
            if texts[j] is None:
                texts[j] = stored[doc_id].get("text")
            if metadata[j] is None:
                metadata[j] = stored[doc_id].get("metadata")
    return texts, metadata


def _best_per_document(hits: list[Hit]) -> list[SearchHit]:
    """Hits are sorted by score; keep each document's first (best-scoring) part."""
    best: dict[str, SearchHit] = {}
    for h in hits:
        doc_id = h.payload.get("doc_id")
        if doc_id is not None and doc_id not in best:
            best[doc_id] = SearchHit(
                id=doc_id, score=h.score, text=h.payload.get("text"), metadata=h.payload.get("metadata")
            )
    return list(best.values())
