# mypy: disable-error-code="attr-defined"
# (a mixin of maxsim.index.Index: the attributes it uses are the index's own)
"""The read path of :class:`maxsim.index.Index`: search, get, and the stored vectors.

Every read runs inside one catalog read transaction (``Index._view``), so the segments, the
filter and the rows it returns all belong to one committed version, whatever writers do meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from maxsim.errors import UnknownIdError
from maxsim.index.catalog import Catalog
from maxsim.index.centroid_scores import CentroidScores
from maxsim.index.errors import IndexCorruptedError
from maxsim.index.search import SearchConfig, exact_segment, prepare_query, search_segments
from maxsim.index.snapshot import Snapshot
from maxsim.store import StoredDocument, check_ids, check_k, check_vectors, query_list
from maxsim.types import SearchHit


class Reads:
    """Mixin of :class:`maxsim.index.Index`: search_embeddings, get, get_embeddings."""

    def search_embeddings(
        self,
        queries: Sequence[np.ndarray] | np.ndarray,
        k: int = 10,
        filter: Mapping[str, Any] | str | None = None,  # noqa: A002
        config: SearchConfig | None = None,
    ) -> list[list[SearchHit]]:
        """Search with query token vectors: one hit list per query, best first (a single 2-D
        array is one query). Safe to call from many threads at once.

        ``filter`` restricts results by metadata: a mapping of key -> value (or list of values),
        or an SQL WHERE clause over the ``docs`` table (columns id, text, metadata; use
        ``json_extract(metadata, '$.key')``). ``config`` sets the search parameters.
        """
        self._check_open()
        qs = check_vectors(query_list(queries), self.dim, "queries")
        k = check_k(k)
        config = config or self.default_search_config(k)
        with self._view() as (snap, conn):  # segments, filter and rows of one version
            results: list[list[tuple[int, float]]] = [[] for _ in qs]
            if snap.codec is not None and snap.segments:
                allowed = list(snap.live)
                n_allowed = snap.n_live
                if filter is not None:
                    keep = self._catalog.filter_docnos(filter, conn)
                    allowed = [
                        (m & np.isin(s.docnos, keep)).astype(np.uint8)
                        for s, m in zip(snap.segments, allowed, strict=True)
                    ]
                    n_allowed = int(sum(int(m.sum()) for m in allowed))
                nprobe, n_cand, n_exact = config.resolved(k, snap.codec.n_centroids)
                exact = config.exact if config.exact is not None else n_allowed <= config.exact_threshold
                if filter is not None and n_allowed <= n_exact:
                    exact = True  # scoring the few matching documents exactly is cheaper than pruning
                for qi, q in enumerate(qs):
                    results[qi] = self._search_one(
                        snap,
                        q,
                        allowed,
                        k,
                        exact,
                        nprobe,
                        n_cand,
                        n_exact,
                        config.threads,
                        config.refine,
                        config.centroid_scores,
                    )
            return self._hydrate(results, conn)

    def _search_one(
        self,
        snap: Snapshot,
        q: np.ndarray,
        allowed: list[np.ndarray],
        k: int,
        exact: bool,
        nprobe: int,
        n_cand: int,
        n_exact: int,
        threads: int,
        refine: bool = True,
        centroid_scores: CentroidScores = "auto",
    ) -> list[tuple[int, float]]:
        docnos, scores = [], []
        assert snap.codec is not None and snap.lut is not None  # searched only once a codec exists
        if exact:
            for seg, mask in zip(snap.segments, allowed, strict=True):
                local, sc = exact_segment(seg, snap.codec, snap.lut, q, np.flatnonzero(mask), k, threads, refine)
                docnos.append(seg.docnos[local])
                scores.append(sc)
        else:
            pq = prepare_query(q, snap.codec, nprobe, threads, centroid_scores)
            seg_of, local, sc = search_segments(
                snap.segments, allowed, snap.codec, snap.lut, pq, k, n_cand, n_exact, threads, refine
            )
            found = np.empty(len(local), dtype=np.int64)
            for si in np.unique(seg_of):
                sel = seg_of == si
                found[sel] = snap.segments[si].docnos[local[sel]]
            docnos.append(found)
            scores.append(sc)
        if not docnos:
            return []
        d = np.concatenate(docnos)
        s = np.concatenate(scores)
        order = np.lexsort((d, -s))[:k]
        return [(int(d[i]), float(s[i])) for i in order]

    def _hydrate(self, results: list[list[tuple[int, float]]], conn: sqlite3.Connection) -> list[list[SearchHit]]:
        rows = self._catalog.hydrate(sorted({d for r in results for d, _ in r}), conn)
        out = []
        for r in results:
            hits: list[SearchHit] = []
            for docno, score in r:
                if docno not in rows:  # same version as the snapshot: a live document has its row
                    raise IndexCorruptedError(
                        f"index catalog has no row for live document {docno}: {self._catalog.path}"
                    )
                id_, text, meta = rows[docno]
                hits.append(SearchHit(id=id_, score=score, text=text, metadata=meta))
            out.append(hits)
        return out

    def get(self, ids: Sequence[str]) -> list[StoredDocument]:
        """Stored id, text and metadata of documents, in the order asked (UnknownIdError, a
        KeyError, for unknown ids)."""
        ids = check_ids(ids)
        self._check_open()
        with self._catalog.read_view() as conn:
            found = self._docnos(ids, conn)
            rows = self._catalog.hydrate([found[i] for i in ids], conn)
        return [StoredDocument(id=rows[found[i]][0], text=rows[found[i]][1], metadata=rows[found[i]][2]) for i in ids]

    def _docnos(self, ids: list[str], conn: sqlite3.Connection) -> dict[str, int]:
        out = Catalog.docnos_of(conn, ids)
        missing = [i for i in ids if i not in out]
        if missing:
            raise UnknownIdError(f"ids not in the index: {missing[:5]!r}")
        return out

    def get_embeddings(self, ids: Sequence[str]) -> list[np.ndarray]:
        """The stored (decompressed, unit-norm) token vectors of documents (from both residual
        planes in an index with a refinement plane: what exact search scores)."""
        ids = check_ids(ids)
        with self._view() as (snap, conn):
            found = self._docnos(ids, conn)
        out = {}
        want = np.array([found[i] for i in ids], dtype=np.int64)
        for seg in snap.segments:
            pos = np.searchsorted(seg.docnos, want)
            ok = (pos < seg.n_docs) & (seg.docnos[np.minimum(pos, seg.n_docs - 1)] == want)
            for i, p in zip(np.flatnonzero(ok), pos[ok], strict=True):
                out[ids[i]] = snap.decode(seg, np.array([p]), refine=True)
        return [out[i] for i in ids]
