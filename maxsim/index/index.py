"""`maxsim.Index`: a compressed, updatable, crash-safe late-interaction index.

Write path: vectors are encoded against the current codec into a new immutable segment
directory (fsynced, renamed into place), then one SQLite transaction registers the segment and
the documents. A write that returned is durable; a process killed before the commit leaves
only an unreferenced directory, which the next writer removes. Deletes are tombstones in the
same catalog. `optimize()` re-trains the codec and rewrites the segments, swapped in by one
commit as well.

Read path: a search takes an immutable snapshot (codec + memory-mapped segments + live masks),
reloaded only when the catalog's version changes, so any number of threads and processes can
search while one writer writes.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maxsim.compression.bits import check_nbits
from maxsim.compression.kmeans import choose_n_centroids
from maxsim.compression.residual import ResidualCodec, train_codec
from maxsim.index import storage
from maxsim.index.catalog import Catalog
from maxsim.index.errors import (
    IndexCorruptedError,
    IndexExistsError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
)
from maxsim.search import kernels
from maxsim.search.searcher import SearchConfig, exact_segment, prepare_query, search_segment
from maxsim.types import SearchHit

#: Re-train the codec automatically once the collection holds this many times the tokens it
#: was trained on (an index whose first add was small re-clusters as it grows).
AUTO_RETRAIN_GROWTH = 4.0
#: Merge the small segments that adds create once there are more than this many.
MAX_SEGMENTS = 16
#: Compact (drop deleted documents from the segments) once this fraction of them is deleted.
MAX_DELETED_FRACTION = 0.25
#: optimize() re-trains the centroids when the live tokens changed by more than this fraction
#: since the last training (else it only compacts).
OPTIMIZE_RETRAIN_CHANGE = 0.25
#: Tokens decoded for re-training in optimize(): at most this many per centroid.
TRAIN_TOKENS_PER_CENTROID = 64


@dataclass(frozen=True, eq=False)
class _Snapshot:
    version: int
    codec_name: str | None
    codec: ResidualCodec | None
    lut: np.ndarray | None
    segments: tuple[storage.Segment, ...]
    live: tuple[np.ndarray, ...]  # uint8 [n_docs] per segment: 1 if not deleted
    n_live: int


class Index:
    """A late-interaction index stored in a directory. Use :meth:`create` or :meth:`open`.

    >>> import tempfile, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> docs = [rng.normal(size=(n, 64)).astype(np.float32) for n in (5, 7, 9)]
    >>> with Index.create(tempfile.mkdtemp() + "/idx", dim=64) as index:
    ...     index.add_embeddings(docs, ids=["a", "b", "c"])
    ...     hits = index.search_embeddings([docs[1][:3]], k=1)
    ['a', 'b', 'c']
    >>> hits[0][0]["id"]
    'b'
    """

    def __init__(self, root: Path, manifest: dict, catalog: Catalog, *, model: Any = None,
                 readonly: bool = False, auto_optimize: bool = True):
        self.path = root
        self._manifest = manifest
        self._catalog = catalog
        self._model = model
        self.readonly = readonly
        self.auto_optimize = auto_optimize
        self._write_mutex = threading.RLock()
        self._snap_mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._snapshot: _Snapshot | None = None
        self._segment_cache: dict[str, storage.Segment] = {}
        self._codec_cache: dict[str, tuple[ResidualCodec, np.ndarray]] = {}
        self._closed = False
        self._refresh()

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, model: Any = None, dim: int = 128, nbits: int = 2, *,
               overwrite: bool = False, auto_optimize: bool = True) -> Index:
        """Create an empty index at ``path`` (a new or empty directory).

        Parameters
        ----------
        path : directory to create.
        model : object with ``encode_documents``/``encode_queries``/``name``; None means the
            default model, loaded by ``maxsim.load()`` on the first text add or search (an index
            fed only through ``add_embeddings`` never loads a model).
        dim : vector width; every document and query must have it.
        nbits : bits per dimension of the quantised residuals: 1, 2 (default) or 4.
        overwrite : replace an existing index at ``path``.
        auto_optimize : re-train/compact automatically (see module constants).
        """
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        check_nbits(nbits, dim)
        root = Path(path)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            if not overwrite:
                raise IndexExistsError(f"{root} already exists and is not empty (pass overwrite=True to replace an index)")
            if not (root / storage.MANIFEST).exists():
                raise IndexExistsError(f"{root} is not a maxsim index; refusing to overwrite it")
            storage.remove_dir(root)
        root.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(root / storage.CATALOG, create=True)
        manifest = {
            "format": storage.FORMAT_NAME,
            "format_version": storage.FORMAT_VERSION,
            "dim": dim,
            "nbits": nbits,
            "model": getattr(model, "name", None) if model is not None else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        storage.write_json_atomic(root / storage.MANIFEST, manifest)  # last: its presence marks a complete index
        return cls(root, manifest, catalog, model=model, auto_optimize=auto_optimize)

    @classmethod
    def open(cls, path: str | os.PathLike, model: Any = None, *, readonly: bool = False,
             auto_optimize: bool = True) -> Index:
        """Open an existing index. Opening memory-maps the arrays; nothing large is read.

        The write lock is taken by the first write (add/delete/update/optimize) and held until
        :meth:`close`; ``readonly=True`` never takes it and refuses writes.
        """
        root = Path(path)
        if not root.is_dir():
            raise IndexNotFoundError(f"no index at {root}")
        if not (root / storage.MANIFEST).exists():
            raise IndexNotFoundError(f"{root} is not a maxsim index (no {storage.MANIFEST})")
        manifest = storage.read_json(root / storage.MANIFEST, "index manifest")
        if manifest.get("format") != storage.FORMAT_NAME:
            raise IndexCorruptedError(f"{root / storage.MANIFEST} is not a maxsim index manifest")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version not in storage.READABLE_VERSIONS:
            raise IndexCorruptedError(
                f"index format version {version!r} is not supported by this maxsim "
                f"(it reads versions {', '.join(map(str, storage.READABLE_VERSIONS))})"
            )
        for key in ("dim", "nbits"):
            if not isinstance(manifest.get(key), int):
                raise IndexCorruptedError(f"{root / storage.MANIFEST} has no valid {key!r}")
        try:
            check_nbits(manifest["nbits"], manifest["dim"])
        except ValueError as e:
            raise IndexCorruptedError(f"{root / storage.MANIFEST}: {e}") from None
        catalog = Catalog(root / storage.CATALOG)
        try:
            return cls(root, manifest, catalog, model=model, readonly=readonly, auto_optimize=auto_optimize)
        except BaseException:
            catalog.close()
            raise

    def close(self) -> None:
        """Release the write lock and the catalog. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._catalog.close()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, dim={self.dim}, nbits={self.nbits}, docs={len(self)})"

    # ---- properties ------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self._manifest["dim"])

    @property
    def nbits(self) -> int:
        return int(self._manifest["nbits"])

    @property
    def model_name(self) -> str | None:
        return self._manifest.get("model")

    def __len__(self) -> int:
        self._check_open()
        return int(self._catalog.query("SELECT COUNT(*) FROM docs")[0][0])

    def __contains__(self, doc_id: object) -> bool:
        return bool(self._catalog.query("SELECT 1 FROM docs WHERE id = ?", (doc_id,))) if isinstance(doc_id, str) else False

    # ---- snapshot --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the index is closed")

    def _load_codec(self, name: str) -> tuple[ResidualCodec, np.ndarray]:
        if name not in self._codec_cache:
            codec = storage.load_codec(self.path, name)
            if codec.dim != self.dim or codec.nbits != self.nbits:
                raise IndexCorruptedError(f"codec {name} has dim {codec.dim}/nbits {codec.nbits}, manifest says {self.dim}/{self.nbits}")
            self._codec_cache[name] = (codec, codec.lookup_table())
        return self._codec_cache[name]

    def _refresh(self) -> _Snapshot:
        """The current snapshot, reloaded if another writer (or this one) committed since."""
        self._check_open()
        with self._snap_mutex:
            for attempt in range(5):
                version = self._catalog.version()
                if self._snapshot is not None and self._snapshot.version == version:
                    return self._snapshot
                try:
                    self._snapshot = self._load_snapshot()
                    return self._snapshot
                except IndexCorruptedError:
                    # a writer may have swapped segments and removed the old files between our
                    # reads: retry while the version moves, else the index really is damaged
                    if attempt == 4 or self._catalog.version() == version:
                        raise
            raise AssertionError("unreachable")

    def _load_snapshot(self) -> _Snapshot:
        with self._catalog.transaction(immediate=False) as conn:  # one consistent read
            state = Catalog.get_state(conn)
            seg_rows = conn.execute("SELECT name, codec FROM segments ORDER BY name").fetchall()
            tombs = np.fromiter((r[0] for r in conn.execute("SELECT docno FROM tombstones")), dtype=np.int64)
            n_live = conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        codec_name = state.get("codec")
        codec, lut = self._load_codec(codec_name) if codec_name else (None, None)
        segments, live = [], []
        for name, seg_codec in seg_rows:
            if seg_codec != codec_name:
                raise IndexCorruptedError(f"segment {name} uses codec {seg_codec}, the index uses {codec_name}")
            if name not in self._segment_cache:
                self._segment_cache[name] = storage.load_segment(self.path, name, codec)
            seg = self._segment_cache[name]
            segments.append(seg)
            mask = np.ones(seg.n_docs, dtype=np.uint8)
            if len(tombs):
                mask[np.isin(seg.docnos, tombs)] = 0
            live.append(mask)
        names = {r[0] for r in seg_rows}
        for stale in set(self._segment_cache) - names:
            del self._segment_cache[stale]
        return _Snapshot(int(state["version"]), codec_name, codec, lut, tuple(segments), tuple(live), int(n_live))

    # ---- format-dependent choices ----

    @property
    def _format_version(self) -> int:
        return int(self._manifest["format_version"])

    @property
    def _table_bits(self) -> int:
        return storage.table_bits(self._format_version)

    @property
    def _pack_ids(self) -> bool:
        return storage.packs_ids(self._format_version)

    def _n_centroids(self, n_tokens: int) -> int:
        """Centroids for n_tokens: PLAID's rule, capped by a table budget from format version 3 on
        (versions 1-2 keep their rule, so an old index re-clusters as it always did)."""
        cb = storage.centroid_bytes(self._format_version, self.dim) if self._table_bits else 0
        return choose_n_centroids(n_tokens, cb)

    # ---- writer lock -----------------------------------------------------------------------

    def _acquire_writer(self) -> None:
        self._check_open()
        if self.readonly:
            raise IndexReadOnlyError(f"index {self.path} was opened read-only")
        if self._lock_fd is not None:
            return
        fd = os.open(self.path / storage.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise IndexLockedError(
                f"index {self.path} is already open for writing by another writer (pid {holder}); "
                "close that writer first, or open this one with readonly=True to search only"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Remove directories no commit references (left by a crash or replaced by optimize)."""
        rows = self._catalog.query("SELECT name FROM segments")
        keep = {r[0] for r in rows}
        codec = self._catalog.query("SELECT value FROM state WHERE key='codec'")
        if codec and codec[0][0]:
            keep.add(codec[0][0])
        for entry in self.path.iterdir():
            if entry.is_dir() and entry.name.startswith(("tmp-", "seg-", "codec-")) and entry.name not in keep:
                storage.remove_dir(entry)

    # ---- validation ------------------------------------------------------------------------

    def _check_vectors(self, arrays: Any, what: str) -> list[np.ndarray]:
        if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
            raise TypeError(f"{what}: pass a list of 2-D arrays (one per item), not a single array")
        if arrays is None or isinstance(arrays, str | bytes) or not hasattr(arrays, "__len__"):
            raise TypeError(f"{what}: expected a list of 2-D float arrays [n_tokens, {self.dim}]")
        if len(arrays) == 0:
            raise ValueError(f"{what}: the list is empty")
        out = []
        for i, a in enumerate(arrays):
            if hasattr(a, "detach"):  # torch tensor
                a = a.detach().cpu().numpy()
            a = np.asarray(a)
            if a.ndim != 2:
                raise ValueError(f"{what}[{i}]: expected a 2-D array [n_tokens, {self.dim}], got shape {a.shape}")
            if a.shape[1] != self.dim:
                raise ValueError(f"{what}[{i}]: wrong dim {a.shape[1]}, this index has dim {self.dim}")
            if a.shape[0] == 0:
                raise ValueError(f"{what}[{i}]: has no token vectors")
            if not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"{what}[{i}]: expected float vectors, got dtype {a.dtype}")
            a = np.asarray(a, dtype=np.float32)
            if not np.isfinite(a).all():
                raise ValueError(f"{what}[{i}]: contains NaN or infinite values")
            norms = np.linalg.norm(a, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ValueError(f"{what}[{i}]: contains an all-zero vector, which cannot be normalised")
            out.append(np.ascontiguousarray(a / norms, dtype=np.float32))
        return out

    @staticmethod
    def _check_ids(ids: Any, n: int | None, what: str = "ids") -> list[str]:
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise TypeError(f"{what}: expected a list of strings")
        ids = list(ids)
        if n is not None and len(ids) != n:
            raise ValueError(f"{what}: got {len(ids)} ids for {n} documents")
        if not ids:
            raise ValueError(f"{what}: the list is empty")
        bad = [i for i in ids if not isinstance(i, str) or not i]
        if bad:
            raise ValueError(f"{what}: every id must be a non-empty string, got {bad[:3]!r}")
        if len(set(ids)) != len(ids):
            seen, dups = set(), []
            for i in ids:
                if i in seen:
                    dups.append(i)
                seen.add(i)
            raise ValueError(f"{what}: duplicate ids in the batch: {sorted(set(dups))[:5]!r}")
        return ids

    @staticmethod
    def _check_side(values: Any, n: int, what: str, kind: type | tuple) -> list:
        if values is None:
            return [None] * n
        if isinstance(values, str | dict) or not isinstance(values, Sequence):
            raise TypeError(f"{what}: expected a list with one entry per document")
        values = list(values)
        if len(values) != n:
            raise ValueError(f"{what}: got {len(values)} entries for {n} documents")
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, kind):
                raise TypeError(f"{what}[{i}]: expected {getattr(kind, '__name__', kind)} or None, got {type(v).__name__}")
        if kind is dict:
            import json

            for i, v in enumerate(values):
                try:
                    json.dumps(v)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"{what}[{i}]: not JSON-serialisable ({e})") from None
        return values

    # ---- model -----------------------------------------------------------------------------

    def _get_model(self) -> Any:
        if self._model is None:
            import maxsim

            load = getattr(maxsim, "load", None)
            if load is None:
                raise RuntimeError("text add/search needs a model: pass model= to Index.create/open (maxsim.load is unavailable)")
            self._model = load(self.model_name) if self.model_name else load()
        return self._model

    def _record_model(self, model: Any) -> None:
        name = getattr(model, "name", None)
        if name and self._manifest.get("model") != name:
            if self._manifest.get("model") is not None:
                raise ValueError(f"this index was built with model {self._manifest['model']!r}, not {name!r}")
            manifest = {**self._manifest, "model": name}
            storage.write_json_atomic(self.path / storage.MANIFEST, manifest)
            self._manifest = manifest

    # ---- writes ----------------------------------------------------------------------------

    def add(self, texts: Sequence[str], ids: Sequence[str] | None = None,
            metadata: Sequence[dict | None] | None = None) -> list[str]:
        """Encode and add texts; returns their ids (new uuid4 hex strings when ``ids`` is None)."""
        texts = self._check_texts(texts)
        model = self._get_model()
        vectors = model.encode_documents(texts, dim=self.dim)
        with self._write_mutex:
            self._acquire_writer()
            self._record_model(model)
            return self.add_embeddings(vectors, ids=ids, texts=texts, metadata=metadata)

    @staticmethod
    def _check_texts(texts: Any) -> list[str]:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError("texts: expected a list of strings")
        if len(texts) == 0:
            raise ValueError("texts: the list is empty")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts[{bad[0]}]: expected a string, got {type(texts[bad[0]]).__name__}")
        return list(texts)

    def add_embeddings(self, embeddings: Sequence[np.ndarray], ids: Sequence[str] | None = None,
                       texts: Sequence[str | None] | None = None,
                       metadata: Sequence[dict | None] | None = None) -> list[str]:
        """Add documents given as token vectors (float [n_tokens, dim] each; rows are L2-normalised).

        Durable and searchable when this returns. Raises ValueError for an id already in the index.
        """
        vectors = self._check_vectors(embeddings, "embeddings")
        n = len(vectors)
        ids = [uuid.uuid4().hex for _ in range(n)] if ids is None else self._check_ids(ids, n)
        texts = self._check_side(texts, n, "texts", str)
        metadata = self._check_side(metadata, n, "metadata", dict)
        with self._write_mutex:
            self._acquire_writer()
            self._write_docs(vectors, ids, texts, metadata, replace=False)
            self._maintain()
        return ids

    def _write_docs(self, vectors: list[np.ndarray], ids: list[str], texts: list, metadata: list, *,
                    replace: bool, keep_old: bool = False) -> None:
        snap = self._refresh()
        new_dirs: list[str] = []
        try:
            codec_name, codec = snap.codec_name, snap.codec
            trained_tokens = None
            if codec is None:
                sample = np.concatenate(vectors)
                codec = train_codec(sample, self._n_centroids(len(sample)), self.nbits, table_bits=self._table_bits)
                codec_name = storage.write_codec(self.path, codec, len(sample), self._manifest["format_version"])
                new_dirs.append(codec_name)
                trained_tokens = len(sample)
            lengths = np.array([len(v) for v in vectors], dtype=np.int64)
            codes, packed = codec.encode(np.concatenate(vectors))
            state = self._catalog.query("SELECT value FROM state WHERE key='next_docno'")
            first = int(state[0][0])
            docnos = np.arange(first, first + len(vectors), dtype=np.int64)
            seg_rows = []
            offsets_all = np.zeros(len(vectors) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets_all[1:])
            for s in range(0, len(vectors), storage.MAX_SEGMENT_DOCS):
                e = min(s + storage.MAX_SEGMENT_DOCS, len(vectors))
                t0, t1 = offsets_all[s], offsets_all[e]
                name = storage.write_segment(self.path, codec_name, codec.n_centroids, codes[t0:t1], packed[t0:t1],
                                             offsets_all[s : e + 1] - t0, docnos[s:e], pack=self._pack_ids)
                new_dirs.append(name)
                seg_rows.append((name, codec_name, e - s, int(t1 - t0)))
            with self._catalog.transaction() as conn:
                if int(Catalog.get_state(conn)["next_docno"]) != first:
                    raise RuntimeError("the catalog changed under the writer lock")
                existing = _existing_docnos(conn, ids) if replace else Catalog.docnos_of(conn, ids)
                if replace:
                    old = [existing[i] for i in ids]
                    if keep_old:
                        rows = dict(((r[0], (r[1], r[2])) for r in conn.execute(
                            f"SELECT docno, text, metadata FROM docs WHERE docno IN ({','.join('?' * len(old))})", old)))
                        import json

                        texts = [t if t is not None else rows[o][0] for t, o in zip(texts, old, strict=True)]
                        metadata = [m if m is not None else (json.loads(rows[o][1]) if rows[o][1] else None)
                                    for m, o in zip(metadata, old, strict=True)]
                    Catalog.delete_docs(conn, old)
                elif existing:
                    raise ValueError(f"ids already in the index: {sorted(existing)[:5]!r} (use update() to replace them)")
                Catalog.insert_docs(conn, docnos.tolist(), ids, texts, metadata, lengths.tolist())
                conn.executemany("INSERT INTO segments(name, codec, n_docs, n_tokens) VALUES (?, ?, ?, ?)", seg_rows)
                updates = {"next_docno": first + len(vectors)}
                if trained_tokens is not None:
                    updates.update(codec=codec_name, tokens_trained=trained_tokens)
                Catalog.set_state(conn, **updates)
                Catalog.bump_version(conn)
        except BaseException:
            for name in new_dirs:
                storage.remove_dir(self.path / name)
            raise

    def delete(self, ids: Sequence[str]) -> int:
        """Delete documents by id; unknown ids raise KeyError and nothing is deleted. Returns the count."""
        ids = self._check_ids(ids, None)
        with self._write_mutex:
            self._acquire_writer()
            with self._catalog.transaction() as conn:
                found = _existing_docnos(conn, ids)
                Catalog.delete_docs(conn, list(found.values()))
                Catalog.bump_version(conn)
            self._maintain()
        return len(ids)

    def update(self, ids: Sequence[str], texts: Sequence[str] | None = None,
               metadata: Sequence[dict | None] | None = None) -> None:
        """Replace the text (re-encoded) and/or metadata of existing documents; ids do not change.

        With ``texts=None`` only the metadata is replaced (a None entry clears it).
        """
        ids = self._check_ids(ids, None)
        if texts is None:
            if metadata is None:
                raise ValueError("update: give texts and/or metadata")
            metadata = self._check_side(metadata, len(ids), "metadata", dict)
            with self._write_mutex:
                self._acquire_writer()
                with self._catalog.transaction() as conn:
                    found = _existing_docnos(conn, ids)
                    for i, meta in zip(ids, metadata, strict=True):
                        Catalog.set_metadata(conn, found[i], meta)
                    Catalog.bump_version(conn)
            return
        texts = self._check_texts(texts)
        if len(texts) != len(ids):
            raise ValueError(f"update: got {len(texts)} texts for {len(ids)} ids")
        model = self._get_model()
        vectors = model.encode_documents(texts, dim=self.dim)
        with self._write_mutex:
            self._acquire_writer()
            self._record_model(model)
            self.update_embeddings(ids, vectors, texts=texts, metadata=metadata)

    def update_embeddings(self, ids: Sequence[str], embeddings: Sequence[np.ndarray],
                          texts: Sequence[str | None] | None = None,
                          metadata: Sequence[dict | None] | None = None) -> None:
        """Replace the vectors of existing documents, keeping their ids; a None text or metadata
        entry keeps the old value. Atomic: all or nothing."""
        ids = self._check_ids(ids, None)
        vectors = self._check_vectors(embeddings, "embeddings")
        if len(vectors) != len(ids):
            raise ValueError(f"update_embeddings: got {len(vectors)} arrays for {len(ids)} ids")
        texts = self._check_side(texts, len(ids), "texts", str)
        metadata = self._check_side(metadata, len(ids), "metadata", dict)
        with self._write_mutex:
            self._acquire_writer()
            self._write_docs(vectors, ids, texts, metadata, replace=True, keep_old=True)
            self._maintain()

    def create_metadata_index(self, key: str) -> None:
        """Add an SQLite expression index on ``json_extract(metadata, '$.<key>')`` so SQL filters
        on that key use an index instead of a scan."""
        if not isinstance(key, str) or not key.replace("_", "").isalnum():
            raise ValueError(f"metadata index key must be alphanumeric/underscore, got {key!r}")
        with self._write_mutex:
            self._acquire_writer()
            with self._catalog.transaction() as conn:
                conn.execute(f"CREATE INDEX IF NOT EXISTS meta_{key} ON docs(json_extract(metadata, '$.{key}'))")

    # ---- maintenance -----------------------------------------------------------------------

    def _maintain(self) -> None:
        if not self.auto_optimize:
            return
        snap = self._refresh()
        if snap.codec is None or not snap.segments:
            return
        trained = int(self._catalog.query("SELECT value FROM state WHERE key='tokens_trained'")[0][0])
        live_tokens = sum(int(np.diff(s.offsets)[m.astype(bool)].sum()) for s, m in zip(snap.segments, snap.live, strict=True))
        if live_tokens > AUTO_RETRAIN_GROWTH * max(trained, 1):
            self.optimize(force=True)
            return
        in_segments = sum(s.n_docs for s in snap.segments)
        deleted = in_segments - sum(int(m.sum()) for m in snap.live)
        small = [s for s in snap.segments if s.n_docs < storage.MAX_SEGMENT_DOCS // 2]
        if deleted > MAX_DELETED_FRACTION * in_segments:
            self._rewrite(snap, list(snap.segments), new_codec=None)
        elif len(snap.segments) > MAX_SEGMENTS and len(small) > 1:
            self._rewrite(snap, small, new_codec=None)

    def optimize(self, force: bool = False) -> bool:
        """Re-cluster if the centroids no longer fit the data, and compact every segment.

        The centroids are re-trained (and every document re-encoded) when the live tokens
        differ from those the codec was trained on by more than OPTIMIZE_RETRAIN_CHANGE (25 %),
        or when ``force``; otherwise the segments are only merged and purged of deleted
        documents, which copies codes without re-encoding. Re-encoding starts from the
        decompressed vectors (the index keeps no originals), so each re-training adds a little
        quantisation noise: that is why it is not done when nothing changed. Atomic: a crash
        leaves the previous index intact. Returns True if the centroids were re-trained.
        Runs automatically when the collection has grown AUTO_RETRAIN_GROWTH times past the
        tokens the codec was trained on.
        """
        with self._write_mutex:
            self._acquire_writer()
            snap = self._refresh()
            if snap.codec is None:
                return False
            live_docs = [np.flatnonzero(m) for m in snap.live]
            lengths = [np.diff(s.offsets)[d] for s, d in zip(snap.segments, live_docs, strict=True)]
            n_tokens = int(sum(int(x.sum()) for x in lengths))
            trained = int(self._catalog.query("SELECT value FROM state WHERE key='tokens_trained'")[0][0])
            fits = abs(n_tokens - trained) <= OPTIMIZE_RETRAIN_CHANGE * max(trained, 1)
            if n_tokens == 0 or (fits and not force):
                self._rewrite(snap, list(snap.segments), new_codec=None)
                return False
            k = self._n_centroids(n_tokens)
            budget = TRAIN_TOKENS_PER_CENTROID * k
            rng = np.random.default_rng(snap.version)
            sample = []
            for seg, docs, lens in zip(snap.segments, live_docs, lengths, strict=True):
                if len(docs) == 0:
                    continue
                share = max(1, math.ceil(len(docs) * min(1.0, budget / n_tokens)))
                pick = np.sort(rng.choice(docs, size=min(share, len(docs)), replace=False))
                sample.append(self._decode(snap, seg, pick))
            codec = train_codec(np.concatenate(sample), k, self.nbits, seed=int(snap.version), table_bits=self._table_bits)
            self._rewrite(snap, list(snap.segments), new_codec=codec, trained_tokens=n_tokens)
            return True

    def _decode(self, snap: _Snapshot, seg: storage.Segment, docs: np.ndarray) -> np.ndarray:
        docs = docs.astype(np.int64)
        lens = np.diff(seg.offsets)[docs]
        out_offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(lens, out=out_offsets[1:])
        out = np.empty((int(out_offsets[-1]), self.dim), dtype=np.float32)
        kernels.decompress(docs, seg.offsets, seg.codes, seg.residuals, snap.codec.centroids, snap.lut, out_offsets, out,
                           seg.code_bits)
        return out

    def _rewrite(self, snap: _Snapshot, segs: list[storage.Segment], *, new_codec: ResidualCodec | None,
                 trained_tokens: int | None = None) -> None:
        """Rewrite ``segs`` without their deleted documents (re-encoded if ``new_codec``), then
        swap them in with one commit."""
        new_dirs: list[str] = []
        try:
            codec_name, codec = snap.codec_name, snap.codec
            if new_codec is not None:
                codec = new_codec
                codec_name = storage.write_codec(self.path, codec, trained_tokens or 0, self._manifest["format_version"])
                new_dirs.append(codec_name)
            if new_codec is not None:
                segs = list(snap.segments)  # a new codec re-encodes everything
            # gather live documents of the rewritten segments in global docno order, in runs of
            # at most 8192 documents from one segment
            live_of = {s.name: m for s, m in zip(snap.segments, snap.live, strict=True)}
            seg_idx = [np.full(int(live_of[seg.name].sum()), j, dtype=np.int64) for j, seg in enumerate(segs)]
            local = [np.flatnonzero(live_of[seg.name]) for seg in segs]
            all_seg = np.concatenate(seg_idx) if segs else np.zeros(0, np.int64)
            all_local = np.concatenate(local) if segs else np.zeros(0, np.int64)
            all_docno = np.concatenate([seg.docnos[loc] for seg, loc in zip(segs, local, strict=True)]) if segs else all_local
            order = np.argsort(all_docno, kind="stable")
            all_seg, all_local = all_seg[order], all_local[order]
            breaks = np.flatnonzero(np.diff(all_seg)) + 1
            pieces = []  # (codes, residuals, lengths, docnos)
            for run_start, run_end in zip(np.r_[0, breaks], np.r_[breaks, len(all_seg)], strict=True):
                seg = segs[int(all_seg[run_start])] if run_end > run_start else None
                for s in range(int(run_start), int(run_end), 8192):
                    chunk = all_local[s : min(s + 8192, int(run_end))]
                    lens = np.diff(seg.offsets)[chunk]
                    if new_codec is not None:
                        c, r = codec.encode(self._decode(snap, seg, chunk))
                    else:
                        take = np.concatenate([np.arange(seg.offsets[d], seg.offsets[d + 1]) for d in chunk])
                        c = kernels.gather_codes(seg.codes, seg.code_bits, take.astype(np.int64))
                        r = np.asarray(seg.residuals[take])
                    pieces.append((c, r, lens, seg.docnos[chunk]))
            seg_rows = []
            buf: list = []
            n_buf = 0

            def flush() -> None:
                nonlocal buf, n_buf
                if not buf:
                    return
                lens = np.concatenate([p[2] for p in buf])
                offsets = np.zeros(len(lens) + 1, dtype=np.int64)
                np.cumsum(lens, out=offsets[1:])
                codes = np.concatenate([p[0] for p in buf]).astype(codec.code_dtype)
                name = storage.write_segment(self.path, codec_name, codec.n_centroids, codes,
                                             np.concatenate([p[1] for p in buf]), offsets,
                                             np.concatenate([p[3] for p in buf]), pack=self._pack_ids)
                new_dirs.append(name)
                seg_rows.append((name, codec_name, len(lens), int(offsets[-1])))
                buf, n_buf = [], 0

            for piece in pieces:
                if n_buf + len(piece[2]) > storage.MAX_SEGMENT_DOCS:
                    flush()
                buf.append(piece)
                n_buf += len(piece[2])
            flush()
            with self._catalog.transaction() as conn:
                if self._catalog.version() != snap.version:
                    raise RuntimeError("the catalog changed under the writer lock")
                for seg in segs:
                    conn.execute("DELETE FROM segments WHERE name = ?", (seg.name,))
                    dead = seg.docnos[live_of[seg.name] == 0]
                    conn.executemany("DELETE FROM tombstones WHERE docno = ?", [(int(d),) for d in dead])
                conn.executemany("INSERT INTO segments(name, codec, n_docs, n_tokens) VALUES (?, ?, ?, ?)", seg_rows)
                if new_codec is not None:
                    Catalog.set_state(conn, codec=codec_name, tokens_trained=int(trained_tokens or 0))
                Catalog.bump_version(conn)
        except BaseException:
            for name in new_dirs:
                storage.remove_dir(self.path / name)
            raise
        self._refresh()
        self._collect_garbage()

    # ---- reads -----------------------------------------------------------------------------

    def search(self, query_or_queries: str | Sequence[str], k: int = 10, filter: dict | str | None = None,  # noqa: A002
               config: SearchConfig | None = None) -> list[SearchHit] | list[list[SearchHit]]:
        """Search with text: one string gives a list of hits, a list of strings a list of lists."""
        single = isinstance(query_or_queries, str)
        queries = self._check_texts([query_or_queries] if single else query_or_queries)
        vectors = self._get_model().encode_queries(queries, dim=self.dim)
        hits = self.search_embeddings(vectors, k=k, filter=filter, config=config)
        return hits[0] if single else hits

    def search_embeddings(self, queries: Sequence[np.ndarray] | np.ndarray, k: int = 10,
                          filter: dict | str | None = None,  # noqa: A002
                          config: SearchConfig | None = None) -> list[SearchHit] | list[list[SearchHit]]:
        """Search with query token vectors: a list of [n_q, dim] arrays gives a list of hit lists;
        a single 2-D array gives one hit list. Safe to call from many threads at once.

        ``filter`` restricts results by metadata: a dict of key -> value (or list of values),
        or an SQL WHERE clause over the ``docs`` table (columns id, text, metadata; use
        ``json_extract(metadata, '$.key')``).
        """
        single = isinstance(queries, np.ndarray) and queries.ndim == 2
        qs = self._check_vectors([queries] if single else queries, "queries")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        config = config or SearchConfig()
        snap = self._refresh()
        results = [[] for _ in qs]
        if snap.codec is not None and snap.segments:
            allowed = list(snap.live)
            n_allowed = snap.n_live
            if filter is not None:
                keep = self._catalog.filter_docnos(filter)
                allowed = [(m & np.isin(s.docnos, keep)).astype(np.uint8) for s, m in zip(snap.segments, allowed, strict=True)]
                n_allowed = int(sum(int(m.sum()) for m in allowed))
            nprobe, n_cand, n_exact = config.resolved(k, snap.codec.n_centroids)
            exact = config.exact if config.exact is not None else n_allowed <= config.exact_threshold
            if filter is not None and n_allowed <= n_exact:
                exact = True  # scoring the few matching documents exactly is cheaper than pruning
            for qi, q in enumerate(qs):
                results[qi] = self._search_one(snap, q, allowed, k, exact, nprobe, n_cand, n_exact, config.threads)
        hydrated = self._hydrate(results)
        return hydrated[0] if single else hydrated

    def _search_one(self, snap: _Snapshot, q: np.ndarray, allowed: list[np.ndarray], k: int, exact: bool,
                    nprobe: int, n_cand: int, n_exact: int, threads: int) -> list[tuple[int, float]]:
        docnos, scores = [], []
        pq = None if exact else prepare_query(q, snap.codec, nprobe, threads)
        for seg, mask in zip(snap.segments, allowed, strict=True):
            if exact:
                local, sc = exact_segment(seg, snap.codec, snap.lut, q, np.flatnonzero(mask), k, threads)
            else:
                local, sc = search_segment(seg, snap.codec, snap.lut, pq, mask, k, n_cand, n_exact, threads)
            docnos.append(seg.docnos[local])
            scores.append(sc)
        if not docnos:
            return []
        d = np.concatenate(docnos)
        s = np.concatenate(scores)
        order = np.lexsort((d, -s))[:k]
        return [(int(d[i]), float(s[i])) for i in order]

    def _hydrate(self, results: list[list[tuple[int, float]]]) -> list[list[SearchHit]]:
        rows = self._catalog.hydrate(sorted({d for r in results for d, _ in r}))
        out = []
        for r in results:
            hits: list[SearchHit] = []
            for docno, score in r:
                if docno in rows:  # a concurrent delete may have removed it since the snapshot
                    id_, text, meta = rows[docno]
                    hits.append(SearchHit(id=id_, score=score, text=text, metadata=meta))
            out.append(hits)
        return out

    def get(self, ids: Sequence[str]) -> list[dict]:
        """Stored id, text and metadata of documents (KeyError for unknown ids)."""
        ids = self._check_ids(ids, None)
        found = self._docnos(ids)
        rows = self._catalog.hydrate([found[i] for i in ids])
        return [{"id": rows[found[i]][0], "text": rows[found[i]][1], "metadata": rows[found[i]][2]} for i in ids]

    def _docnos(self, ids: list[str]) -> dict[str, int]:
        out = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            out.update(self._catalog.query(f"SELECT id, docno FROM docs WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        missing = [i for i in ids if i not in out]
        if missing:
            raise KeyError(f"ids not in the index: {missing[:5]!r}")
        return out

    def get_embeddings(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The stored (decompressed, unit-norm) token vectors of documents."""
        ids = self._check_ids(ids, None)
        found = self._docnos(ids)
        snap = self._refresh()
        out = {}
        for seg in snap.segments:
            want = np.array([found[i] for i in ids], dtype=np.int64)
            pos = np.searchsorted(seg.docnos, want)
            ok = (pos < seg.n_docs) & (seg.docnos[np.minimum(pos, seg.n_docs - 1)] == want)
            for i, p in zip(np.flatnonzero(ok), pos[ok], strict=True):
                out[ids[i]] = self._decode(snap, seg, np.array([p]))
        return [out[i] for i in ids]

    def info(self) -> dict:
        """Sizes and settings of the index."""
        snap = self._refresh()
        n_tokens = int(sum(int(np.diff(s.offsets)[m.astype(bool)].sum()) for s, m in zip(snap.segments, snap.live, strict=True)))
        stored_tokens = sum(s.n_tokens for s in snap.segments)
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        arrays = sum(f.stat().st_size for d in [snap.codec_name, *(s.name for s in snap.segments)] if d
                     for f in (self.path / d).glob("*.npy"))
        return {
            "path": str(self.path),
            "format_version": self._manifest["format_version"],
            "dim": self.dim,
            "nbits": self.nbits,
            "model": self.model_name,
            "documents": snap.n_live,
            "tokens": n_tokens,
            "deleted_pending": int(sum(s.n_docs for s in snap.segments) - sum(int(m.sum()) for m in snap.live)),
            "segments": len(snap.segments),
            "centroids": snap.codec.n_centroids if snap.codec else 0,
            "bytes_on_disk": size,
            "array_bytes_per_token": arrays / stored_tokens if stored_tokens else 0.0,
            "version": snap.version,
        }

    def verify(self) -> None:
        """Checksum every array file and run SQLite's integrity check; raise IndexCorruptedError."""
        snap = self._refresh()
        if snap.codec_name:
            storage.load_codec(self.path, snap.codec_name, verify_all=True)
        for seg in snap.segments:
            storage.load_segment(self.path, seg.name, snap.codec, verify_all=True)
        res = self._catalog.query("PRAGMA integrity_check")
        if res != [("ok",)]:
            raise IndexCorruptedError(f"index catalog failed its integrity check: {res[:3]}")


def _existing_docnos(conn, ids: Sequence[str]) -> dict[str, int]:
    """id -> docno for ids that must all exist; KeyError naming the missing ones otherwise."""
    found = Catalog.docnos_of(conn, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise KeyError(f"ids not in the index: {missing[:5]!r}")
    return found
