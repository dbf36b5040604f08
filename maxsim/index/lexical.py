"""The lexical (BM25) half of an index, derived from the catalog's texts.

The catalog is the only source of truth: the lexical index is built from the texts of the live
documents read in the same SQLite read transaction as the catalog version, and saved as
``lexical-<version>/`` (BM25 arrays + the document numbers they cover). A search uses it only
while the catalog is still at that version; after any write (add, update, delete, optimize) the
next hybrid or lexical search rebuilds it, lazily. So it can never disagree with the catalog,
whatever was killed when: a process killed while saving leaves a ``tmp-*`` directory that the
next writer removes, and an older ``lexical-*`` directory is simply stale and replaced.

Rebuilding costs one pass over the texts (about 1 s per 100k short passages); a collection that
is written between most searches pays it often, which is the price of keeping no second
transaction log.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maxsim.index import storage
from maxsim.index.catalog import Catalog
from maxsim.text.bm25 import BM25

PREFIX = "lexical-"
DOCNOS = "docnos.npy"


class LexicalView:
    """BM25 over the live documents of one catalog version; positions map to ``docnos``."""

    def __init__(self, version: int, bm25: BM25, docnos: np.ndarray):
        self.version, self.bm25, self.docnos = version, bm25, docnos

    def search(
        self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> list[list[tuple[int, float]]]:
        """(docno, BM25 score) of each query's best ``k`` matching documents, restricted to the
        sorted docnos ``allowed`` when given."""
        mask = None
        if allowed is not None:
            mask = np.isin(self.docnos, allowed).astype(np.float32)
        out = []
        for pos, scores in self.bm25.search(queries, k, mask=mask):
            out.append([(int(self.docnos[p]), float(s)) for p, s in zip(pos, scores, strict=True)])
        return out


class LexicalIndex:
    """Keeps the :class:`LexicalView` of an index directory in step with its catalog."""

    def __init__(self, root: Path, catalog: Catalog, *, persist: bool = True, language: str | None = None):
        self.root, self.catalog, self.persist, self.language = root, catalog, persist, language
        self._view: LexicalView | None = None
        self._mutex = threading.Lock()

    def current(self) -> LexicalView:
        """The view at the catalog's current version: cached, else read from disk, else built."""
        with self._mutex:
            version = self.catalog.version()
            if self._view is not None and self._view.version == version:
                return self._view
            view = self._load(version)
            if view is None:
                view = self._build()
                if self.persist:
                    self._save(view)
            self._view = view
            return view

    def _load(self, version: int) -> LexicalView | None:
        folder = self.root / f"{PREFIX}{version}"
        if not folder.is_dir():
            return None
        try:
            docnos = np.load(folder / DOCNOS, allow_pickle=False)
            bm25 = BM25.load(folder)
            if bm25.n_docs != len(docnos) or bm25.language != self.language:
                return None
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            return None
        return LexicalView(version, bm25, docnos)

    def _build(self) -> LexicalView:
        with self.catalog.transaction(immediate=False) as conn:  # version and texts from one snapshot
            version = int(conn.execute("SELECT value FROM state WHERE key='version'").fetchone()[0])
            rows = conn.execute("SELECT docno, text FROM docs ORDER BY docno").fetchall()
        docnos = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        bm25 = BM25(language=self.language).index([r[1] for r in rows])
        return LexicalView(version, bm25, docnos)

    def _save(self, view: LexicalView) -> None:
        """Write ``lexical-<version>/`` via a tmp directory and a rename; drop older versions.
        Best effort: a read-only directory or a lost race leaves the view in memory only."""
        tmp = self.root / f"tmp-{uuid.uuid4().hex}"
        try:
            view.bm25.save(tmp)
            np.save(tmp / DOCNOS, view.docnos, allow_pickle=False)
            try:
                os.rename(tmp, self.root / f"{PREFIX}{view.version}")
            except OSError:  # another process saved the same version first
                storage.remove_dir(tmp)
                return
            for old in self.root.glob(f"{PREFIX}*"):
                if old.name != f"{PREFIX}{view.version}":
                    storage.remove_dir(old)
        except OSError:
            storage.remove_dir(tmp)
