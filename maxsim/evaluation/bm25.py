"""The BM25 baseline of ``maxsim eval``: :class:`maxsim.text.bm25.BM25` keyed by document ids.

Tokenisation (words, stemmed when the language has a Snowball stemmer; character bigrams for
scripts written without spaces) is :func:`maxsim.text.terms.tokenize`, shared with the index's
hybrid search.
"""

from __future__ import annotations

from collections.abc import Sequence

from maxsim.errors import InvalidArgumentError, MaxsimError
from maxsim.text.bm25 import BM25
from maxsim.text.terms import tokenize

__all__ = ["BM25Retriever", "tokenize"]


class BM25Retriever:
    """BM25 (Lucene variant, k1=1.2, b=0.75 unless told) over one corpus, via ``bm25s``."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, language: str | None = None) -> None:
        self.k1, self.b, self.language = k1, b, language
        self.doc_ids: list[str] = []
        self._bm25: BM25 | None = None

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        if len(doc_ids) != len(texts):
            raise InvalidArgumentError(f"{len(doc_ids)} ids for {len(texts)} texts")
        if not texts:
            raise InvalidArgumentError("cannot index an empty corpus")
        self._bm25 = BM25(self.k1, self.b, self.language).index(texts)
        self.doc_ids = list(doc_ids)

    def search(self, queries: Sequence[str], k: int = 100) -> list[dict[str, float]]:
        """For each query, {doc id: score} of its top ``k`` documents."""
        if self._bm25 is None:
            raise MaxsimError("call index() before search()")
        return [
            {self.doc_ids[int(d)]: float(s) for d, s in zip(docs, scores, strict=True)}
            for docs, scores in self._bm25.search(queries, k, matching_only=False)
        ]
