"""The SQLite catalog of an index: user ids, texts, metadata, tombstones and live segments.

Every write of the index ends with one SQLite transaction here; that commit is the moment the
write becomes durable and visible (WAL journal, synchronous=FULL). Arrays referenced by a commit
are fully written and fsynced before it.

Reads that must agree with each other (a search's snapshot, its filter and its hydration) run in
one read transaction, :meth:`Catalog.read_view`, on a connection of their own from a small pool:
in WAL mode such a transaction sees the catalog as of one commit however many commits follow,
and it neither blocks the writer nor the other readers.

Each ``docs`` row carries a CRC-32 of its values (column ``crc``, :func:`row_crc`), checked when
rows are read back and by ``verify()``, because SQLite has no page checksums: a flipped bit in a
stored id or metadata value would otherwise come back as a different id or value. Catalogs
written before the column existed gain it (NULL, then back-filled) when a writer opens them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from maxsim.errors import InvalidArgumentError, InvalidTypeError
from maxsim.index import faults
from maxsim.index.errors import IndexCorruptedError

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs(
    docno INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT, metadata TEXT, n_tokens INTEGER NOT NULL,
    crc INTEGER);
CREATE TABLE IF NOT EXISTS meta_kv(
    key TEXT NOT NULL, value, docno INTEGER NOT NULL, PRIMARY KEY(key, value, docno)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS meta_kv_docno ON meta_kv(docno);
CREATE TABLE IF NOT EXISTS tombstones(docno INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS segments(name TEXT PRIMARY KEY, codec TEXT NOT NULL, n_docs INTEGER NOT NULL,
    n_tokens INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state(key TEXT PRIMARY KEY, value);
"""
_TABLES = {"docs", "meta_kv", "tombstones", "segments", "state"}
_SCALARS = (str, int, float, bool)
#: Idle read connections kept open per catalog (more are opened when more threads read at once).
READER_POOL = 4


def row_crc(docno: int, id_: str, text: str | None, metadata: str | None, n_tokens: int) -> int:
    """CRC-32 of one ``docs`` row as stored (metadata is its JSON text)."""
    return zlib.crc32(
        json.dumps([docno, id_, text, metadata, n_tokens], ensure_ascii=False).encode("utf-8", "surrogatepass")
    )


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.create_function("maxsim_row_crc", 5, row_crc, deterministic=True)
    return conn


class Catalog:
    """Thread-safe wrapper of one SQLite connection."""

    def __init__(self, path: Path, *, create: bool = False):
        self.path = path
        if not create and not path.exists():
            raise IndexCorruptedError(f"index catalog is missing: {path}")
        self._lock = threading.RLock()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self._conn = _connect(path)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            # after a checkpoint, shrink the write-ahead log back to 1 MB instead of keeping it
            # at the size of the largest transaction ever written
            self._conn.execute("PRAGMA journal_size_limit=1048576")
            if create:
                self._conn.executescript(SCHEMA)
                with self.transaction() as c:
                    c.executemany(
                        "INSERT OR IGNORE INTO state(key, value) VALUES (?, ?)",
                        [("version", 0), ("next_docno", 0), ("codec", None), ("tokens_trained", 0)],
                    )
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(docs)")}
        except sqlite3.DatabaseError as e:
            if hasattr(self, "_conn"):
                self._conn.close()
            mapped = faults.sqlite_error(e, path)  # a full disk is not a damaged catalog
            if isinstance(mapped, IndexCorruptedError) or mapped is e:
                raise IndexCorruptedError(f"index catalog cannot be read ({e}): {path}") from None
            raise mapped from None
        if not _TABLES <= tables:
            self._conn.close()
            raise IndexCorruptedError(f"index catalog lacks tables {sorted(_TABLES - tables)}: {path}")
        self.has_checksums = "crc" in columns

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._conn.close()

    def add_checksums(self) -> None:
        """Give a catalog written before row checksums existed its ``crc`` column, filled in (writer only)."""
        if self.has_checksums:
            return
        with self.transaction() as conn:
            if "crc" not in {r[1] for r in conn.execute("PRAGMA table_info(docs)")}:
                conn.execute("ALTER TABLE docs ADD COLUMN crc INTEGER")
            conn.execute("UPDATE docs SET crc = maxsim_row_crc(docno, id, text, metadata, n_tokens) WHERE crc IS NULL")
        self.has_checksums = True

    @contextmanager
    def transaction(self, immediate: bool = True):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the connection lock.

        SQLite errors leave as the index error naming their cause (DiskFullError, ...); when SQLite
        has already rolled back by itself (as it does on a full disk) nothing more is rolled back,
        so the real cause is what the caller sees."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except sqlite3.Error as e:
                raise faults.sqlite_error(e, self.path) from e
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as e:
                if self._conn.in_transaction:
                    try:
                        self._conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the error being raised is the one that explains what happened
                if isinstance(e, sqlite3.Error):
                    mapped = faults.sqlite_error(e, self.path)
                    if mapped is not e:
                        raise mapped from e
                raise

    @contextmanager
    def read_view(self):
        """A read transaction on a pooled connection of its own: every read through the yielded
        connection sees the catalog as of one commit (see the module docstring)."""
        with self._lock:
            if self._closed:
                raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
            conn = self._readers.pop() if self._readers else None
        try:
            if conn is None:
                conn = _connect(self.path)
                conn.execute("PRAGMA query_only=1")
            conn.execute("BEGIN")
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise faults.sqlite_error(e, self.path) from e
        try:
            yield conn
        finally:
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")  # read-only: ending the transaction releases its snapshot
                keep = True
            except sqlite3.Error:
                keep = False
            with self._lock:
                if keep and not self._closed and len(self._readers) < READER_POOL:
                    self._readers.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                mapped = faults.sqlite_error(e, self.path)
                if mapped is e:
                    raise
                raise mapped from None

    # ---- state -----------------------------------------------------------------------------

    def version(self) -> int:
        return int(self.query("SELECT value FROM state WHERE key='version'")[0][0])

    @staticmethod
    def version_in(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM state WHERE key='version'").fetchone()[0])

    @staticmethod
    def get_state(conn: sqlite3.Connection) -> dict:
        return dict(conn.execute("SELECT key, value FROM state").fetchall())

    @staticmethod
    def set_state(conn: sqlite3.Connection, **values) -> None:
        conn.executemany("INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", list(values.items()))

    @staticmethod
    def bump_version(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE state SET value = value + 1 WHERE key='version'")

    # ---- documents -------------------------------------------------------------------------

    @staticmethod
    def insert_docs(
        conn: sqlite3.Connection,
        docnos: Iterable[int],
        ids: Sequence[str],
        texts: Sequence[str | None],
        metas: Sequence[dict | None],
        n_tokens: Sequence[int],
    ) -> None:
        rows = []
        kv = []
        for docno, id_, text, meta, nt in zip(docnos, ids, texts, metas, n_tokens, strict=True):
            meta_json = None if meta is None else json.dumps(meta, ensure_ascii=False)
            rows.append((int(docno), id_, text, meta_json, int(nt), row_crc(int(docno), id_, text, meta_json, int(nt))))
            kv.extend(_kv_rows(int(docno), meta))
        conn.executemany("INSERT INTO docs(docno, id, text, metadata, n_tokens, crc) VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT OR IGNORE INTO meta_kv(key, value, docno) VALUES (?, ?, ?)", kv)

    @staticmethod
    def delete_docs(conn: sqlite3.Connection, docnos: Sequence[int], *, tombstone: bool = True) -> None:
        params = [(int(d),) for d in docnos]
        conn.executemany("DELETE FROM docs WHERE docno = ?", params)
        conn.executemany("DELETE FROM meta_kv WHERE docno = ?", params)
        if tombstone:
            conn.executemany("INSERT OR IGNORE INTO tombstones(docno) VALUES (?)", params)

    @staticmethod
    def set_metadata(conn: sqlite3.Connection, docno: int, meta: dict | None) -> None:
        meta_json = None if meta is None else json.dumps(meta, ensure_ascii=False)
        conn.execute(
            "UPDATE docs SET metadata = ?1, crc = maxsim_row_crc(docno, id, text, ?1, n_tokens) WHERE docno = ?2",
            (meta_json, int(docno)),
        )
        conn.execute("DELETE FROM meta_kv WHERE docno = ?", (int(docno),))
        conn.executemany(
            "INSERT OR IGNORE INTO meta_kv(key, value, docno) VALUES (?, ?, ?)", _kv_rows(int(docno), meta)
        )

    @staticmethod
    def docnos_of(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            out.update(conn.execute(f"SELECT id, docno FROM docs WHERE id IN ({marks})", chunk).fetchall())
        return out

    def hydrate(
        self, docnos: Sequence[int], conn: sqlite3.Connection | None = None
    ) -> dict[int, tuple[str, str | None, dict | None]]:
        """docno -> (id, text, metadata) of the documents among ``docnos`` (read through ``conn``,
        a :meth:`read_view`, when given); each row is checked against its checksum."""
        if not docnos:
            return {}
        crc = "crc" if self.has_checksums else "NULL"
        out = {}
        for start in range(0, len(docnos), 500):
            chunk = [int(d) for d in docnos[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT docno, id, text, metadata, n_tokens, {crc} FROM docs WHERE docno IN ({marks})"
            for docno, id_, text, meta, n_tokens, stored in self._read(conn, sql, chunk):
                if stored is not None and row_crc(docno, id_, text, meta, n_tokens) != stored:
                    raise IndexCorruptedError(
                        f"index catalog row of document {docno} (id {id_!r}) does not match its checksum: {self.path}"
                    )
                try:
                    out[docno] = (id_, text, None if meta is None else json.loads(meta))
                except (TypeError, ValueError) as e:
                    raise IndexCorruptedError(
                        f"index catalog holds invalid metadata for document {docno} ({e}): {self.path}"
                    ) from None
        return out

    def _read(self, conn: sqlite3.Connection | None, sql: str, params: Sequence = ()) -> list[tuple]:
        if conn is None:
            return self.query(sql, params)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            mapped = faults.sqlite_error(e, self.path)
            if mapped is e:
                raise
            raise mapped from None

    def check_rows(self) -> None:
        """Check every ``docs`` row against its checksum and ``meta_kv`` against the metadata it is
        derived from; IndexCorruptedError naming the first damaged row."""
        if self.has_checksums:
            bad = self.query(
                "SELECT docno, id FROM docs WHERE crc IS NULL "
                "OR crc != maxsim_row_crc(docno, id, text, metadata, n_tokens) LIMIT 3"
            )
            if bad:
                raise IndexCorruptedError(
                    f"index catalog rows do not match their checksums (docno, id): {bad}: {self.path}"
                )
        want: set[tuple] = set()
        for docno, meta in self.query("SELECT docno, metadata FROM docs"):
            try:
                want.update(_kv_rows(docno, None if meta is None else json.loads(meta)))
            except (TypeError, ValueError) as e:
                raise IndexCorruptedError(
                    f"index catalog holds invalid metadata for document {docno} ({e}): {self.path}"
                ) from None
        have = set(self.query("SELECT key, value, docno FROM meta_kv"))
        if want != have:
            diff = sorted(want ^ have, key=repr)[:3]
            raise IndexCorruptedError(
                f"index catalog's metadata lookup table disagrees with the metadata {diff}: {self.path}"
            )

    def filter_docnos(self, flt: Mapping[str, Any] | str, conn: sqlite3.Connection | None = None) -> np.ndarray:
        """Live document numbers matching a key/value dict or an SQL WHERE clause over ``docs``
        (read through ``conn``, a :meth:`read_view`, when given)."""
        if isinstance(flt, str):
            if not flt.strip():
                raise InvalidArgumentError("filter: the SQL WHERE clause is empty")
            sql, params = f"SELECT docno FROM docs WHERE ({flt})", list[Any]()
        elif isinstance(flt, Mapping):
            if not flt:
                raise InvalidArgumentError("filter: the key/value filter is empty")
            parts, params = [], []
            for key, value in flt.items():
                if not isinstance(key, str):
                    raise InvalidArgumentError(f"filter: keys must be strings, got {key!r}")
                values = list(value) if isinstance(value, list | tuple | set) else [value]
                if not values or not all(isinstance(v, _SCALARS) for v in values):
                    raise InvalidArgumentError(
                        f"filter: value for {key!r} must be a scalar or a non-empty list of scalars"
                    )
                parts.append(f"SELECT docno FROM meta_kv WHERE key = ? AND value IN ({','.join('?' * len(values))})")
                params += [key, *values]
            sql = " INTERSECT ".join(parts)
        else:
            raise InvalidTypeError(
                f"filter must be a dict of metadata key/values or an SQL WHERE string, got {type(flt).__name__}"
            )
        try:
            rows = self._read(conn, sql, params)
        except (sqlite3.OperationalError, sqlite3.ProgrammingError, OverflowError, UnicodeEncodeError) as e:
            raise InvalidArgumentError(f"invalid filter {flt!r}: {e}") from None
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def _kv_rows(docno: int, meta: dict | None) -> list[tuple]:
    if not meta:
        return []
    return [(k, v, docno) for k, v in meta.items() if isinstance(v, _SCALARS)]
