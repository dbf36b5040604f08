"""The dense baseline: the late-interaction model's own backbone, mean-pooled, E5 style.

Inputs are ``"query: " + text`` and ``"passage: " + text`` tokenised by the backbone's plain
tokenizer (no ColBERT markers, no query expansion), truncated to the backbone's positions; the
vector is the attention-masked mean of the last hidden state, L2-normalised; the score is the dot
product. For multilingual-e5-small this is the model's documented use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maxsim.text.clean import validate_texts
from maxsim.tokens.late_interaction import TokenizedText

QUERY_PREFIX = "query: "
DOCUMENT_PREFIX = "passage: "


def dense_items(model, texts: Sequence[str], prefix: str) -> list[TokenizedText]:
    """``prefix + text`` as the backbone's tokenizer frames it (``<s> ... </s>``), cut to fit."""
    tok = model.tokenizer
    texts = validate_texts(texts)
    if tok.strip:
        texts = [t.strip() for t in texts]
    full = [prefix + t for t in texts]
    if tok.pre_normalize is not None:
        full = [tok.pre_normalize(t) for t in full]
    limit = int(model.max_positions)
    out = []
    for enc in tok.tokenizer.encode_batch(full, add_special_tokens=True):
        ids = list(enc.ids)
        if len(ids) > limit:
            ids = ids[: limit - 1] + ids[-1:]
        arr = np.asarray(ids, dtype=np.int64)
        out.append(TokenizedText(arr, np.ones(len(arr), bool), np.ones(len(arr), bool), len(enc.ids) > limit))
    return out


def dense_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """[n_queries, n_docs] dot products of L2-normalised vectors."""
    return queries @ documents.T
