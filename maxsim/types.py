"""Types passed between the stages of the pipeline, defined once.

text -> tokens (TokenBatch) -> model -> token vectors (TokenVectors) -> index -> hits
"""

from __future__ import annotations

from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt

#: One text's token vectors, float32, shape [n_tokens, dim], each row L2-normalised.
TokenVectors = npt.NDArray[np.float32]

#: Output sizes every model serves (Matryoshka prefixes of the 128-wide projection).
SUPPORTED_DIMS: tuple[int, ...] = (128, 96, 64)

InputKind = Literal["query", "document"]


class RerankResult(TypedDict, total=False):
    """One ranked document: the fields of an item of Jina's /v1/rerank `results`; ``document`` is the
    text itself (over HTTP it is `{"text": ...}`)."""

    index: int
    relevance_score: float
    document: str


class SearchHit(TypedDict):
    """One search result from an index."""

    id: str
    score: float
    text: str | None
    metadata: dict | None
