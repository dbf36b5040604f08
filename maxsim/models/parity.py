"""Adapters for the Jina-ColBERT-v2 parity harness (``check.py`` in the shared fixture).

    python check.py --encoder maxsim.models.parity:encode --hidden maxsim.models.parity:hidden --atol 1e-5

``encode(checkpoint_dir, texts, is_query, dim)`` returns one float32 [n_tokens, dim] array per
text through the public ``maxsim.load`` / ``encode_queries`` / ``encode_documents`` path (documents
come back with PyLate's rows: padding and punctuation dropped). ``hidden(checkpoint_dir, texts,
is_query)`` returns the backbone's last hidden state at every input position. Models are loaded
once per folder, in float32.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def _model(checkpoint_dir: str):
    from maxsim.models.loading import load

    return load(checkpoint_dir, dtype="float32")


def encode(checkpoint_dir: str, texts: list[str], is_query: bool, dim: int) -> list[np.ndarray]:
    model = _model(os.path.abspath(checkpoint_dir))
    if is_query:
        return model.encode_queries(list(texts), dim=dim)
    return model.encode_documents(list(texts), dim=dim)


def hidden(checkpoint_dir: str, texts: list[str], is_query: bool) -> list[np.ndarray]:
    model = _model(os.path.abspath(checkpoint_dir))
    return model.hidden_states(list(texts), is_query)
