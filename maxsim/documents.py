"""Document records ``{"id", "text", "metadata"}`` read from JSONL, for every command that takes documents.

Two line shapes are read: maxsim's own ``{"id", "text", "metadata"}`` and a BEIR ``corpus.jsonl``
row ``{"_id", "title", "text", "metadata"}``, whose title is put before the text (``"title text"``,
as ``maxsim eval`` reads BEIR collections) so that a BEIR corpus can be indexed as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, TextIO

from maxsim.errors import MaxsimError

DOCUMENT_KEYS = frozenset({"id", "text", "metadata"})
BEIR_KEYS = frozenset({"_id", "title", "text", "metadata"})


class DocumentFileError(MaxsimError, ValueError):
    """A JSONL line that is not a valid document record; the message names the line."""


def content_id(text: str) -> str:
    """An id derived from the text, so that adding the same file twice changes nothing."""
    return "sha1:" + hashlib.sha1(text.encode("utf-8")).hexdigest()


def read_documents(
    stream: TextIO, source: str = "<input>", *, content_ids: bool = False, line_numbers: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield ``{"id", "text", "metadata"}`` per non-blank line (and ``"line"``, its number, with ``line_numbers``).

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
        if "_id" in obj:  # a BEIR corpus row
            unknown = set(obj) - BEIR_KEYS
            if unknown:
                raise DocumentFileError(
                    f"{where}: unknown keys {sorted(unknown)} in a BEIR row; expected _id, title, text, metadata"
                )
            if isinstance(obj["_id"], int) and not isinstance(obj["_id"], bool):
                obj["_id"] = str(obj["_id"])
            if not isinstance(obj["_id"], str) or not obj["_id"]:
                raise DocumentFileError(f"{where}: '_id' must be a non-empty string")
            title = obj.get("title")
            if title is not None and not isinstance(title, str):
                raise DocumentFileError(f"{where}: 'title' must be a string")
            if not isinstance(obj.get("text"), str):
                raise DocumentFileError(f"{where}: 'text' must be a string")
            obj["id"] = obj.pop("_id")
            title = (title or "").strip()
            obj["text"] = f"{title} {obj['text']}" if title else obj["text"]
            obj.pop("title", None)
        unknown = set(obj) - DOCUMENT_KEYS
        if unknown:
            raise DocumentFileError(
                f"{where}: unknown keys {sorted(unknown)}; expected id, text, metadata "
                "(or a BEIR row: _id, title, text)"
            )
        if "id" in obj and (not isinstance(obj["id"], str) or not obj["id"]):
            raise DocumentFileError(f"{where}: 'id' must be a non-empty string")
        if not isinstance(obj.get("text"), str):
            raise DocumentFileError(f"{where}: 'text' must be a string")
        meta = obj.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise DocumentFileError(f"{where}: 'metadata' must be an object")
        doc_id = obj.get("id") or (content_id(obj["text"]) if content_ids else None)
        doc = {"id": doc_id, "text": obj["text"], "metadata": meta}
        if line_numbers:
            doc["line"] = lineno
        yield doc
