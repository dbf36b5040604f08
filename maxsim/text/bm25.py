"""BM25 over a list of texts with ``bm25s`` (Lucene variant) and :func:`maxsim.text.terms.tokenize`.

Shared by the BM25 baseline of ``maxsim eval`` and the lexical half of an index's hybrid search,
which saves it next to the index (:meth:`BM25.save`, :meth:`BM25.load`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maxsim.errors import MaxsimError
from maxsim.text.terms import tokenize

_PARAMS = "maxsim-bm25.json"


def _bm25s():
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - a base dependency
        raise MaxsimError("lexical search needs bm25s: pip install bm25s") from exc
    return bm25s


class BM25:
    """BM25 (k1=1.2, b=0.75 unless told) over texts numbered 0..n-1 in the order indexed."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, language: str | None = None) -> None:
        self.k1, self.b, self.language = k1, b, language
        self.n_docs = 0
        self._index: Any = None  # a bm25s.BM25 once indexed or loaded
        self._vocab: dict[str, int] = {}

    def index(self, texts: Sequence[str | None]) -> BM25:
        """Index the texts (None counts as empty); returns self."""
        bm25s = _bm25s()
        vocab: dict[str, int] = {"": 0}  # the empty term scores nothing; queries with no known term use it
        ids = [[vocab.setdefault(t, len(vocab)) for t in tokenize(text or "", self.language)] for text in texts]
        self._index = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        if ids:
            self._index.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
        self._vocab = vocab
        self.n_docs = len(ids)
        return self

    def search(
        self, queries: Sequence[str], k: int, mask: np.ndarray | None = None, matching_only: bool = True
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, (positions int64, scores float32) of its best ``k`` texts, best first:
        only texts sharing a term with it (score above zero) unless not ``matching_only``.
        ``mask`` (one 0/1 per text) keeps only the texts it marks."""
        if self._index is None:
            raise MaxsimError("call index() before search()")
        if self.n_docs == 0:
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in queries]
        k = min(k, self.n_docs)
        q_tokens = []
        for q in queries:
            toks = [self._vocab[t] for t in tokenize(q, self.language) if t in self._vocab]
            q_tokens.append(toks or [0])
        tokenized = _bm25s().tokenization.Tokenized(ids=q_tokens, vocab=self._vocab)
        weights = None if mask is None else np.asarray(mask, dtype=np.float32)
        docs, scores = self._index.retrieve(tokenized, k=k, show_progress=False, n_threads=1, weight_mask=weights)
        out = []
        for row_docs, row_scores in zip(np.asarray(docs), np.asarray(scores), strict=True):
            keep = row_scores > 0 if matching_only else np.ones(len(row_scores), bool)
            out.append((row_docs[keep].astype(np.int64), row_scores[keep].astype(np.float32)))
        return out

    def save(self, folder: str | os.PathLike) -> None:
        """Write the index into ``folder`` (bm25s' arrays and vocabulary, plus our settings)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.n_docs:
            self._index.save(str(folder), show_progress=False)
        params = {"k1": self.k1, "b": self.b, "language": self.language, "n_docs": self.n_docs}
        (folder / _PARAMS).write_text(json.dumps(params, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BM25:
        """Read an index written by :meth:`save` (arrays memory-mapped)."""
        folder = Path(folder)
        params = json.loads((folder / _PARAMS).read_text(encoding="utf-8"))
        out = cls(params["k1"], params["b"], params["language"])
        out.n_docs = int(params["n_docs"])
        out._vocab = {"": 0}
        if out.n_docs:  # bm25s keeps our term -> id vocabulary (it was indexed from ids)
            out._index = _bm25s().BM25.load(str(folder), mmap=True, load_vocab=True, show_progress=False)
            out._vocab = out._index.vocab_dict
        else:
            out._index = _bm25s().BM25(k1=out.k1, b=out.b, method="lucene")
        return out
