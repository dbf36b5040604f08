"""`maxsim.index.Index`: a compressed, updatable, crash-safe late-interaction index of token vectors.

Write path: vectors are encoded against the current codec into a new immutable segment
directory (fsynced, renamed into place), then one SQLite transaction registers the segment and
the documents. A write that returned is durable; a process killed before the commit leaves
only an unreferenced directory, which the next writer removes. Deletes are tombstones in the
same catalog. `optimize()` re-trains the codec and rewrites the segments, swapped in by one
commit as well.

Read path: a search opens one read transaction on the catalog (:meth:`Catalog.read_view`) and
does everything inside it: it takes the immutable snapshot (codec + memory-mapped segments + live
masks) of the version that transaction sees (reloaded only when the version changed), evaluates
the filter and hydrates ids, texts and metadata. SQLite's WAL keeps that transaction on one commit
while writers commit newer ones, so segments, filter and rows always come from the same version:
a document being re-written is found either as it was or as it is, never missed. Readers take no
lock and never block the writer; any number of threads and processes search at once.

Errors: an exception from a write (add, update, upsert, delete) means nothing of it was
committed; a full disk is :class:`DiskFullError`, other I/O failures :class:`IndexWriteError`,
and the partial files are removed. The automatic maintenance that may follow a commit (merging
segments, re-training the codec) cannot undo it, so its failure does not raise: it is logged and
issued as a :class:`MaintenanceWarning` carrying the committed ids (also kept in
``Index.last_maintenance_error``), and maintenance runs again after the next write.

Creation is crash-safe: the manifest is written last (and removed first when overwriting), so a
directory without one but holding only index files is an interrupted create, which ``open``
names as such and ``create(overwrite=True)`` replaces. Overwriting takes the writer lock first.

This is the storage layer: it stores vectors and never loads a model. Its text methods (from
:class:`maxsim.store.TextMethods`) use the ``model`` it is given; ``maxsim.Index`` (the text
layer, :mod:`maxsim.collection`) loads the default model when none is given.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np

from maxsim.compression.bits import check_nbits
from maxsim.compression.kmeans import choose_n_centroids
from maxsim.compression.pooling import check_pool_factor, pool_documents
from maxsim.compression.residual import check_refine_bits, train_codec
from maxsim.errors import DuplicateIdError, InvalidArgumentError, UnknownIdError
from maxsim.index import faults, storage
from maxsim.index.catalog import Catalog
from maxsim.index.errors import (
    IndexClosedError,
    IndexCorruptedError,
    IndexExistsError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReadOnlyError,
)
from maxsim.index.hybrid import HybridSearch
from maxsim.index.lock import WriterLock
from maxsim.index.maintenance import Maintenance
from maxsim.index.reads import Reads
from maxsim.index.snapshot import Snapshot, SnapshotLoader
from maxsim.index.tuning import TunedSearch
from maxsim.store import (
    Encoder,
    TextMethods,
    check_ids,
    check_metadata,
    check_stored_texts,
    check_update,
    check_vectors,
    new_ids,
)

log = logging.getLogger(__name__)


class Index(Reads, Maintenance, HybridSearch, TunedSearch, TextMethods):
    """A late-interaction index stored in a directory. Use :meth:`create` or :meth:`open`.

    Implements :class:`maxsim.store.VectorStore`.

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

    def __init__(
        self,
        root: Path,
        manifest: dict,
        catalog: Catalog,
        *,
        model: Encoder | None = None,
        readonly: bool = False,
        auto_optimize: bool = True,
    ):
        self.path = root
        self._manifest = manifest
        self._catalog = catalog
        self.model = model
        self.readonly = readonly
        self.auto_optimize = auto_optimize
        self._write_mutex = threading.RLock()
        self._snap_mutex = threading.RLock()
        self._lock = WriterLock(root / storage.LOCK)
        self._loader = SnapshotLoader(root, int(manifest["dim"]), int(manifest["nbits"]), self.refine_bits)
        self._snapshot: Snapshot | None = None
        self._closed = False
        self.last_maintenance_error = None
        self._refresh()

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        model: Encoder | None = None,
        dim: int = 128,
        nbits: int = 2,
        *,
        overwrite: bool = False,
        auto_optimize: bool = True,
        pool_factor: int = 1,
        refine_bits: int = 0,
    ) -> Self:
        """Create an empty index at ``path`` (a new or empty directory).

        Parameters
        ----------
        path : directory to create.
        model : encoder for the text methods (``maxsim.load()``); None leaves the index to its
            ``*_embeddings`` methods (``maxsim.Index`` loads the default model instead).
        dim : vector width; every document and query must have it.
        nbits : bits per dimension of the quantised residuals: 1, 2 (default) or 4.
        overwrite : replace an existing index at ``path``.
        auto_optimize : re-train/compact automatically (see module constants).
        pool_factor : store about n / pool_factor vectors per document of n tokens (hierarchical
            token pooling, :mod:`maxsim.compression.pooling`); 1 (default) stores every token.
        refine_bits : 0 (default), or ``nbits`` (1 or 2) for a second residual plane of that many
            bits per dimension, stored beside the first and read only for the final exact re-rank:
            search keeps the memory of ``nbits`` and ranks its short list at ``2 * nbits`` bits
            (format version 4; see docs/index.md, "Two residual planes").
        """
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise InvalidArgumentError(f"dim must be a positive integer, got {dim!r}")
        check_nbits(nbits, dim)
        check_refine_bits(nbits, refine_bits)
        try:
            check_pool_factor(pool_factor)
        except ValueError as e:
            raise InvalidArgumentError(str(e)) from None
        root = Path(path)
        lock = WriterLock(root / storage.LOCK)
        if root.exists() and not root.is_dir():
            raise IndexExistsError(f"{root} already exists and is not a directory; refusing to overwrite it")
        if root.exists() and any(root.iterdir()):
            state = storage.directory_state(root)
            if state == "other":
                raise IndexExistsError(f"{root} already exists and is not a maxsim index; refusing to overwrite it")
            if not overwrite:
                what = "holds an interrupted index creation" if state == "incomplete" else "already holds an index"
                raise IndexExistsError(f"{root} {what} (pass overwrite=True to replace it)")
            lock.acquire(root)  # IndexLockedError while another process writes to it
            try:
                storage.clear_index_dir(root)
            except OSError as e:
                lock.release()
                raise faults.os_error(e, root, "removing the index being overwritten") from e
        else:
            root.mkdir(parents=True, exist_ok=True)
            lock.acquire(root)
        catalog = None
        try:
            catalog = Catalog(root / storage.CATALOG, create=True)
            manifest = {
                "format": storage.FORMAT_NAME,
                "format_version": storage.REFINE_FORMAT_VERSION if refine_bits else storage.FORMAT_VERSION,
                "dim": dim,
                "nbits": nbits,
                "pool_factor": pool_factor,
                "model": getattr(model, "name", None) if model is not None else None,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **({"refine_bits": refine_bits} if refine_bits else {}),
            }
            storage.write_json_atomic(root / storage.MANIFEST, manifest)  # last: its presence marks a complete index
        except BaseException as e:
            if catalog is not None:
                catalog.close()
            if isinstance(e, sqlite3.Error):
                raise faults.sqlite_error(e, root / storage.CATALOG) from e
            raise
        finally:
            lock.release()  # the index takes it again at its first write
        return cls(root, manifest, catalog, model=model, auto_optimize=auto_optimize)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        model: Encoder | None = None,
        *,
        readonly: bool = False,
        auto_optimize: bool = True,
    ) -> Self:
        """Open an existing index. Opening memory-maps the arrays; nothing large is read.

        The write lock is taken by the first write (add/delete/update/optimize) and held until
        :meth:`close`; ``readonly=True`` never takes it and refuses writes.
        """
        root = Path(path)
        if not root.is_dir():
            raise IndexNotFoundError(f"no index at {root}")
        if not (root / storage.MANIFEST).exists():
            if storage.directory_state(root) == "incomplete":
                raise IndexNotFoundError(
                    f"{root} holds an index whose creation was interrupted (no {storage.MANIFEST}); "
                    "create it again with Index.create(path, overwrite=True)"
                )
            raise IndexNotFoundError(f"{root} is not a maxsim index (no {storage.MANIFEST})")
        manifest = storage.read_json(root / storage.MANIFEST, "index manifest")
        storage.check_manifest(root, manifest)
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
        self._lock.release()

    def release_writer(self) -> None:
        """Let go of the writer lock between writes (a long-lived reader that writes now and then,
        like the server): the next write takes it again, and sees what others wrote meanwhile."""
        with self._write_mutex:
            self._lock.release()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __repr__(self) -> str:
        docs = "closed" if self._closed else f"docs={len(self)}"
        return f"Index({str(self.path)!r}, dim={self.dim}, nbits={self.nbits}, {docs})"

    # ---- properties ------------------------------------------------------------------------

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self._manifest["dim"])

    @property
    def nbits(self) -> int:
        return int(self._manifest["nbits"])

    @property
    def refine_bits(self) -> int:
        """Bits per dimension of the second residual plane (0: the index has one plane)."""
        return int(self._manifest.get("refine_bits", 0))

    @property
    def pool_factor(self) -> int:
        return int(self._manifest.get("pool_factor", 1))

    @property
    def model_name(self) -> str | None:
        return self._manifest.get("model")

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, doc_id: object) -> bool:
        self._check_open()
        return (
            bool(self._catalog.query("SELECT 1 FROM docs WHERE id = ?", (doc_id,)))
            if isinstance(doc_id, str)
            else False
        )

    def count(self, filter: Mapping[str, Any] | str | None = None) -> int:  # noqa: A002
        """Number of documents, or of those matching ``filter`` (as in :meth:`search_embeddings`)."""
        self._check_open()
        if filter is None:
            return int(self._catalog.query("SELECT COUNT(*) FROM docs")[0][0])
        return len(self._catalog.filter_docnos(filter))

    # ---- snapshot --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(f"the index {self.path} is closed")

    def _refresh(self) -> Snapshot:
        """The current snapshot, reloaded if another writer (or this one) committed since."""
        with self._view() as (snap, _):
            return snap

    @contextmanager
    def _view(self) -> Iterator[tuple[Snapshot, sqlite3.Connection]]:
        """The snapshot of one catalog version and a read transaction on that same version (see the
        module docstring): reads through the connection agree with the snapshot."""
        self._check_open()
        for attempt in range(5):
            with self._catalog.read_view() as conn:
                version = Catalog.version_in(conn)
                try:
                    snap = self._snapshot_at(conn, version)
                except IndexCorruptedError as e:
                    damage = e
                else:
                    yield snap, conn
                    return
            # a writer may have swapped segments and removed the old files between our reads:
            # retry while the version moves, else the index really is damaged
            if attempt == 4 or self._catalog.version() == version:
                raise damage
        raise AssertionError("unreachable")

    def _snapshot_at(self, conn: sqlite3.Connection, version: int) -> Snapshot:
        with self._snap_mutex:
            snap = self._snapshot
            if snap is not None and snap.version == version:
                return snap
            snap = self._loader.load(conn)
            if self._snapshot is None or snap.version > self._snapshot.version:
                self._snapshot = snap
            return snap

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
        if self._lock.acquire(self.path):
            try:
                self._catalog.add_checksums()
                self._collect_garbage()
            except BaseException:
                self._lock.release()
                raise

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

    # ---- model -----------------------------------------------------------------------------

    def _encoded_with(self, model: Encoder) -> None:
        """Record the model that wrote the index; refuse vectors of another model."""
        name = getattr(model, "name", None)
        if name and self._manifest.get("model") != name:
            if self._manifest.get("model") is not None:
                raise InvalidArgumentError(f"this index was built with model {self._manifest['model']!r}, not {name!r}")
            with self._write_mutex:
                self._acquire_writer()
                manifest = {**self._manifest, "model": name}
                storage.write_json_atomic(self.path / storage.MANIFEST, manifest)
                self._manifest = manifest

    # ---- writes ----------------------------------------------------------------------------

    def add_embeddings(
        self,
        embeddings: Sequence[np.ndarray],
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Add new documents given as token vectors (float [n_tokens, dim] each; rows are L2-normalised).

        Returns their ids (new uuid4 hex strings when ``ids`` is None). Durable and searchable
        when this returns. Raises DuplicateIdError for an id already in the index.
        """
        vectors = check_vectors(embeddings, self.dim, "embeddings")
        n = len(vectors)
        ids = new_ids(n) if ids is None else check_ids(ids, n)
        texts = check_stored_texts(texts, n)
        metadata = check_metadata(metadata, n)
        with self._write_mutex:
            self._acquire_writer()
            self._write_docs(vectors, ids, texts, metadata, mode="add")
            self._maintain_after_commit(ids)
        return ids

    def update_embeddings(
        self,
        ids: Sequence[str],
        embeddings: Sequence[np.ndarray] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Replace stored documents, keeping their ids; a None text or metadata entry keeps the
        stored value (``{}`` clears metadata). With ``embeddings=None`` only metadata changes.
        Unknown ids raise UnknownIdError. Atomic: all or nothing."""
        ids, vectors, metadata = check_update(ids, embeddings, texts, metadata, self.dim)
        if vectors is None:
            with self._write_mutex:
                self._acquire_writer()
                with self._catalog.transaction() as conn:
                    found = _existing_docnos(conn, ids)
                    for i, meta in zip(ids, metadata, strict=True):
                        if meta is not None:
                            Catalog.set_metadata(conn, found[i], meta)
                    Catalog.bump_version(conn)
            return
        texts = check_stored_texts(texts, len(ids))
        with self._write_mutex:
            self._acquire_writer()
            self._write_docs(vectors, ids, texts, metadata, mode="update")
            self._maintain_after_commit(ids)

    def upsert_embeddings(
        self,
        embeddings: Sequence[np.ndarray],
        ids: Sequence[str],
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Add the new ids and replace the stored ones (a None text or metadata entry keeps the
        stored value), in one atomic commit. Returns ``ids``."""
        vectors = check_vectors(embeddings, self.dim, "embeddings")
        ids = check_ids(ids, len(vectors))
        texts = check_stored_texts(texts, len(ids))
        metadata = check_metadata(metadata, len(ids))
        with self._write_mutex:
            self._acquire_writer()
            self._write_docs(vectors, ids, texts, metadata, mode="upsert")
            self._maintain_after_commit(ids)
        return ids

    def _write_docs(self, vectors: list[np.ndarray], ids: list[str], texts: list, metadata: list, *, mode: str) -> None:
        """Write one segment batch and commit it; ``mode`` is add (ids must be new), update (ids
        must exist) or upsert (either)."""
        vectors = pool_documents(vectors, self.pool_factor)
        snap = self._refresh()
        new_dirs: list[str] = []
        try:
            codec_name, codec = snap.codec_name, snap.codec
            trained_tokens = None
            if codec is None:
                sample = np.concatenate(vectors)
                codec = train_codec(
                    sample,
                    self._n_centroids(len(sample)),
                    self.nbits,
                    table_bits=self._table_bits,
                    refine_bits=self.refine_bits,
                )
                codec_name = storage.write_codec(self.path, codec, len(sample), self._format_version)
                new_dirs.append(codec_name)
                trained_tokens = len(sample)
            assert codec_name is not None  # the snapshot's, or the one just written
            lengths = np.array([len(v) for v in vectors], dtype=np.int64)
            codes, packed, refine = codec.encode_planes(np.concatenate(vectors))
            first = int(self._catalog.query("SELECT value FROM state WHERE key='next_docno'")[0][0])
            docnos = np.arange(first, first + len(vectors), dtype=np.int64)
            seg_rows = []
            offsets_all = np.zeros(len(vectors) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets_all[1:])
            for s in range(0, len(vectors), storage.MAX_SEGMENT_DOCS):
                e = min(s + storage.MAX_SEGMENT_DOCS, len(vectors))
                t0, t1 = offsets_all[s], offsets_all[e]
                name = storage.write_segment(
                    self.path,
                    codec_name,
                    codec.n_centroids,
                    codes[t0:t1],
                    packed[t0:t1],
                    offsets_all[s : e + 1] - t0,
                    docnos[s:e],
                    pack=self._pack_ids,
                    refine=None if refine is None else refine[t0:t1],
                )
                new_dirs.append(name)
                seg_rows.append((name, codec_name, e - s, int(t1 - t0)))
            with self._catalog.transaction() as conn:
                if int(Catalog.get_state(conn)["next_docno"]) != first:
                    raise IndexLockedError(
                        "the catalog changed under the writer lock: another writer committed to this index"
                    )
                existing = _existing_docnos(conn, ids) if mode == "update" else Catalog.docnos_of(conn, ids)
                if mode == "add" and existing:
                    raise DuplicateIdError(
                        f"ids already in the index: {sorted(existing)[:5]!r} (use upsert() or update() to replace them)"
                    )
                if existing:
                    texts, metadata = _keep_stored(conn, ids, existing, texts, metadata)
                    Catalog.delete_docs(conn, list(existing.values()))
                Catalog.insert_docs(conn, docnos.tolist(), ids, texts, metadata, lengths.tolist())
                conn.executemany("INSERT INTO segments(name, codec, n_docs, n_tokens) VALUES (?, ?, ?, ?)", seg_rows)
                updates: dict[str, Any] = {"next_docno": first + len(vectors)}
                if trained_tokens is not None:
                    updates.update(codec=codec_name, tokens_trained=trained_tokens)
                Catalog.set_state(conn, **updates)
                Catalog.bump_version(conn)
        except BaseException:
            for name in new_dirs:
                storage.remove_dir(self.path / name)
            raise

    def delete(self, ids: Sequence[str], missing_ok: bool = False) -> int:
        """Delete documents by id; returns how many were deleted. Unknown ids raise UnknownIdError
        and nothing is deleted, unless ``missing_ok``."""
        ids = check_ids(ids)
        with self._write_mutex:
            self._acquire_writer()
            with self._catalog.transaction() as conn:
                found = Catalog.docnos_of(conn, ids) if missing_ok else _existing_docnos(conn, ids)
                if found:
                    Catalog.delete_docs(conn, list(found.values()))
                    Catalog.bump_version(conn)
            if found:
                self._maintain_after_commit(list(found))
        return len(found)

    def create_metadata_index(self, key: str) -> None:
        """Add an SQLite expression index on ``json_extract(metadata, '$.<key>')`` so SQL filters
        on that key use an index instead of a scan."""
        if not isinstance(key, str) or not key.replace("_", "").isalnum():
            raise InvalidArgumentError(f"metadata index key must be alphanumeric/underscore, got {key!r}")
        with self._write_mutex:
            self._acquire_writer()
            with self._catalog.transaction() as conn:
                conn.execute(f"CREATE INDEX IF NOT EXISTS meta_{key} ON docs(json_extract(metadata, '$.{key}'))")


def _keep_stored(conn: Any, ids: list[str], existing: dict[str, int], texts: list, metadata: list) -> tuple[list, list]:
    """Fill None text/metadata entries of replaced documents with their stored values."""
    old = list(existing.values())
    rows = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            f"SELECT docno, text, metadata FROM docs WHERE docno IN ({','.join('?' * len(old))})", old
        )
    }
    texts, metadata = list(texts), list(metadata)
    for j, doc_id in enumerate(ids):
        if doc_id not in existing:
            continue
        text, meta = rows[existing[doc_id]]
        if texts[j] is None:
            texts[j] = text
        if metadata[j] is None:
            metadata[j] = json.loads(meta) if meta else None
    return texts, metadata


def _existing_docnos(conn: Any, ids: Sequence[str]) -> dict[str, int]:
    """id -> docno for ids that must all exist; UnknownIdError naming the missing ones otherwise."""
    found = Catalog.docnos_of(conn, ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise UnknownIdError(f"ids not in the index: {missing[:5]!r}")
    return found
