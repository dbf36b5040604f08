"""BM25 baseline with ``bm25s`` and a tokeniser that works across scripts.

Tokenisation (:func:`tokenize`):

1. NFKC normalisation and case folding.
2. Runs of letters/digits are split by script. Scripts written without spaces (Han, Hiragana,
   Katakana, Thai, Lao, Khmer, Myanmar, Tibetan) and Hangul (spaced, but its words carry
   attached particles and endings) give overlapping character bigrams (a run of one character
   gives that character); every other script gives whole words.
3. Words are stemmed with the Snowball stemmer of the collection's language when PyStemmer has
   one (English, Spanish, Russian, Arabic, ...); otherwise they are kept as they are.

Character bigrams are the usual BM25 recipe for Chinese/Japanese/Korean/Thai when no word
segmenter is available (e.g. Lucene's CJKBigramFilter, which bigrams Hangul too); they need no
dictionary and no model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: Code-point ranges of scripts written without spaces between words.
_UNSPACED = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # half-width Katakana
    (0x20000, 0x2FFFF),  # CJK extensions B+
)
_WORD = re.compile(r"[\w\u0300-\u036f\u0900-\u0dff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]+")

#: ISO 639-1 code -> Snowball stemmer name in PyStemmer.
STEMMERS = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "eu": "basque", "fa": "persian", "fi": "finnish", "fr": "french",
    "ga": "irish", "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian",
    "it": "italian", "lt": "lithuanian", "ne": "nepali", "nl": "dutch", "no": "norwegian",
    "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian",
    "sv": "swedish", "ta": "tamil", "tr": "turkish",
}


def _unspaced(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _UNSPACED)


@lru_cache(maxsize=64)
def _stemmer(language: str | None):
    name = STEMMERS.get((language or "").split("-")[0].lower())
    if name is None:
        return None
    try:
        import Stemmer
    except ImportError:  # stemming is an improvement, not a requirement
        return None
    return Stemmer.Stemmer(name)


def tokenize(text: str, language: str | None = None) -> list[str]:
    """Index terms of one text: words (stemmed when the language has a stemmer) and CJK/Thai bigrams.

    >>> tokenize("Tokyo 東京都は日本の首都", None)
    ['tokyo', '東京', '京都', '都は', 'は日', '日本', '本の', 'の首', '首都']
    >>> tokenize("Running dogs", "en")
    ['run', 'dog']
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    words: list[str] = []
    out: list[str] = []
    for match in _WORD.finditer(text):
        run = match.group(0)
        # Split the run where it changes between spaced and unspaced scripts.
        start = 0
        for i in range(1, len(run) + 1):
            if i == len(run) or _unspaced(run[i]) != _unspaced(run[start]):
                piece = run[start:i]
                if _unspaced(piece[0]):
                    if words:
                        out.extend(_stem(words, language))
                        words = []
                    out.extend([piece] if len(piece) == 1 else [piece[j : j + 2] for j in range(len(piece) - 1)])
                else:
                    words.append(piece)
                start = i
    out.extend(_stem(words, language))
    return out


def _stem(words: list[str], language: str | None) -> list[str]:
    stemmer = _stemmer(language)
    return stemmer.stemWords(words) if stemmer is not None and words else words


class BM25Retriever:
    """BM25 (Lucene variant, k1=1.2, b=0.75 unless told) over one corpus, via ``bm25s``."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, language: str | None = None) -> None:
        try:
            import bm25s
        except ImportError as exc:
            raise ImportError("the BM25 baseline needs bm25s: pip install 'maxsim[eval]'") from exc
        self._bm25s = bm25s
        self.k1, self.b, self.language = k1, b, language
        self.doc_ids: list[str] = []
        self._index = None
        self._vocab: dict[str, int] = {}

    def index(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        if len(doc_ids) != len(texts):
            raise ValueError(f"{len(doc_ids)} ids for {len(texts)} texts")
        if not texts:
            raise ValueError("cannot index an empty corpus")
        vocab: dict[str, int] = {"": 0}  # the empty term scores nothing; queries with no known term use it
        ids = [[vocab.setdefault(t, len(vocab)) for t in tokenize(text, self.language)] for text in texts]
        self._index = self._bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self._index.index(self._bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
        self._vocab = vocab
        self.doc_ids = list(doc_ids)

    def search(self, queries: Sequence[str], k: int = 100) -> list[dict[str, float]]:
        """For each query, {doc id: score} of its top ``k`` documents."""
        if self._index is None:
            raise RuntimeError("call index() before search()")
        k = min(k, len(self.doc_ids))
        q_tokens = []
        for q in queries:
            toks = [self._vocab[t] for t in tokenize(q, self.language) if t in self._vocab]
            q_tokens.append(toks or [0])
        tokenized = self._bm25s.tokenization.Tokenized(ids=q_tokens, vocab=self._vocab)
        docs, scores = self._index.retrieve(tokenized, k=k, show_progress=False, n_threads=1)
        out = []
        for row_docs, row_scores in zip(np.asarray(docs), np.asarray(scores)):
            out.append({self.doc_ids[int(d)]: float(s) for d, s in zip(row_docs, row_scores)})
        return out
