"""Index terms for lexical (BM25) search, in every script: :func:`tokenize`.

Used by the BM25 baseline of ``maxsim eval`` and by the lexical half of an index's hybrid search.

Steps:

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
from functools import lru_cache

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
    "ar": "arabic",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "eu": "basque",
    "fa": "persian",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "nl": "dutch",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
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
