"""The qdrant-client engine: embedded local mode (memory or a directory), or a server/cluster by URL."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from maxsim.integrations.qdrant.engines.base import Hit, Point, import_client
from maxsim.integrations.qdrant.errors import QdrantServerError
from maxsim.integrations.qdrant.filters import Condition, delete_conditions
from maxsim.integrations.qdrant.layout import MANIFEST_KEY, MAXSIM_VECTOR, MUVERA_VECTOR, POOLED_VECTOR
from maxsim.integrations.qdrant.retry import RetryPolicy, with_retry
from maxsim.integrations.qdrant.settings import QdrantSettings

_T = TypeVar("_T")


class ClientEngine:
    """qdrant-client: embedded local mode, or a server/cluster by URL."""

    def __init__(self, client: Any, collection: str, retry: RetryPolicy, remote: bool, where: str = "") -> None:
        self.client = client
        self.where = where
        self.collection = collection
        self.retry = retry
        self.kind = "server" if remote else "local"
        self.models = import_client().models

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

    def _server_error(self, exc: Exception) -> QdrantServerError | None:
        """A one-line error for an unreachable server or a refused request (None for other errors)."""
        from qdrant_client.http.exceptions import UnexpectedResponse

        where = f"the Qdrant server at {self.where}" if self.where else "the Qdrant server"
        if isinstance(exc, UnexpectedResponse) and exc.status_code in (401, 403):
            return QdrantServerError(
                f"{where} refused the request ({exc.status_code} {exc.reason_phrase}): check the API key"
            )
        if self.kind == "server" and self._is_transient(exc):
            reason = str(exc).strip() or type(exc).__name__
            return QdrantServerError(f"cannot reach {where}: {reason}")
        return None

    def _read(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except Exception as exc:
            error = self._server_error(exc)
            if error is None:
                raise
            raise error from exc

    def _write(self, fn: Callable[[], _T]) -> _T:
        return self._read(lambda: with_retry(fn, self.retry, self._is_transient))

    def exists(self) -> bool:
        return bool(self._read(lambda: self.client.collection_exists(self.collection)))

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
        info = self._read(lambda: self.client.get_collection(self.collection))
        meta = getattr(info.config, "metadata", None) or {}
        return meta.get(MANIFEST_KEY)

    def upsert(self, points: list[Point]) -> None:
        structs = [self.models.PointStruct(id=p.id, vector=p.vectors, payload=p.payload) for p in points]
        self._write(lambda: self.client.upsert(self.collection, points=structs, wait=True))

    def delete(self, doc_ids: list[str], min_part: Mapping[str, int] | None = None) -> None:
        flt = self._filter(delete_conditions(doc_ids, min_part), combine_should=True)
        selector = self.models.FilterSelector(filter=flt)
        self._write(lambda: self.client.delete(self.collection, points_selector=selector, wait=True))

    def set_metadata(self, doc_ids: list[str], metadata: list[dict | None]) -> None:
        """Replace the metadata of every part of each document, in one batched request."""
        m = self.models
        ops = [
            m.SetPayloadOperation(
                set_payload=m.SetPayload(
                    payload={"metadata": meta},
                    filter=m.Filter(must=[m.FieldCondition(key="doc_id", match=m.MatchValue(value=d))]),
                )
            )
            for d, meta in zip(doc_ids, metadata, strict=True)
        ]
        self._write(lambda: self.client.batch_update_points(self.collection, update_operations=ops, wait=True))

    def _condition(self, c: Condition) -> Any:
        m = self.models
        if c.kind == "value":
            return m.FieldCondition(key=c.key, match=m.MatchValue(value=c.value))
        if c.kind == "any":
            return m.FieldCondition(key=c.key, match=m.MatchAny(any=c.value))
        if c.kind == "range":
            return m.FieldCondition(key=c.key, range=m.Range(**c.value))
        if c.kind == "and":
            return m.Filter(must=[self._condition(x) for x in c.value])
        raise AssertionError(f"unknown condition kind {c.kind!r}")

    def _filter(self, conditions: list[Condition], combine_should: bool = False) -> Any:
        if not conditions:
            return None
        converted = [self._condition(c) for c in conditions]
        return self.models.Filter(should=converted) if combine_should else self.models.Filter(must=converted)

    def query(self, requests, prefetch_limit, limit, conditions, exact) -> list[list[Hit]]:
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
            res = self._read(
                lambda: self.client.query_points(
                    self.collection,
                    query=multi,
                    using=MAXSIM_VECTOR,
                    prefetch=prefetch(first),
                    query_filter=flt,
                    limit=limit,
                    with_payload=True,
                )
            )
            responses = [res]
        else:
            batch = [
                m.QueryRequest(
                    query=multi,
                    using=MAXSIM_VECTOR,
                    prefetch=prefetch(first),
                    filter=flt,
                    limit=limit,
                    with_payload=True,
                )
                for multi, first in requests
            ]
            responses = self._read(lambda: self.client.query_batch_points(self.collection, requests=batch))
        return [[Hit(float(p.score), dict(p.payload or {})) for p in r.points] for r in responses]

    def retrieve(self, ids: list[str]) -> list[dict]:
        recs = self._read(lambda: self.client.retrieve(self.collection, ids=ids, with_payload=True, with_vectors=False))
        return [dict(r.payload or {}) for r in recs]

    def count(self, conditions: list[Condition]) -> int:
        flt = self._filter(conditions)
        return int(self._read(lambda: self.client.count(self.collection, count_filter=flt, exact=True)).count)

    def optimize(self) -> None:
        return None

    def close(self) -> None:
        self.client.close()
