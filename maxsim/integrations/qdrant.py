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

import json
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from maxsim.postprocess.muvera import Muvera, MuveraConfig, pooled_vector
from maxsim.types import SUPPORTED_DIMS, SearchHit, TokenVectors

#: Namespace of the uuid5 point ids: ``uuid5(MAXSIM_NAMESPACE, doc_id)``. Never change it.
MAXSIM_NAMESPACE = uuid.UUID("6f1c3a52-8a4e-5b1f-9d7e-2c0b7a4d9e31")

#: Qdrant's limit on the number of floats in one multivector.
MULTIVECTOR_MAX_FLOATS = 1_048_576

MAXSIM_VECTOR = "maxsim"
MUVERA_VECTOR = "muvera"
POOLED_VECTOR = "pooled"

MANIFEST_KEY = "maxsim"
MANIFEST_FORMAT = "maxsim-qdrant"
MANIFEST_VERSION = 1

FirstStage = Literal["muvera", "pooled", "none"]
Storage = Literal["float32", "float16", "uint8"]
LongDocs = Literal["split", "pool"]

_INSTALL_HINT = "pip install 'maxsim[qdrant]'"
_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# settings


@dataclass(frozen=True)
class QdrantSettings:
    """How a collection is laid out. Fixed at create time and stored with the collection.

    Parameters
    ----------
    storage:
        Storage of the ``maxsim`` multivectors: ``"float32"``; ``"float16"`` (half the size);
        or ``"uint8"``: 8-bit scalar-quantised codes kept in RAM with the float32 originals on
        disk (Qdrant's raw ``uint8`` datatype also quantises queries, which cannot hold signed
        ColBERT vectors, so scalar quantisation is the 8-bit option that keeps MaxSim right).
    muvera:
        MUVERA parameters for the ``muvera`` first-stage vector, or None to store no FDE.
    pooled:
        Also store the pooled dense vector (``dim`` floats) as an alternative first stage.
    muvera_hnsw_m:
        HNSW ``m`` on the MUVERA vector (0 = no graph: exact scan of the first stage).
    long_docs:
        ``"split"`` documents over the multivector cap into parts sharing ``doc_id``, or
        ``"pool"`` their tokens (mean of consecutive runs) down to the cap.
    max_tokens:
        Token cap per stored multivector; None = ``1,048,576 // dim`` (Qdrant's limit).
    shard_number, replication_factor:
        Passed to ``create_collection`` on a server or cluster; ignored by embedded engines.
    """

    storage: Storage = "float32"
    muvera: MuveraConfig | None = field(default_factory=MuveraConfig)
    pooled: bool = True
    muvera_hnsw_m: int = 16
    long_docs: LongDocs = "split"
    max_tokens: int | None = None
    shard_number: int | None = None
    replication_factor: int | None = None

    def __post_init__(self) -> None:
        if self.storage not in ("float32", "float16", "uint8"):
            raise ValueError(f"storage must be 'float32', 'float16' or 'uint8'; got {self.storage!r}")
        if self.long_docs not in ("split", "pool"):
            raise ValueError(f"long_docs must be 'split' or 'pool'; got {self.long_docs!r}")
        if self.muvera is None and not self.pooled:
            raise ValueError("a collection needs a first stage: set muvera, pooled=True, or both")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise ValueError(f"max_tokens must be None or a positive integer; got {self.max_tokens!r}")
        if not isinstance(self.muvera_hnsw_m, int) or self.muvera_hnsw_m < 0:
            raise ValueError(f"muvera_hnsw_m must be a non-negative integer; got {self.muvera_hnsw_m!r}")
        for name in ("shard_number", "replication_factor"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or a positive integer; got {value!r}")

    def token_cap(self, dim: int) -> int:
        """Tokens per stored multivector at ``dim``: ``max_tokens`` bounded by Qdrant's limit."""
        cap = MULTIVECTOR_MAX_FLOATS // dim
        return min(cap, self.max_tokens) if self.max_tokens is not None else cap

    def to_dict(self) -> dict:
        data = asdict(self)
        data["muvera"] = self.muvera.to_dict() if self.muvera is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QdrantSettings:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown QdrantSettings keys: {sorted(unknown)}")
        values = dict(data)
        if values.get("muvera") is not None:
            values["muvera"] = MuveraConfig.from_dict(values["muvera"])
        return cls(**values)


class EncoderModel(Protocol):
    """What the store needs from a maxsim model (``maxsim.load()`` returns one)."""

    name: str

    def encode_queries(self, texts: Sequence[str], dim: int = 128) -> list[np.ndarray]: ...

    def encode_documents(self, texts: Sequence[str], dim: int = 128) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of writes on transient errors: ``attempts`` tries, sleeping
    ``min(max_delay, base_delay * 2**i)`` seconds after failure ``i``."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1; got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must be non-negative")


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


def point_id(doc_id: str, part: int = 0) -> str:
    """Stable Qdrant point id of part ``part`` of the document ``doc_id`` (a UUID string).

    >>> point_id("doc-1") == point_id("doc-1")
    True
    >>> point_id("doc-1") != point_id("doc-1", part=1)
    True
    """
    name = doc_id if part == 0 else f"{doc_id}\x00part:{part}"
    return str(uuid.uuid5(MAXSIM_NAMESPACE, name))


def pool_tokens(vectors: TokenVectors, max_tokens: int) -> np.ndarray:
    """Mean-pool runs of consecutive tokens so that at most ``max_tokens`` remain; rows re-normalised.

    >>> pool_tokens(np.eye(4, dtype=np.float32), 2).shape
    (2, 4)
    """
    n = len(vectors)
    if n <= max_tokens:
        return vectors
    edges = np.linspace(0, n, max_tokens + 1).round().astype(np.int64)
    pooled = np.add.reduceat(vectors, edges[:-1], axis=0) / np.diff(edges)[:, None]
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.where(norms > 0, norms, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# filters: a small engine-neutral form, translated per engine


@dataclass(frozen=True)
class _Condition:
    key: str  # full payload path, e.g. "metadata.lang"
    kind: Literal["value", "any", "range", "and"]
    value: Any


def parse_filter(spec: Mapping[str, Any] | None) -> list[_Condition]:
    """Turn a metadata filter into conditions that must all hold.

    ``{"lang": "en"}`` matches a value (str, int or bool); ``{"lang": ["en", "fr"]}`` any of
    them; ``{"year": {"gte": 2000, "lt": 2010}}`` a range (keys gt, gte, lt, lte). Keys are
    metadata fields (dots reach nested fields).
    """
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise TypeError(f"filter must be a mapping of metadata key -> condition; got {type(spec).__name__}")
    out = []
    for key, cond in spec.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter keys must be non-empty strings; got {key!r}")
        path = f"metadata.{key}"
        if isinstance(cond, Mapping):
            bad = set(cond) - {"gt", "gte", "lt", "lte"}
            if bad or not cond:
                raise ValueError(f"filter range for {key!r} takes keys gt, gte, lt, lte; got {sorted(cond)}")
            for bound, v in cond.items():
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ValueError(f"filter range bound {key}.{bound} must be a number; got {v!r}")
            out.append(_Condition(path, "range", {k: float(v) for k, v in cond.items()}))
        elif isinstance(cond, list | tuple):
            if not cond or not (all(isinstance(v, str) for v in cond) or all(_is_int(v) for v in cond)):
                raise ValueError(f"filter list for {key!r} must be a non-empty list of all strings or all ints")
            out.append(_Condition(path, "any", list(cond)))
        elif isinstance(cond, str | bool) or _is_int(cond):
            out.append(_Condition(path, "value", cond))
        else:
            raise ValueError(
                f"filter value for {key!r} must be a str, int, bool, list or range mapping; got {cond!r} "
                "(match floats with a range)"
            )
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# engines


@dataclass
class _Point:
    id: str
    vectors: dict[str, Any]
    payload: dict[str, Any]


@dataclass
class _Hit:
    score: float
    payload: dict[str, Any]


class _Engine(Protocol):
    kind: str

    def exists(self) -> bool: ...
    def create(self, dim: int, settings: QdrantSettings, manifest: dict) -> None: ...
    def drop(self) -> None: ...
    def manifest(self) -> dict | None: ...
    def upsert(self, points: list[_Point]) -> None: ...
    def delete(self, doc_ids: list[str], min_part: Mapping[str, int] | None = None) -> None: ...
    def query(
        self,
        requests: list[tuple[list[list[float]], tuple[str, list[float]] | None]],
        prefetch_limit: int,
        limit: int,
        conditions: list[_Condition],
        exact: bool,
    ) -> list[list[_Hit]]: ...
    def retrieve(self, ids: list[str]) -> list[dict]: ...
    def count(self, conditions: list[_Condition]) -> int: ...
    def optimize(self) -> None: ...
    def close(self) -> None: ...


def _import_client() -> Any:
    try:
        import qdrant_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the Qdrant integration needs qdrant-client: {_INSTALL_HINT}") from exc
    return qdrant_client


def _import_edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"Qdrant Edge locations ('edge:...') need qdrant-edge-py: {_INSTALL_HINT}") from exc
    return qdrant_edge


class _ClientEngine:
    """qdrant-client: embedded local mode, or a server/cluster by URL."""

    def __init__(self, client: Any, collection: str, retry: RetryPolicy, remote: bool) -> None:
        self.client = client
        self.collection = collection
        self.retry = retry
        self.kind = "server" if remote else "local"
        self.models = _import_client().models

    # transient: connection trouble, timeouts, 408/429/5xx, gRPC UNAVAILABLE and friends
    def _is_transient(self, exc: BaseException) -> bool:
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(exc, ResponseHandlingException | ConnectionError | TimeoutError):
            return True
        if isinstance(exc, UnexpectedResponse):
            return exc.status_code in (408, 429, 500, 502, 503, 504)
        code = getattr(exc, "code", None)
        if callable(code):  # grpc.RpcError
            try:
                name = getattr(code(), "name", "")
            except Exception:
                return False
            return name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED")
        return False

    def _write(self, fn: Callable[[], _T]) -> _T:
        return with_retry(fn, self.retry, self._is_transient)

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def create(self, dim: int, settings: QdrantSettings, manifest: dict) -> None:
        m = self.models
        multi = m.VectorParams(
            size=dim,
            distance=m.Distance.DOT,
            multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
            hnsw_config=m.HnswConfigDiff(m=0),
            datatype=m.Datatype.FLOAT16 if settings.storage == "float16" else None,
            on_disk=True if settings.storage == "uint8" else None,
            quantization_config=(
                m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True))
                if settings.storage == "uint8"
                else None
            ),
        )
        vectors = {MAXSIM_VECTOR: multi}
        if settings.muvera is not None:
            vectors[MUVERA_VECTOR] = m.VectorParams(
                size=settings.muvera.output_dim,
                distance=m.Distance.DOT,
                hnsw_config=m.HnswConfigDiff(m=settings.muvera_hnsw_m),
            )
        if settings.pooled:
            vectors[POOLED_VECTOR] = m.VectorParams(size=dim, distance=m.Distance.DOT)
        self._write(
            lambda: self.client.create_collection(
                self.collection,
                vectors_config=vectors,
                shard_number=settings.shard_number,
                replication_factor=settings.replication_factor,
                metadata={MANIFEST_KEY: manifest},
            )
        )
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing there
            warnings.simplefilter("ignore")
            self._write(
                lambda: self.client.create_payload_index(self.collection, "doc_id", m.PayloadSchemaType.KEYWORD)
            )
            self._write(lambda: self.client.create_payload_index(self.collection, "part", m.PayloadSchemaType.INTEGER))

    def drop(self) -> None:
        self._write(lambda: self.client.delete_collection(self.collection))

    def manifest(self) -> dict | None:
        info = self.client.get_collection(self.collection)
        meta = getattr(info.config, "metadata", None) or {}
        return meta.get(MANIFEST_KEY)

    def upsert(self, points: list[_Point]) -> None:
        structs = [self.models.PointStruct(id=p.id, vector=p.vectors, payload=p.payload) for p in points]
        self._write(lambda: self.client.upsert(self.collection, points=structs, wait=True))

    def delete(self, doc_ids: list[str], min_part: Mapping[str, int] | None = None) -> None:
        flt = self._filter(_delete_conditions(doc_ids, min_part), combine_should=True)
        selector = self.models.FilterSelector(filter=flt)
        self._write(lambda: self.client.delete(self.collection, points_selector=selector, wait=True))

    def _condition(self, c: _Condition) -> Any:
        m = self.models
        if c.kind == "value":
            return m.FieldCondition(key=c.key, match=m.MatchValue(value=c.value))
        if c.kind == "any":
            return m.FieldCondition(key=c.key, match=m.MatchAny(any=c.value))
        if c.kind == "range":
            return m.FieldCondition(key=c.key, range=m.Range(**c.value))
        if c.kind == "and":
            return m.Filter(must=[self._condition(x) for x in c.value])
        raise ValueError(f"unknown condition kind {c.kind!r}")

    def _filter(self, conditions: list[_Condition], combine_should: bool = False) -> Any:
        if not conditions:
            return None
        converted = [self._condition(c) for c in conditions]
        return self.models.Filter(should=converted) if combine_should else self.models.Filter(must=converted)

    def query(self, requests, prefetch_limit, limit, conditions, exact) -> list[list[_Hit]]:
        """One ``query_points`` request per query (``query_batch_points`` for several)."""
        m = self.models
        flt = self._filter(conditions)
        params = m.SearchParams(exact=True) if exact else None

        def prefetch(first: tuple[str, list[float]] | None) -> Any:
            if first is None:
                return None
            return m.Prefetch(query=first[1], using=first[0], limit=prefetch_limit, filter=flt, params=params)

        if len(requests) == 1:
            multi, first = requests[0]
            res = self.client.query_points(
                self.collection,
                query=multi,
                using=MAXSIM_VECTOR,
                prefetch=prefetch(first),
                query_filter=flt,
                limit=limit,
                with_payload=True,
            )
            responses = [res]
        else:
            batch = [
                m.QueryRequest(query=multi, using=MAXSIM_VECTOR, prefetch=prefetch(first), filter=flt, limit=limit,
                               with_payload=True)
                for multi, first in requests
            ]
            responses = self.client.query_batch_points(self.collection, requests=batch)
        return [[_Hit(float(p.score), dict(p.payload or {})) for p in r.points] for r in responses]

    def retrieve(self, ids: list[str]) -> list[dict]:
        recs = self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=False)
        return [dict(r.payload or {}) for r in recs]

    def count(self, conditions: list[_Condition]) -> int:
        return int(self.client.count(self.collection, count_filter=self._filter(conditions), exact=True).count)

    def optimize(self) -> None:
        return None

    def close(self) -> None:
        self.client.close()


class _EdgeEngine:
    """Qdrant Edge: one in-process shard under ``<root>/<collection>/shard``, manifest beside it."""

    kind = "edge"

    def __init__(self, root: Path, collection: str) -> None:
        self.qe = _import_edge()
        self.dir = Path(root) / collection
        self.shard_dir = self.dir / "shard"
        self.manifest_path = self.dir / "maxsim-qdrant.json"
        self.shard: Any = None
        if self.exists():
            self.shard = self.qe.EdgeShard.load(str(self.shard_dir))

    def exists(self) -> bool:
        return self.manifest_path.exists() and self.shard_dir.exists()

    def create(self, dim: int, settings: QdrantSettings, manifest: dict) -> None:
        qe = self.qe
        dtype = qe.VectorStorageDatatype.Float16 if settings.storage == "float16" else None
        multi = qe.EdgeVectorParams(
            size=dim,
            distance=qe.Distance.Dot,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
            datatype=dtype,
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
            memory=qe.Memory.Cold if settings.storage == "uint8" else None,
            quantization_config=(
                qe.ScalarQuantizationConfig(qe.ScalarType.Int8, memory=qe.Memory.Cached)
                if settings.storage == "uint8"
                else None
            ),
        )
        vectors = {MAXSIM_VECTOR: multi}
        if settings.muvera is not None:
            vectors[MUVERA_VECTOR] = qe.EdgeVectorParams(
                size=settings.muvera.output_dim,
                distance=qe.Distance.Dot,
                hnsw_config=qe.HnswIndexConfig(m=settings.muvera_hnsw_m, ef_construct=100, full_scan_threshold=10_000),
            )
        if settings.pooled:
            vectors[POOLED_VECTOR] = qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shard = qe.EdgeShard.create(str(self.shard_dir), qe.EdgeConfig(vectors=vectors))
        self.shard.update(qe.UpdateOperation.create_field_index("doc_id", qe.PayloadSchemaType.Keyword))
        self.shard.update(qe.UpdateOperation.create_field_index("part", qe.PayloadSchemaType.Integer))
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({MANIFEST_KEY: manifest}, indent=2))
        tmp.replace(self.manifest_path)

    def drop(self) -> None:
        import shutil

        if self.shard is not None:
            self.shard.close()
            self.shard = None
        if self.manifest_path.exists():
            self.manifest_path.unlink()
        if self.shard_dir.exists():
            shutil.rmtree(self.shard_dir)

    def manifest(self) -> dict | None:
        if not self.manifest_path.exists():
            return None
        return json.loads(self.manifest_path.read_text()).get(MANIFEST_KEY)

    def upsert(self, points: list[_Point]) -> None:
        qe = self.qe
        pts = [qe.Point(id=uuid.UUID(p.id), vector=p.vectors, payload=p.payload) for p in points]
        self.shard.update(qe.UpdateOperation.upsert_points(pts))

    def delete(self, doc_ids: list[str], min_part: Mapping[str, int] | None = None) -> None:
        conds = [self._condition(c) for c in _delete_conditions(doc_ids, min_part)]
        self.shard.update(self.qe.UpdateOperation.delete_points_by_filter(self.qe.Filter(should=conds)))

    def _condition(self, c: _Condition) -> Any:
        qe = self.qe
        if c.kind == "value":
            if isinstance(c.value, bool):
                # qdrant-edge-py 0.9 turns MatchValue(True) into the integer 1, which never matches a
                # JSON boolean: refuse rather than silently return nothing
                raise ValueError(
                    f"boolean filters ({c.key.removeprefix('metadata.')}={c.value}) are not supported on Qdrant Edge "
                    "(qdrant-edge-py converts them to integers); store the flag as a string or int instead"
                )
            return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.value))
        if c.kind == "any":
            return qe.FieldCondition(key=c.key, match=qe.MatchAny(c.value))
        if c.kind == "range":
            return qe.FieldCondition(key=c.key, range=qe.RangeFloat(**c.value))
        if c.kind == "and":
            return qe.Filter(must=[self._condition(x) for x in c.value])
        raise ValueError(f"unknown condition kind {c.kind!r}")

    def _filter(self, conditions: list[_Condition]) -> Any:
        if not conditions:
            return None
        return self.qe.Filter(must=[self._condition(c) for c in conditions])

    def query(self, requests, prefetch_limit, limit, conditions, exact) -> list[list[_Hit]]:
        """One ``EdgeShard.query`` per query (``query_batch`` for several)."""
        qe = self.qe
        flt = self._filter(conditions)
        params = qe.SearchParams(exact=True) if exact else None

        def request(multi: list[list[float]], first: tuple[str, list[float]] | None) -> Any:
            prefetches = None
            if first is not None:
                prefetches = [
                    qe.Prefetch(
                        limit=prefetch_limit,
                        query=qe.Query.Nearest(first[1], using=first[0]),
                        filter=flt,
                        params=params,
                    )
                ]
            return qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(multi, using=MAXSIM_VECTOR),
                prefetches=prefetches,
                filter=flt,
                with_payload=True,
            )

        reqs = [request(multi, first) for multi, first in requests]
        if len(reqs) == 1:
            results = [self.shard.query(reqs[0])]
        else:
            results = self.shard.query_batch(qe.QueryBatchRequest(reqs))
        return [[_Hit(float(p.score), dict(p.payload or {})) for p in points] for points in results]

    def retrieve(self, ids: list[str]) -> list[dict]:
        recs = self.shard.retrieve([uuid.UUID(i) for i in ids], with_payload=True, with_vector=False)
        return [dict(r.payload or {}) for r in recs]

    def count(self, conditions: list[_Condition]) -> int:
        return int(self.shard.count(self.qe.CountRequest(exact=True, filter=self._filter(conditions))))

    def optimize(self) -> None:
        self.shard.optimize()

    def close(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None


def _delete_conditions(doc_ids: list[str], min_part: Mapping[str, int] | None) -> list[_Condition]:
    """Conditions, any of which selects points to delete: every part of ``doc_ids``, or with
    ``min_part``, only the parts numbered ``>= min_part[doc_id]`` (stale parts after a re-add)."""
    if min_part is None:
        return [_Condition("doc_id", "any", list(doc_ids))]
    return [
        _Condition(
            "and",
            "and",
            [_Condition("doc_id", "value", d), _Condition("part", "range", {"gte": float(min_part[d])})],
        )
        for d in doc_ids
    ]


def _open_engine(
    location: str | Path | Any, collection: str, api_key: str | None, timeout: int | None, retry: RetryPolicy
) -> _Engine:
    qdrant_client = _import_client() if not (isinstance(location, str) and location.startswith("edge:")) else None
    if qdrant_client is not None and isinstance(location, qdrant_client.QdrantClient):
        opts = location.init_options
        remote = (opts.get("url") is not None or opts.get("host") is not None
                  or str(opts.get("location") or "").startswith(("http://", "https://")))
        return _ClientEngine(location, collection, retry, remote=remote)
    if isinstance(location, Path):
        location = str(location)
    if not isinstance(location, str) or not location:
        raise ValueError(
            "location must be ':memory:', a directory path, 'edge:<dir>', an http(s):// URL or a QdrantClient; "
            f"got {location!r}"
        )
    if location.startswith("edge:"):
        path = location[len("edge:") :]
        if not path:
            raise ValueError("an Edge location needs a directory: 'edge:/path/to/dir'")
        return _EdgeEngine(Path(path), collection)
    if location.startswith(("http://", "https://")):
        client = qdrant_client.QdrantClient(url=location, api_key=api_key, timeout=timeout)
        return _ClientEngine(client, collection, retry, remote=True)
    if api_key is not None:
        raise ValueError(f"api_key is only for a server URL (http:// or https://); location is {location!r}")
    if location == ":memory:":
        return _ClientEngine(qdrant_client.QdrantClient(location=":memory:"), collection, retry, remote=False)
    return _ClientEngine(qdrant_client.QdrantClient(path=location), collection, retry, remote=False)


# --------------------------------------------------------------------------------------------
# the store


class QdrantStore:
    """A maxsim collection in Qdrant: add, update, delete and two-stage search.

    Build one with :meth:`create` or :meth:`open`. Text methods (``add``, ``search``) need a
    ``model`` (``maxsim.load()``); the ``*_embeddings`` methods take token vectors directly.
    """

    def __init__(
        self,
        engine: _Engine,
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
        engine = _open_engine(location, collection, api_key, timeout, retry or RetryPolicy())
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
        engine = _open_engine(location, collection, api_key, timeout, retry or RetryPolicy())
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
            points: list[_Point] = []
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
                    points.append(_Point(point_id(doc_id, part), self._vectors(piece), payload))
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
        return self._engine.count([_Condition("part", "value", 0), *parse_filter(filter)])

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


def _best_per_document(hits: list[_Hit]) -> list[SearchHit]:
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


def max_tokens_for(dim: int) -> int:
    """Tokens that fit one Qdrant multivector at ``dim`` (8,192 at 128)."""
    return MULTIVECTOR_MAX_FLOATS // dim


__all__ = [
    "MAXSIM_NAMESPACE",
    "MULTIVECTOR_MAX_FLOATS",
    "EncoderModel",
    "QdrantSettings",
    "QdrantStore",
    "RetryPolicy",
    "max_tokens_for",
    "parse_filter",
    "point_id",
    "pool_tokens",
    "with_retry",
]
