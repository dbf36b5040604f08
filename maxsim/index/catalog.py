"""The SQLite catalog of an index: user ids, texts, metadata, tombstones and live segments.

Every write of the index ends with one SQLite transaction here; that commit is the moment the
write becomes durable and visible (WAL journal, synchronous=FULL). Arrays referenced by a commit
are fully written and fsynced before it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from maxsim.index.errors import IndexCorruptedError

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs(
    docno INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT, metadata TEXT, n_tokens INTEGER NOT NULL);
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


class Catalog:
    """Thread-safe wrapper of one SQLite connection."""

    def __init__(self, path: Path, *, create: bool = False):
        self.path = path
        if not create and not path.exists():
            raise IndexCorruptedError(f"index catalog is missing: {path}")
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            # after a checkpoint, shrink the write-ahead log back to 1 MB instead of keeping it
            # at the size of the largest transaction ever written
            self._conn.execute("PRAGMA journal_size_limit=1048576")
            if create:
                self._conn.executescript(SCHEMA)
                with self.transaction() as c:
                    c.executemany("INSERT OR IGNORE INTO state(key, value) VALUES (?, ?)",
                                  [("version", 0), ("next_docno", 0), ("codec", None), ("tokens_trained", 0)])
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            raise IndexCorruptedError(f"index catalog cannot be read ({e}): {path}") from None
        if not _TABLES <= tables:
            raise IndexCorruptedError(f"index catalog lacks tables {sorted(_TABLES - tables)}: {path}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self, immediate: bool = True):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the connection lock."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            except sqlite3.DatabaseError as e:
                raise IndexCorruptedError(f"index catalog cannot be read ({e}): {self.path}") from None
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:
                if isinstance(e, sqlite3.OperationalError | sqlite3.ProgrammingError):
                    raise
                raise IndexCorruptedError(f"index catalog cannot be read ({e}): {self.path}") from None

    # ---- state -----------------------------------------------------------------------------

    def version(self) -> int:
        return int(self.query("SELECT value FROM state WHERE key='version'")[0][0])

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
    def insert_docs(conn: sqlite3.Connection, docnos: Iterable[int], ids: Sequence[str], texts: Sequence[str | None],
                    metas: Sequence[dict | None], n_tokens: Sequence[int]) -> None:
        rows = []
        kv = []
        for docno, id_, text, meta, nt in zip(docnos, ids, texts, metas, n_tokens, strict=True):
            rows.append((int(docno), id_, text, None if meta is None else json.dumps(meta, ensure_ascii=False), int(nt)))
            kv.extend(_kv_rows(int(docno), meta))
        conn.executemany("INSERT INTO docs(docno, id, text, metadata, n_tokens) VALUES (?, ?, ?, ?, ?)", rows)
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
        conn.execute("UPDATE docs SET metadata = ? WHERE docno = ?",
                     (None if meta is None else json.dumps(meta, ensure_ascii=False), int(docno)))
        conn.execute("DELETE FROM meta_kv WHERE docno = ?", (int(docno),))
        conn.executemany("INSERT OR IGNORE INTO meta_kv(key, value, docno) VALUES (?, ?, ?)", _kv_rows(int(docno), meta))

    @staticmethod
    def docnos_of(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            out.update(conn.execute(f"SELECT id, docno FROM docs WHERE id IN ({marks})", chunk).fetchall())
        return out

    def hydrate(self, docnos: Sequence[int]) -> dict[int, tuple[str, str | None, dict | None]]:
        if not docnos:
            return {}
        out = {}
        for start in range(0, len(docnos), 500):
            chunk = [int(d) for d in docnos[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for docno, id_, text, meta in self.query(
                f"SELECT docno, id, text, metadata FROM docs WHERE docno IN ({marks})", chunk
            ):
                out[docno] = (id_, text, None if meta is None else json.loads(meta))
        return out

    def filter_docnos(self, flt: dict | str) -> np.ndarray:
        """Live document numbers matching a key/value dict or an SQL WHERE clause over ``docs``."""
        if isinstance(flt, str):
            if not flt.strip():
                raise ValueError("filter: the SQL WHERE clause is empty")
            sql, params = f"SELECT docno FROM docs WHERE ({flt})", []
        elif isinstance(flt, dict):
            if not flt:
                raise ValueError("filter: the key/value filter is empty")
            parts, params = [], []
            for key, value in flt.items():
                if not isinstance(key, str):
                    raise ValueError(f"filter: keys must be strings, got {key!r}")
                values = list(value) if isinstance(value, list | tuple | set) else [value]
                if not values or not all(isinstance(v, _SCALARS) for v in values):
                    raise ValueError(f"filter: value for {key!r} must be a scalar or a non-empty list of scalars")
                parts.append(f"SELECT docno FROM meta_kv WHERE key = ? AND value IN ({','.join('?' * len(values))})")
                params += [key, *values]
            sql = " INTERSECT ".join(parts)
        else:
            raise TypeError(f"filter must be a dict of metadata key/values or an SQL WHERE string, got {type(flt).__name__}")
        try:
            rows = self.query(sql, params)
        except (sqlite3.OperationalError, sqlite3.ProgrammingError) as e:
            raise ValueError(f"invalid filter {flt!r}: {e}") from None
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))


def _kv_rows(docno: int, meta: dict | None) -> list[tuple]:
    if not meta:
        return []
    return [(k, v, docno) for k, v in meta.items() if isinstance(v, _SCALARS)]
