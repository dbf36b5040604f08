"""`ShardedIndex`: N :class:`~maxsim.index.Index` shards that share one codec, searched in parallel.

::

    my-index/
      shards.json      {"format": "maxsim-sharded-index", "n_shards", "dim", "nbits", "model", "router"}
      shard-00000/     an ordinary index directory (same centroid table and cutoffs in every shard)
      shard-00001/ ...

A document lives in shard ``blake2b(id) mod N``, so add, update, get and delete go to exactly one
shard and ids stay unique across shards. Every shard holds the same codec (trained once, on a
sample of the whole collection), so a document's stored vectors do not depend on its shard:
with ``SearchConfig(exact=True)`` the merged top-k equals the top-k of one index holding the same
vectors with the same codec. A search runs on every shard at once, on local threads (the
compiled kernels release the GIL) or on Ray actors (``searcher="ray"``, one per shard, placed
by Ray on the cluster's nodes), and the per-shard top-k lists are merged by score.

Shards never re-cluster on their own (that would give them different codecs); ``optimize()``
only compacts. Writes that span shards commit shard by shard: each shard's part is atomic and
durable, and ids are checked in every shard before anything is written.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from maxsim.compression.bits import check_nbits
from maxsim.compression.residual import check_refine_bits
from maxsim.errors import DuplicateIdError, InvalidArgumentError, UnknownIdError
from maxsim.index import storage
from maxsim.index.build import install_codec, train_shared_codec
from maxsim.index.catalog import Catalog
from maxsim.index.errors import IndexCorruptedError, IndexExistsError, IndexNotFoundError
from maxsim.index.index import Index
from maxsim.index.search import SearchConfig
from maxsim.store import Encoder, StoredDocument, TextMethods, check_ids, check_k, check_vectors, new_ids, query_list
from maxsim.types import SearchHit

SHARDS_JSON = "shards.json"
FORMAT_NAME = "maxsim-sharded-index"
ROUTER = "blake2b-64"


def is_sharded(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a sharded index."""
    return (Path(path) / SHARDS_JSON).is_file()


def shard_of(doc_id: str, n_shards: int) -> int:
    """The shard that holds ``doc_id``: a stable hash of the id, mod the shard count."""
    h = hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "little") % n_shards


def shard_dir(root: Path, i: int) -> Path:
    return root / f"shard-{i:05d}"


class ShardedIndex(TextMethods):
    """N index shards with one codec; implements :class:`maxsim.store.VectorStore`."""

    def __init__(
        self,
        root: Path,
        manifest: dict,
        shards: list[Index],
        *,
        model: Encoder | None = None,
        searcher: str = "threads",
        ray_address: str | None = None,
    ):
        self.path, self._manifest, self.shards, self.model = root, manifest, shards, model
        self.readonly = shards[0].readonly
        self._pool = ThreadPoolExecutor(max_workers=len(shards), thread_name_prefix="maxsim-shard")
        self._actors: list[Any] | None = None
        if searcher == "ray":
            self._actors = _start_actors(root, len(shards), ray_address)
        elif searcher != "threads":
            raise InvalidArgumentError(f"searcher must be 'threads' or 'ray', got {searcher!r}")

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        n_shards: int,
        model: Encoder | None = None,
        dim: int = 128,
        nbits: int = 2,
        *,
        refine_bits: int = 0,
        overwrite: bool = False,
    ) -> ShardedIndex:
        """Create ``n_shards`` empty shards at ``path``; the codec is trained by the first write
        (or installed by a build). ``refine_bits`` adds a second residual plane to every shard
        (as in :meth:`Index.create`)."""
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise InvalidArgumentError(f"n_shards must be a positive integer, got {n_shards!r}")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {dim!r}")
        check_nbits(nbits, dim)
        check_refine_bits(nbits, refine_bits)
        root = Path(path)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            if not overwrite:
                raise IndexExistsError(f"{root} already exists and is not empty (pass overwrite=True to replace it)")
            if not is_sharded(root):
                raise IndexExistsError(f"{root} is not a sharded maxsim index; refusing to overwrite it")
            storage.remove_dir(root)
        root.mkdir(parents=True, exist_ok=True)
        shards = [
            Index.create(
                shard_dir(root, i), model=model, dim=dim, nbits=nbits, refine_bits=refine_bits, auto_optimize=False
            )
            for i in range(n_shards)
        ]
        manifest = {
            "format": FORMAT_NAME,
            "format_version": 1,
            "n_shards": n_shards,
            "dim": dim,
            "nbits": nbits,
            "refine_bits": refine_bits,
            "model": getattr(model, "name", None) if model is not None else None,
            "router": ROUTER,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        storage.write_json_atomic(root / SHARDS_JSON, manifest)  # last: marks a complete sharded index
        return cls(root, manifest, shards, model=model)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        model: Encoder | None = None,
        *,
        readonly: bool = False,
        searcher: str = "threads",
        ray_address: str | None = None,
    ) -> ShardedIndex:
        """Open a sharded index; ``searcher="ray"`` searches on one Ray actor per shard
        (``ray_address``: an existing cluster, else the one ``ray.init()`` finds or starts)."""
        root = Path(path)
        if not is_sharded(root):
            raise IndexNotFoundError(f"no sharded maxsim index at {root} (no {SHARDS_JSON})")
        manifest = storage.read_json(root / SHARDS_JSON, "sharded index manifest")
        if manifest.get("format") != FORMAT_NAME or manifest.get("router") != ROUTER:
            raise IndexCorruptedError(f"{root / SHARDS_JSON} is not a sharded maxsim index manifest this version reads")
        n = manifest.get("n_shards")
        if not isinstance(n, int) or n < 1:
            raise IndexCorruptedError(f"{root / SHARDS_JSON} has no valid n_shards")
        shards: list[Index] = []
        try:
            for i in range(n):
                shards.append(Index.open(shard_dir(root, i), model=model, readonly=readonly, auto_optimize=False))
            return cls(root, manifest, shards, model=model, searcher=searcher, ray_address=ray_address)
        except BaseException:
            for s in shards:
                s.close()
            raise

    def close(self) -> None:
        for s in self.shards:
            s.close()
        self._pool.shutdown(wait=False)
        if self._actors:
            import ray

            for a in self._actors:
                ray.kill(a)
            self._actors = None

    def __enter__(self) -> ShardedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShardedIndex({str(self.path)!r}, shards={len(self.shards)}, docs={len(self)})"

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self._manifest["dim"])

    @property
    def nbits(self) -> int:
        return int(self._manifest["nbits"])

    @property
    def refine_bits(self) -> int:
        return int(self._manifest.get("refine_bits", 0))

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @property
    def model_name(self) -> str | None:
        return self._manifest.get("model") or self.shards[0].model_name

    def __len__(self) -> int:
        return self.count()

    def count(self, filter: Mapping[str, Any] | str | None = None) -> int:  # noqa: A002
        return sum(s.count(filter) for s in self.shards)

    # ---- routing ---------------------------------------------------------------------------

    def _route(self, ids: Sequence[str]) -> dict[int, list[int]]:
        """shard -> positions in ``ids`` of the ids it holds."""
        out: dict[int, list[int]] = {}
        for j, i in enumerate(ids):
            out.setdefault(shard_of(i, self.n_shards), []).append(j)
        return out

    def _present(self, shard: Index, ids: list[str]) -> dict[str, int]:
        with shard._catalog.transaction(immediate=False) as conn:
            return Catalog.docnos_of(conn, ids)

    def _ensure_codec(self, vectors: list[np.ndarray]) -> None:
        """The first write trains the shared codec on its own vectors and installs it in every shard."""
        if self.shards[0]._refresh().codec is not None:
            return
        sample = np.concatenate(vectors)
        codec = train_shared_codec(sample, len(sample), self.nbits, refine_bits=self.refine_bits)
        for s in self.shards:
            install_codec(s, codec, len(sample), None)

    def _encoded_with(self, model: Encoder) -> None:
        for s in self.shards:
            s._encoded_with(model)

    # ---- writes ----------------------------------------------------------------------------

    def add_embeddings(
        self,
        embeddings: Sequence[np.ndarray],
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        vectors = check_vectors(embeddings, self.dim, "embeddings")
        ids = new_ids(len(vectors)) if ids is None else check_ids(ids, len(vectors))
        texts_l, metas_l = _sides(texts, metadata, len(ids))
        routes = self._route(ids)
        for s, pos in routes.items():
            have = self._present(self.shards[s], [ids[j] for j in pos])
            if have:
                raise DuplicateIdError(
                    f"ids already in the index: {sorted(have)[:5]!r} (use upsert() or update() to replace them)"
                )
        self._ensure_codec(vectors)
        for s, pos in routes.items():
            self.shards[s].add_embeddings(
                [vectors[j] for j in pos], [ids[j] for j in pos], [texts_l[j] for j in pos], [metas_l[j] for j in pos]
            )
        return ids

    def update_embeddings(
        self,
        ids: Sequence[str],
        embeddings: Sequence[np.ndarray] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        ids = check_ids(ids)
        vectors = None if embeddings is None else check_vectors(embeddings, self.dim, "embeddings")
        if vectors is not None and len(vectors) != len(ids):
            raise InvalidArgumentError(f"update_embeddings: got {len(vectors)} arrays for {len(ids)} ids")
        texts_l, metas_l = _sides(texts, metadata, len(ids))
        routes = self._route(ids)
        self._check_known(ids, routes)
        for s, pos in routes.items():
            self.shards[s].update_embeddings(
                [ids[j] for j in pos],
                None if vectors is None else [vectors[j] for j in pos],
                None if texts is None else [texts_l[j] for j in pos],
                [metas_l[j] for j in pos],
            )

    def upsert_embeddings(
        self,
        embeddings: Sequence[np.ndarray],
        ids: Sequence[str],
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        vectors = check_vectors(embeddings, self.dim, "embeddings")
        ids = check_ids(ids, len(vectors))
        texts_l, metas_l = _sides(texts, metadata, len(ids))
        self._ensure_codec(vectors)
        for s, pos in self._route(ids).items():
            self.shards[s].upsert_embeddings(
                [vectors[j] for j in pos], [ids[j] for j in pos], [texts_l[j] for j in pos], [metas_l[j] for j in pos]
            )
        return ids

    def _check_known(self, ids: list[str], routes: dict[int, list[int]]) -> None:
        missing = []
        for s, pos in routes.items():
            want = [ids[j] for j in pos]
            have = self._present(self.shards[s], want)
            missing += [i for i in want if i not in have]
        if missing:
            raise UnknownIdError(f"ids not in the index: {missing[:5]!r}")

    def delete(self, ids: Sequence[str], missing_ok: bool = False) -> int:
        ids = check_ids(ids)
        routes = self._route(ids)
        if not missing_ok:
            self._check_known(ids, routes)
        return sum(self.shards[s].delete([ids[j] for j in pos], missing_ok=True) for s, pos in routes.items())

    def optimize(self) -> None:
        """Compact every shard (drop deleted documents, merge segments); never re-clusters."""
        for s in self.shards:
            with s._write_mutex:
                s._acquire_writer()
                snap = s._refresh()
                if snap.segments:
                    s._rewrite(snap, list(snap.segments))

    # ---- reads -----------------------------------------------------------------------------

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        ids = check_ids(ids)
        routes = self._route(ids)
        self._check_known(ids, routes)
        out: list[StoredDocument | None] = [None] * len(ids)
        for s, pos in routes.items():
            for j, doc in zip(pos, self.shards[s].get([ids[j] for j in pos]), strict=True):
                out[j] = doc
        return out  # type: ignore[return-value]

    def get_embeddings(self, ids: Sequence[str]) -> list[np.ndarray]:
        ids = check_ids(ids)
        out: list[np.ndarray | None] = [None] * len(ids)
        for s, pos in self._route(ids).items():
            for j, v in zip(pos, self.shards[s].get_embeddings([ids[j] for j in pos]), strict=True):
                out[j] = v
        return out  # type: ignore[return-value]

    def search_embeddings(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        k: int = 10,
        filter: Mapping[str, Any] | str | None = None,  # noqa: A002
        config: SearchConfig | None = None,
    ) -> list[list[SearchHit]]:
        """Search every shard at once and merge: one hit list per query, best first."""
        qs = check_vectors(query_list(queries), self.dim, "queries")
        k = check_k(k)
        if self._actors is not None:
            import ray

            parts = ray.get([a.search.remote(qs, k, filter, config) for a in self._actors])
        else:
            parts = list(
                self._pool.map(lambda s: s.search_embeddings(qs, k=k, filter=filter, config=config), self.shards)
            )
        return [merge_hits([p[qi] for p in parts], k) for qi in range(len(qs))]

    def info(self) -> dict:
        infos = [s.info() for s in self.shards]
        tokens = sum(i["tokens"] for i in infos)
        return {
            "path": str(self.path),
            "shards": len(infos),
            "dim": self.dim,
            "nbits": self.nbits,
            "refine_bits": self.refine_bits,
            "model": self.model_name,
            "documents": sum(i["documents"] for i in infos),
            "tokens": tokens,
            "segments": sum(i["segments"] for i in infos),
            "centroids": infos[0]["centroids"],
            "bytes_on_disk": sum(i["bytes_on_disk"] for i in infos),
            "documents_per_shard": [i["documents"] for i in infos],
        }

    def verify(self) -> None:
        for s in self.shards:
            s.verify()


def merge_hits(lists: list[list[SearchHit]], k: int) -> list[SearchHit]:
    """The best ``k`` of several best-first hit lists (ties by id, so the order is stable)."""
    return heapq.nsmallest(k, (h for hits in lists for h in hits), key=lambda h: (-h["score"], h["id"]))


def _sides(texts: Any, metadata: Any, n: int) -> tuple[list, list]:
    from maxsim.store import check_side

    return check_side(texts, n, "texts", str), check_side(metadata, n, "metadata", Mapping)


# ---- Ray search actors ------------------------------------------------------------------------


def _start_actors(root: Path, n_shards: int, ray_address: str | None) -> list[Any]:
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    actor: Any = ray.remote(num_cpus=0)(_ShardSearcher)
    actors = [actor.remote(str(shard_dir(root, i))) for i in range(n_shards)]
    ray.get([a.ready.remote() for a in actors])
    return actors


class _ShardSearcher:
    """Holds one shard open read-only on a Ray worker (the shard path must be readable there)."""

    def __init__(self, path: str):
        self.index = Index.open(path, readonly=True, auto_optimize=False)

    def ready(self) -> bool:
        return True

    def search(self, qs: list[np.ndarray], k: int, flt: Any, config: SearchConfig | None) -> list[list[SearchHit]]:
        return self.index.search_embeddings(qs, k=k, filter=flt, config=config)
