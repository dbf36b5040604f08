"""Document records ``{"id", "text", "metadata"}`` read from JSONL, for every command that takes documents."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, TextIO

from maxsim.errors import MaxsimError

DOCUMENT_KEYS = frozenset({"id", "text", "metadata"})


class DocumentFileError(MaxsimError, ValueError):
    """A JSONL line that is not a valid document record; the message names the line."""


def content_id(text: str) -> str:
    """An id derived from the text, so that adding the same file twice changes nothing."""
    return "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def read_documents(stream: TextIO, source: str = "<input>", *, content_ids: bool = False) -> Iterator[dict[str, Any]]:
    """Yield ``{"id", "text", "metadata"}`` per non-blank line.

    ``id`` is optional: ``None`` when absent, or ``content_id(text)`` with ``content_ids=True``.
    Any problem raises DocumentFileError naming ``source:line``.
    """
    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DocumentFileError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DocumentFileError(f"{where}: each line must be a JSON object")
        unknown = set(obj) - DOCUMENT_KEYS
        if unknown:
            raise DocumentFileError(f"{where}: unknown keys {sorted(unknown)}; expected id, text, metadata")
        if "id" in obj and (not isinstance(obj["id"], str) or not obj["id"]):
            raise DocumentFileError(f"{where}: 'id' must be a non-empty string")
        if not isinstance(obj.get("text"), str):
            raise DocumentFileError(f"{where}: 'text' must be a string")
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise DocumentFileError(f"{where}: 'metadata' must be an object")
        doc_id = obj.get("id") or (content_id(obj["text"]) if content_ids else None)
        yield {"id": doc_id, "text": obj["text"], "metadata": meta}
