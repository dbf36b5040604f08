"""Turn texts into ColBERT inputs: markers, query expansion, document skiplists.

Conventions (ColBERT, Jina-ColBERT-v2, PyLate):
- query: ``<s> [query marker] text </s>``, truncated and then padded with the expansion
  (mask) token to exactly ``query_length`` tokens; the model attends to the expansion tokens
  when ``attend_to_expansion`` is set; every position gives a vector.
- document: ``<s> [document marker] text </s>``, truncated to ``document_length``; padding and
  skiplist (punctuation) tokens get no vector.
The marker is inserted as token ids right after the start token, so it never merges with the text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer

from maxsim.errors import InvalidArgumentError
from maxsim.text.clean import InputError


@dataclass(frozen=True)
class MarkerSettings:
    """How a checkpoint frames queries and documents. Read from the checkpoint's files."""

    query_marker_ids: tuple[int, ...]
    document_marker_ids: tuple[int, ...]
    expansion_token_id: int
    pad_token_id: int
    query_length: int = 32
    document_length: int = 8192
    attend_to_expansion: bool = True
    skiplist_ids: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.query_length < len(self.query_marker_ids) + 2:
            raise InvalidArgumentError(f"query_length {self.query_length} leaves no room for the query marker")
        if self.document_length < len(self.document_marker_ids) + 2:
            raise InvalidArgumentError(f"document_length {self.document_length} leaves no room for the document marker")


@dataclass
class TokenizedText:
    """One text as the model sees it."""

    ids: np.ndarray  # int64 [n]
    attention: np.ndarray  # bool [n]: which positions the model attends to
    keep: np.ndarray  # bool [n]: which positions give an output vector
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.ids)


def punctuation_skiplist(vocab: dict[str, int], space_marker: str = "\u2581") -> frozenset[int]:
    """Ids of pieces made only of punctuation (any script), with or without the space marker.

    Wider than ``string.punctuation``: also drops 。、「」¿ and the like, so documents in every
    language lose their punctuation rows the same way.
    """
    out = set()
    for piece, idx in vocab.items():
        core = piece.replace(space_marker, "")
        if core and all(unicodedata.category(ch).startswith("P") for ch in core):
            out.add(idx)
    return frozenset(out)


class LateInteractionTokenizer:
    """A `tokenizers.Tokenizer` plus the ColBERT framing. ``pre_normalize`` runs before it."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        settings: MarkerSettings,
        pre_normalize: Callable[[str], str] | None = None,
        strip: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.settings = settings
        self.pre_normalize = pre_normalize
        self.strip = strip
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def _raw_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self.strip:
            texts = [t.strip() for t in texts]
        if self.pre_normalize is not None:
            texts = [self.pre_normalize(t) for t in texts]
        try:
            encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        except Exception as exc:  # the Rust side names no input; we do
            raise InputError(f"the tokenizer could not read the input: {exc}") from None
        return [e.ids for e in encodings]

    def count_tokens(self, texts: Sequence[str], is_query: bool) -> list[int]:
        """Tokens each text costs as a query (always query_length) or a document (after truncation)."""
        if is_query:
            return [self.settings.query_length] * len(texts)
        return [len(t) for t in self.documents(texts)]

    def queries(self, texts: Sequence[str]) -> list[TokenizedText]:
        s = self.settings
        out = []
        for ids in self._raw_ids(texts):
            framed = _insert_marker(ids, s.query_marker_ids)
            truncated = len(framed) > s.query_length
            if truncated:  # keep the end token last
                framed = framed[: s.query_length - 1] + framed[-1:]
            n_real = len(framed)
            framed = framed + [s.expansion_token_id] * (s.query_length - n_real)
            arr = np.asarray(framed, dtype=np.int64)
            attention = np.ones(len(arr), dtype=bool)
            if not s.attend_to_expansion:
                attention[n_real:] = False
            out.append(TokenizedText(arr, attention, np.ones(len(arr), dtype=bool), truncated))
        return out

    def documents(self, texts: Sequence[str], truncate: bool = True) -> list[TokenizedText]:
        """``truncate=False`` keeps every token (for callers that window long documents)."""
        s = self.settings
        skip = np.fromiter(s.skiplist_ids, dtype=np.int64) if s.skiplist_ids else np.zeros(0, dtype=np.int64)
        out = []
        for ids in self._raw_ids(texts):
            framed = _insert_marker(ids, s.document_marker_ids)
            truncated = truncate and len(framed) > s.document_length
            if truncated:
                framed = framed[: s.document_length - 1] + framed[-1:]
            arr = np.asarray(framed, dtype=np.int64)
            keep = (arr != s.pad_token_id) & ~np.isin(arr, skip)
            out.append(TokenizedText(arr, np.ones(len(arr), dtype=bool), keep, truncated))
        return out

    def unknown_token_shares(self, texts: Sequence[str]) -> list[float]:
        """For each text, the share of its word pieces that the vocabulary does not know (0.0 to 1.0).

        Special tokens and bare space markers are not counted; a text with no pieces gives 0.0.
        A query made mostly of unknown pieces (a script the vocabulary lacks) matches on almost
        nothing but its markers.
        """
        unk = self._unknown_id()
        if unk is None or not texts:
            return [0.0] * len(texts)
        shares = []
        for ids in self._raw_ids(texts):
            pieces = [i for i in ids[1:-1] if (self.tokenizer.id_to_token(i) or "").strip("\u2581\u0120 ")]
            shares.append(sum(i == unk for i in pieces) / len(pieces) if pieces else 0.0)
        return shares

    def _unknown_id(self) -> int | None:
        name = getattr(self.tokenizer.model, "unk_token", None)
        for token in ([name] if isinstance(name, str) else []) + ["<unk>", "[UNK]"]:
            idx = self.tokenizer.token_to_id(token)
            if idx is not None:
                return int(idx)
        return None

    def tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.tokenizer.id_to_token(int(i)) or "" for i in ids]


def _insert_marker(ids: list[int], marker: tuple[int, ...]) -> list[int]:
    """``<s> text </s>`` -> ``<s> marker text </s>``."""
    return ids[:1] + list(marker) + ids[1:]
