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

The same code runs on three engines, chosen by the ``location`` string of :func:`connect`:

- ``":memory:"`` or a directory path: qdrant-client's embedded local mode;
- ``"edge:/some/dir"``: Qdrant Edge (``qdrant-edge-py``), the Rust engine in-process;
- ``"http://host:6333"`` / ``"https://..."``: a Qdrant server or cluster (``api_key``; and
  ``shard_number`` / ``replication_factor`` in :class:`QdrantSettings` on create).

User ids are strings; each maps to a stable point id, ``uuid5(MAXSIM_NAMESPACE, id)``.
The payload is ``{"doc_id", "text", "metadata", "part", "n_parts"}``; filters match
``metadata`` keys. Upserts are batched, retried with exponential back-off on transient
errors, and idempotent (the same document gives the same points).

Qdrant caps one multivector at 1,048,576 floats (8,192 tokens at dim 128). Longer documents
are split into parts that share ``doc_id`` (``long_docs="split"``, the default; a document's
score is its best part's) or mean-pooled down to the cap (``long_docs="pool"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from maxsim.integrations.qdrant.engines import Engine, Hit, Point, open_engine
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
from maxsim.types import SUPPORTED_DIMS, SearchHit, TokenVectors

FirstStage = Literal["muvera", "pooled", "none"]
_T = TypeVar("_T")


class EncoderModel(Protocol):
    """What the store needs from a maxsim model (``maxsim.load()`` returns one)."""

    name: str

    def encode_queries(self, texts: Sequence[str], dim: int = 128) -> list[np.ndarray]: ...

    def encode_documents(self, texts: Sequence[str], dim: int = 128) -> list[np.ndarray]: ...


class QdrantStore:
    """A maxsim collection in Qdrant: add, update, delete and two-stage search.

    Build one with :meth:`create` or :meth:`open`. Text methods (``add``, ``search``) need a
    ``model`` (``maxsim.load()``); the ``*_embeddings`` methods take token vectors directly.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        dim: int,
        settings: QdrantSettings,
        model_name: str | None,
        model: EncoderModel | None = None,
        batch_size: int = 64,
    ) -> None:
        self._engine = engine
        self.dim = dim
        self.settings = settings
        self.model_name = model_name
        self.model = model
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
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
        model: EncoderModel | str | None = None,
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
            raise ValueError(f"dim must be one of {SUPPORTED_DIMS}; got {dim!r}")
        settings = settings if settings is not None else QdrantSettings()
        if settings.muvera is not None:
            Muvera(dim, settings.muvera)  # validates the parameters against dim before touching Qdrant
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
        if engine.exists():
            if recreate:
                engine.drop()
            elif exist_ok:
                found = engine.manifest()
                if found != manifest:
                    engine.close()
                    raise ValueError(
                        f"collection {collection!r} exists with a different layout: {found!r}; "
                        "use recreate=True to replace it"
                    )
                return cls(engine, dim=dim, settings=settings, model_name=model_name, model=model_obj,
                           batch_size=batch_size)
            else:
                engine.close()
                raise ValueError(f"collection {collection!r} already exists; pass exist_ok=True or recreate=True")
        engine.create(dim, settings, manifest)
        return cls(engine, dim=dim, settings=settings, model_name=model_name, model=model_obj, batch_size=batch_size)

    @classmethod
    def open(
        cls,
        location: str | Path | Any,
        collection: str = "maxsim",
        *,
        model: EncoderModel | None = None,
        api_key: str | None = None,
        timeout: int | None = None,
        retry: RetryPolicy | None = None,
        batch_size: int = 64,
    ) -> QdrantStore:
        """Open a collection made by :meth:`create`; its dim and settings come from the collection."""
        engine = open_engine(location, collection, api_key, timeout, retry or RetryPolicy())
        if not engine.exists():
            engine.close()
            raise ValueError(f"no collection {collection!r} at {location!r}; create it first")
        manifest = engine.manifest()
        if not manifest or manifest.get("format") != MANIFEST_FORMAT:
            engine.close()
            raise ValueError(f"collection {collection!r} was not created by maxsim (no '{MANIFEST_KEY}' metadata)")
        if manifest.get("version") != MANIFEST_VERSION:
            engine.close()
            raise ValueError(f"collection {collection!r} has layout version {manifest.get('version')}; "
                             f"this maxsim reads version {MANIFEST_VERSION}")
        if model is not None and manifest.get("model") and model.name != manifest["model"]:
            engine.close()
            raise ValueError(
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

    def add(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Encode and upsert documents ``{"id", "text", "metadata"?}``; returns how many were added.

        Re-adding an id replaces the document (ids map to the same points).
        """
        model = self._need_model()
        n = 0
        for batch in _batches(documents, self.batch_size):
            ids, texts, metas = [], [], []
            for i, doc in enumerate(batch):
                if not isinstance(doc, Mapping):
                    raise TypeError(f"documents must be mappings with 'id' and 'text'; item {n + i} is {type(doc).__name__}")
                if "id" not in doc or "text" not in doc:
                    raise ValueError(f"document {n + i} needs 'id' and 'text' keys; got {sorted(doc)}")
                if not isinstance(doc["text"], str):
                    raise ValueError(f"document {doc['id']!r}: 'text' must be a string")
                ids.append(doc["id"])
                texts.append(doc["text"])
                metas.append(doc.get("metadata"))
            vectors = model.encode_documents(texts, dim=self.dim)
            n += self.add_embeddings(ids, vectors, texts=texts, metadata=metas)
        return n

    def add_embeddings(
        self,
        ids: Sequence[str],
        embeddings: Sequence[TokenVectors],
        *,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> int:
        """Upsert documents given their token vectors ([n_tokens, dim] each); returns the count.

        Long documents are split or pooled per ``settings.long_docs``; parts left over from a
        longer earlier version of a document are removed, so re-adding is idempotent.
        """
        n = len(ids)
        if len(embeddings) != n:
            raise ValueError(f"got {n} ids but {len(embeddings)} embeddings")
        if texts is not None and len(texts) != n:
            raise ValueError(f"got {n} ids but {len(texts)} texts")
        if metadata is not None and len(metadata) != n:
            raise ValueError(f"got {n} ids but {len(metadata)} metadata entries")
        _check_ids(ids)
        cap = self.settings.token_cap(self.dim)
        for start in range(0, n, self.batch_size):
            points: list[Point] = []
            parts_of: dict[str, int] = {}
            for i in range(start, min(n, start + self.batch_size)):
                doc_id = ids[i]
                vectors = self._check_vectors(embeddings[i], f"document {doc_id!r}")
                meta = metadata[i] if metadata is not None else None
                if meta is not None and not isinstance(meta, Mapping):
                    raise ValueError(f"document {doc_id!r}: metadata must be a mapping or None")
                if len(vectors) > cap and self.settings.long_docs == "pool":
                    pieces = [pool_tokens(vectors, cap)]
                else:
                    pieces = [vectors[j : j + cap] for j in range(0, len(vectors), cap)]
                parts_of[doc_id] = len(pieces)
                for part, piece in enumerate(pieces):
                    payload = {
                        "doc_id": doc_id,
                        "text": texts[i] if texts is not None else None,
                        "metadata": dict(meta) if meta is not None else None,
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
        return n

    def update(self, documents: Iterable[Mapping[str, Any]]) -> int:
        """Replace documents by id (text, metadata and vectors). Same as :meth:`add`."""
        return self.add(documents)

    def update_embeddings(self, ids: Sequence[str], embeddings: Sequence[TokenVectors], **kwargs: Any) -> int:
        """Replace documents by id given token vectors. Same as :meth:`add_embeddings`."""
        return self.add_embeddings(ids, embeddings, **kwargs)

    def delete(self, ids: Sequence[str]) -> None:
        """Delete documents (all their parts) by id; unknown ids are ignored."""
        if isinstance(ids, str):
            raise TypeError("delete takes a list of ids, not a single string")
        ids = list(ids)
        _check_ids(ids)
        for start in range(0, len(ids), self.batch_size):
            self._engine.delete(ids[start : start + self.batch_size])

    # ---- reads

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        first_stage: FirstStage = "muvera",
        prefetch_limit: int = 200,
        filter: Mapping[str, Any] | None = None,
        exact_first_stage: bool = False,
    ) -> list[SearchHit]:
        """Encode ``query`` and run :meth:`search_embeddings`."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a string; got {type(query).__name__}")
        return self.search_batch([query], k, first_stage=first_stage, prefetch_limit=prefetch_limit, filter=filter,
                                 exact_first_stage=exact_first_stage)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        first_stage: FirstStage = "muvera",
        prefetch_limit: int = 200,
        filter: Mapping[str, Any] | None = None,
        exact_first_stage: bool = False,
    ) -> list[list[SearchHit]]:
        """Encode ``queries`` and run :meth:`search_embeddings_batch` (one result list per query)."""
        if isinstance(queries, str) or not all(isinstance(q, str) for q in queries):
            raise TypeError("queries must be a list of strings")
        vectors = self._need_model().encode_queries(list(queries), dim=self.dim) if queries else []
        return self.search_embeddings_batch(vectors, k, first_stage=first_stage, prefetch_limit=prefetch_limit,
                                            filter=filter, exact_first_stage=exact_first_stage)

    def search_embeddings(
        self,
        query: TokenVectors,
        k: int = 10,
        *,
        first_stage: FirstStage = "muvera",
        prefetch_limit: int = 200,
        filter: Mapping[str, Any] | None = None,
        exact_first_stage: bool = False,
    ) -> list[SearchHit]:
        """Top ``k`` documents by MaxSim among the first stage's ``prefetch_limit`` candidates.

        One ``query_points`` request: ``prefetch`` by the ``first_stage`` vector (``"muvera"``
        or ``"pooled"``), then MaxSim over the multivectors. ``first_stage="none"`` scores every
        document by MaxSim (a full scan). ``filter`` restricts both stages (see
        :func:`parse_filter`); ``exact_first_stage`` scans the first stage instead of using HNSW.
        A document split into parts scores as its best part.
        """
        return self.search_embeddings_batch([query], k, first_stage=first_stage, prefetch_limit=prefetch_limit,
                                            filter=filter, exact_first_stage=exact_first_stage)[0]

    def search_embeddings_batch(
        self,
        queries: Sequence[TokenVectors],
        k: int = 10,
        *,
        first_stage: FirstStage = "muvera",
        prefetch_limit: int = 200,
        filter: Mapping[str, Any] | None = None,
        exact_first_stage: bool = False,
    ) -> list[list[SearchHit]]:
        """:meth:`search_embeddings` for several queries in one batched request."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        conditions = parse_filter(filter)
        if first_stage not in ("muvera", "pooled", "none"):
            raise ValueError(f"first_stage must be 'muvera', 'pooled' or 'none'; got {first_stage!r}")
        if first_stage == "muvera" and self._muvera is None:
            raise ValueError("this collection has no MUVERA vectors; use first_stage='pooled' or 'none'")
        if first_stage == "pooled" and not self.settings.pooled:
            raise ValueError("this collection has no pooled vectors; use first_stage='muvera' or 'none'")
        if first_stage != "none" and (not isinstance(prefetch_limit, int) or prefetch_limit < k):
            raise ValueError(f"prefetch_limit must be an integer >= k ({k}); got {prefetch_limit!r}")
        requests = []
        for i, query in enumerate(queries):
            q = self._check_vectors(query, "query" if len(queries) == 1 else f"query {i}")
            first: tuple[str, list[float]] | None = None
            if first_stage == "muvera":
                first = (MUVERA_VECTOR, self._muvera.encode_query(q).tolist())  # type: ignore[union-attr]
            elif first_stage == "pooled":
                first = (POOLED_VECTOR, pooled_vector(q).tolist())
            requests.append((q.tolist(), first))
        if not requests:
            return []
        results: list[list[SearchHit] | None] = [None] * len(requests)
        todo = list(range(len(requests)))
        limit = k
        while todo:
            batch = self._engine.query([requests[i] for i in todo], prefetch_limit, limit, conditions,
                                       exact_first_stage)
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

    def get(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored ``{"text", "metadata", "n_parts"}`` of each known id (unknown ids are absent)."""
        ids = list(ids)
        _check_ids(ids)
        out: dict[str, dict[str, Any]] = {}
        for payload in self._engine.retrieve([point_id(i) for i in ids]):
            out[payload["doc_id"]] = {
                "text": payload.get("text"),
                "metadata": payload.get("metadata"),
                "n_parts": payload.get("n_parts", 1),
            }
        return out

    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        """Number of documents (not parts), optionally those matching ``filter``."""
        return self._engine.count([Condition("part", "value", 0), *parse_filter(filter)])

    def optimize(self) -> None:
        """Build indexes now (Edge runs its optimizers in-process; servers do it on their own)."""
        self._engine.optimize()

    # ---- helpers

    def _need_model(self) -> EncoderModel:
        if self.model is None:
            raise ValueError("text methods need a model: pass model=maxsim.load(...) to create/open, "
                             "or use add_embeddings/search_embeddings")
        return self.model

    def _check_vectors(self, vectors: Any, what: str) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what}: token vectors must have shape [n_tokens, {self.dim}]; got {x.shape}")
        if len(x) == 0:
            raise ValueError(f"{what}: has no token vectors")
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: token vectors contain NaN or inf")
        return x

    def _vectors(self, tokens: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {MAXSIM_VECTOR: tokens.tolist()}
        if self._muvera is not None:
            out[MUVERA_VECTOR] = self._muvera.encode_document(tokens).tolist()
        if self.settings.pooled:
            out[POOLED_VECTOR] = pooled_vector(tokens).tolist()
        return out


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


def _check_ids(ids: Sequence[str]) -> None:
    seen = set()
    for i in ids:
        if not isinstance(i, str) or not i:
            raise ValueError(f"document ids must be non-empty strings; got {i!r}")
        if i in seen:
            raise ValueError(f"duplicate document id {i!r} in one call")
        seen.add(i)


def _batches(items: Iterable[_T], size: int) -> Iterable[list[_T]]:
    batch: list[_T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
