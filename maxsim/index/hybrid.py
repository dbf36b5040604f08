# mypy: disable-error-code="attr-defined"
# (a mixin of maxsim.index.Index: the attributes it uses are the index's own)
"""Hybrid search: BM25 over the stored texts fused with late-interaction search.

``index.search(queries, k, hybrid=True)`` runs both retrievers to :data:`HYBRID_DEPTH` documents,
fuses the two lists (:mod:`maxsim.scoring.fusion`; normalised score fusion with lexical weight
0.1 by default, chosen by ``maxsim eval``'s hybrid rows) and returns the top ``k`` with the
fused score. ``hybrid=0.5`` sets the lexical weight (0: late interaction only, 1: BM25 only).
The lexical half is derived from the catalog (:mod:`maxsim.index.lexical`), so updates and
deletes reach it with no extra step. Documents stored without a text can only be found by their
vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from maxsim.errors import InvalidArgumentError
from maxsim.index.errors import IndexLockedError
from maxsim.index.lexical import LexicalIndex
from maxsim.scoring.fusion import DEFAULT_FUSION, DEFAULT_LEXICAL_WEIGHT, fuse
from maxsim.store import check_k, check_texts
from maxsim.types import SearchHit

#: Documents taken from each retriever before fusion (the depth the fusion was measured at).
HYBRID_DEPTH = 100


def lexical_weight(hybrid: Any) -> float | None:
    """The lexical weight that ``hybrid`` asks for (None: no hybrid search)."""
    if hybrid is None or hybrid is False:
        return None
    if hybrid is True:
        return DEFAULT_LEXICAL_WEIGHT
    if isinstance(hybrid, int | float) and 0.0 <= float(hybrid) <= 1.0:
        return float(hybrid)
    raise InvalidArgumentError(f"hybrid must be true/false or a lexical weight in [0, 1], got {hybrid!r}")


class HybridSearch:
    """Mixin of :class:`maxsim.index.Index`: ``search(..., hybrid=...)`` and :meth:`search_lexical`."""

    _lexical_index: LexicalIndex | None = None

    def _lexical(self) -> LexicalIndex:
        if self._lexical_index is None:
            self._check_open()
            self._lexical_index = LexicalIndex(
                self.path,
                self._catalog,
                persist=not self.readonly,
            )
        return self._lexical_index

    def search_lexical(
        self, queries: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | str | None = None
    ) -> list[list[SearchHit]]:  # noqa: A002
        """BM25 over the stored texts: one hit list per query (documents sharing a term with it)."""
        texts = check_texts([queries] if isinstance(queries, str) else queries, "queries")
        k = check_k(k)
        for _ in range(5):  # the BM25 view, the filter and the rows must be of one catalog version
            view = self._lexical().current()
            with self._view() as (snap, conn):
                if snap.version != view.version:
                    continue  # a write landed between the two reads: take both again
                allowed = None if filter is None else self._catalog.filter_docnos(filter, conn)
                return self._hydrate(view.search(texts, k, allowed), conn)
        raise IndexLockedError("search_lexical: the index kept changing under the search; retry")

    def search(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        filter: Mapping[str, Any] | None = None,  # noqa: A002
        hybrid: bool | float | None = None,
        **options: Any,
    ) -> list[list[SearchHit]]:
        """Encode the queries and search: one hit list per query. ``hybrid=True`` (or a lexical
        weight in [0, 1]) fuses BM25 over the stored texts with late interaction."""
        if lexical_weight(hybrid) is None:
            return super().search(queries, k=k, filter=filter, **options)  # type: ignore[misc]
        texts = check_texts([queries] if isinstance(queries, str) else queries, "queries")
        vectors = self._encoder().encode_queries(texts, dim=self.dim)
        return self.search_hybrid_embeddings(
            vectors, texts, k=k, filter=filter, hybrid=True if hybrid is None else hybrid, **options
        )

    def search_hybrid_embeddings(
        self,
        queries: Sequence[Any],
        texts: Sequence[str],
        k: int = 10,
        filter: Mapping[str, Any] | str | None = None,  # noqa: A002
        hybrid: bool | float = True,
        **options: Any,
    ) -> list[list[SearchHit]]:
        """Hybrid search given each query's token vectors and its text (for BM25): one fused hit
        list per query. ``hybrid``: True (default lexical weight) or the lexical weight."""
        weight = lexical_weight(hybrid)
        if weight is None:
            raise InvalidArgumentError("search_hybrid_embeddings: hybrid must be true or a lexical weight")
        texts = check_texts(list(texts), "queries")
        k = check_k(k)
        depth = max(k, HYBRID_DEPTH)
        late = self.search_embeddings(queries, k=depth, filter=filter, **options)
        if len(late) != len(texts):
            raise InvalidArgumentError(f"search_hybrid_embeddings: {len(late)} queries for {len(texts)} texts")
        lexical = self.search_lexical(texts, k=depth, filter=filter)
        out = []
        for late_hits, lex_hits in zip(late, lexical, strict=True):
            by_id = {h["id"]: h for h in [*lex_hits, *late_hits]}
            fused = fuse(
                {h["id"]: h["score"] for h in lex_hits},
                {h["id"]: h["score"] for h in late_hits},
                weight,
                DEFAULT_FUSION,
            )
            out.append(
                [SearchHit(id=i, score=s, text=by_id[i]["text"], metadata=by_id[i]["metadata"]) for i, s in fused[:k]]
            )
        return out
