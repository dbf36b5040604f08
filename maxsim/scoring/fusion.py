"""Fusing ranked lists from different retrievers (lexical BM25 and late interaction).

Two rules, both over each query's top lists only:

- :func:`score_fusion`: each list's scores min-max normalised to [0, 1] (a document missing
  from a list gets 0 from it), then a weighted sum;
- :func:`rank_fusion`: reciprocal rank fusion, sum of ``weight / (c + rank)`` (Cormack et al.
  2009, c = 60).

Which one the index uses (:data:`DEFAULT_FUSION`, :data:`DEFAULT_LEXICAL_WEIGHT`) was chosen by
``maxsim eval``'s hybrid rows on the shared dev collections (docs/evaluation.md).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from maxsim.errors import InvalidArgumentError

K = TypeVar("K", bound=Hashable)

#: "score" (normalised score fusion) or "rank" (reciprocal rank fusion).
DEFAULT_FUSION = "score"
#: Weight of the lexical list; the late-interaction list gets 1 - this.
#: 0.1: on the 16 shared dev collections (200 queries / 200 documents each) it averages 95.05
#: nDCG@10 against 94.56 (late interaction) and 87.87 (BM25), and no collection falls more than
#: 0.31 below the better of the two; 0.2 averaged 95.06 but lost 1.65 on TyDi Bengali
#: (docs/evaluation.md).
DEFAULT_LEXICAL_WEIGHT = 0.1
#: Reciprocal rank fusion's constant.
RRF_C = 60
FUSIONS = ("score", "rank")


def score_fusion(lists: Sequence[Mapping[K, float]], weights: Sequence[float]) -> dict[K, float]:
    """Weighted sum of min-max-normalised scores; documents absent from a list get 0 from it."""
    out: dict[K, float] = {}
    for scores, w in zip(lists, weights, strict=True):
        if not scores or w == 0:
            continue
        lo, hi = min(scores.values()), max(scores.values())
        span = hi - lo
        for key, s in scores.items():
            out[key] = out.get(key, 0.0) + w * ((s - lo) / span if span > 0 else 1.0)
    return out


def rank_fusion(lists: Sequence[Mapping[K, float]], weights: Sequence[float], c: int = RRF_C) -> dict[K, float]:
    """Weighted reciprocal rank fusion: sum over lists of weight / (c + rank), rank from 1."""
    out: dict[K, float] = {}
    for scores, w in zip(lists, weights, strict=True):
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        for rank, (key, _) in enumerate(ranked, 1):
            out[key] = out.get(key, 0.0) + w / (c + rank)
    return out


def fuse(
    lexical: Mapping[K, float],
    late: Mapping[K, float],
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
    method: str = DEFAULT_FUSION,
) -> list[tuple[K, float]]:
    """One fused list, best first (ties by key), from a lexical and a late-interaction list.

    >>> fuse({"a": 9.0, "b": 1.0}, {"b": 20.0, "c": 18.0}, 0.5)
    [('a', 0.5), ('b', 0.5), ('c', 0.0)]
    """
    if not 0.0 <= lexical_weight <= 1.0:
        raise InvalidArgumentError(f"the lexical weight must be in [0, 1], got {lexical_weight!r}")
    weights = (lexical_weight, 1.0 - lexical_weight)
    if method == "score":
        fused = score_fusion((lexical, late), weights)
    elif method == "rank":
        fused = rank_fusion((lexical, late), weights)
    else:
        raise InvalidArgumentError(f"unknown fusion {method!r}; choose from {', '.join(FUSIONS)}")
    return sorted(fused.items(), key=lambda kv: (-kv[1], str(kv[0])))
