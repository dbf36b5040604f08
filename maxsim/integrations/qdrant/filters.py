"""Metadata filters: a small engine-neutral form, translated to Qdrant conditions per engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from maxsim.errors import InvalidArgumentError, InvalidTypeError


@dataclass(frozen=True)
class Condition:
    key: str  # full payload path, e.g. "metadata.lang"
    kind: Literal["value", "any", "range", "and"]
    value: Any


def parse_filter(spec: Mapping[str, Any] | None) -> list[Condition]:
    """Turn a metadata filter into conditions that must all hold.

    ``{"lang": "en"}`` matches a value (str, int or bool); ``{"lang": ["en", "fr"]}`` any of
    them; ``{"year": {"gte": 2000, "lt": 2010}}`` a range (keys gt, gte, lt, lte). Keys are
    metadata fields (dots reach nested fields).
    """
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise InvalidTypeError(f"filter must be a mapping of metadata key -> condition; got {type(spec).__name__}")
    if not spec:
        raise InvalidArgumentError("filter: the mapping is empty (pass None for no filter)")
    out = []
    for key, cond in spec.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"filter keys must be non-empty strings; got {key!r}")
        path = f"metadata.{key}"
        if isinstance(cond, Mapping):
            bad = set(cond) - {"gt", "gte", "lt", "lte"}
            if bad or not cond:
                raise InvalidArgumentError(f"filter range for {key!r} takes keys gt, gte, lt, lte; got {sorted(cond)}")
            for bound, v in cond.items():
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise InvalidArgumentError(f"filter range bound {key}.{bound} must be a number; got {v!r}")
            out.append(Condition(path, "range", {k: float(v) for k, v in cond.items()}))
        elif isinstance(cond, list | tuple):
            if not cond or not (all(isinstance(v, str) for v in cond) or all(_is_int(v) for v in cond)):
                raise InvalidArgumentError(
                    f"filter list for {key!r} must be a non-empty list of all strings or all ints"
                )
            out.append(Condition(path, "any", list(cond)))
        elif isinstance(cond, str | bool) or _is_int(cond):
            out.append(Condition(path, "value", cond))
        else:
            raise InvalidArgumentError(
                f"filter value for {key!r} must be a str, int, bool, list or range mapping; got {cond!r} "
                "(match floats with a range)"
            )
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def delete_conditions(doc_ids: list[str], min_part: Mapping[str, int] | None) -> list[Condition]:
    """Conditions, any of which selects points to delete: every part of ``doc_ids``, or with
    ``min_part``, only the parts numbered ``>= min_part[doc_id]`` (stale parts after a re-add)."""
    if min_part is None:
        return [Condition("doc_id", "any", list(doc_ids))]
    return [
        Condition(
            "and",
            "and",
            [Condition("doc_id", "value", d), Condition("part", "range", {"gte": float(min_part[d])})],
        )
        for d in doc_ids
    ]
