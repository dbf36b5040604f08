"""The Qdrant Edge engine (qdrant-edge-py): one in-process shard per collection."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from maxsim.errors import InvalidArgumentError
from maxsim.integrations.qdrant.engines.base import Hit, Point, import_edge
from maxsim.integrations.qdrant.filters import Condition, delete_conditions
from maxsim.integrations.qdrant.layout import MANIFEST_KEY, MAXSIM_VECTOR, MUVERA_VECTOR, POOLED_VECTOR
from maxsim.integrations.qdrant.settings import QdrantSettings


class EdgeEngine:
    """Qdrant Edge: one in-process shard under ``<root>/<collection>/shard``, manifest beside it."""

    kind = "edge"

    def __init__(self, root: Path, collection: str) -> None:
        self.qe = import_edge()
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

    def upsert(self, points: list[Point]) -> None:
        qe = self.qe
        pts = [qe.Point(id=uuid.UUID(p.id), vector=p.vectors, payload=p.payload) for p in points]
        self.shard.update(qe.UpdateOperation.upsert_points(pts))

    def delete(self, doc_ids: list[str], min_part: Mapping[str, int] | None = None) -> None:
        conds = [self._condition(c) for c in delete_conditions(doc_ids, min_part)]
        self.shard.update(self.qe.UpdateOperation.delete_points_by_filter(self.qe.Filter(should=conds)))

    def set_metadata(self, doc_ids: list[str], metadata: list[dict | None]) -> None:
        """Replace the metadata of every part of each document."""
        qe = self.qe
        for d, meta in zip(doc_ids, metadata, strict=True):
            flt = qe.Filter(must=[qe.FieldCondition(key="doc_id", match=qe.MatchValue(d))])
            self.shard.update(qe.UpdateOperation.set_payload_by_filter(flt, {"metadata": meta}))

    def _condition(self, c: Condition) -> Any:
        qe = self.qe
        if c.kind == "value":
            if isinstance(c.value, bool):
                # qdrant-edge-py 0.9 turns MatchValue(True) into the integer 1, which never matches a
                # JSON boolean: refuse rather than silently return nothing
                raise InvalidArgumentError(
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
        raise AssertionError(f"unknown condition kind {c.kind!r}")

    def _filter(self, conditions: list[Condition]) -> Any:
        if not conditions:
            return None
        return self.qe.Filter(must=[self._condition(c) for c in conditions])

    def query(self, requests, prefetch_limit, limit, conditions, exact) -> list[list[Hit]]:
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
        return [[Hit(float(p.score), dict(p.payload or {})) for p in points] for points in results]

    def retrieve(self, ids: list[str]) -> list[dict]:
        recs = self.shard.retrieve([uuid.UUID(i) for i in ids], with_payload=True, with_vector=False)
        return [dict(r.payload or {}) for r in recs]

    def count(self, conditions: list[Condition]) -> int:
        return int(self.shard.count(self.qe.CountRequest(exact=True, filter=self._filter(conditions))))

    def optimize(self) -> None:
        self.shard.optimize()

    def close(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None
