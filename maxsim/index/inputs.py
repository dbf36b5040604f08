"""Checks of what callers store in the index beyond vectors: texts and metadata.

Both end up in SQLite as UTF-8 text and JSON, so what SQLite or JSON cannot hold faithfully is
refused up front with an error naming the entry: NaN and infinities (not JSON; stored, they break
every SQL filter), integers beyond 64 bits (SQLite's limit) and lone surrogates (not UTF-8).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from maxsim.errors import InvalidArgumentError
from maxsim.store import check_side


def check_metadata(metadata: Any, n: int) -> list[dict | None]:
    """One JSON object (or None) per document: finite numbers only (NaN/Infinity are not JSON and
    would break every SQL filter), integers within SQLite's 64 bits, strings of valid Unicode."""
    values = check_side(metadata, n, "metadata", Mapping)
    out: list[dict | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            json.dumps(v, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError: a lone surrogate
            raise InvalidArgumentError(f"metadata[{i}]: not JSON-serialisable ({e})") from None
        for key, value in v.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"metadata[{i}]: keys must be strings, got {key!r}")
            if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < (1 << 63):
                raise InvalidArgumentError(f"metadata[{i}][{key!r}]: integer {value} is outside the 64-bit range "
                                           "that metadata filters support")
        out.append(dict(v))
    return out


def check_texts(texts: Any, n: int) -> list[str | None]:
    values = check_side(texts, n, "texts", str)
    for i, t in enumerate(values):
        if t is not None and not _is_utf8(t):
            raise InvalidArgumentError(f"texts[{i}]: not valid Unicode (contains a lone surrogate)")
    return values


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
