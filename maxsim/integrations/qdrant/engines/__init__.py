"""Engines that hold a collection, chosen by the ``location`` string: qdrant-client (memory, a
directory, a server URL) or Qdrant Edge (``edge:<dir>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maxsim.errors import InvalidArgumentError
from maxsim.integrations.qdrant.engines.base import Engine, Hit, Point, import_client
from maxsim.integrations.qdrant.engines.client import ClientEngine
from maxsim.integrations.qdrant.engines.edge import EdgeEngine
from maxsim.integrations.qdrant.retry import RetryPolicy


def open_engine(
    location: str | Path | Any, collection: str, api_key: str | None, timeout: int | None, retry: RetryPolicy
) -> Engine:
    """The engine for ``location``: ``":memory:"``, a directory, ``"edge:<dir>"``, an http(s) URL,
    or a ``QdrantClient`` of the caller's."""
    if isinstance(location, Path):
        location = str(location)
    if isinstance(location, str) and location.startswith("edge:"):
        path = location[len("edge:") :]
        if not path:
            raise InvalidArgumentError("an Edge location needs a directory: 'edge:/path/to/dir'")
        return EdgeEngine(Path(path), collection)
    qdrant_client = import_client()
    if isinstance(location, qdrant_client.QdrantClient):
        opts = location.init_options
        remote = (
            opts.get("url") is not None
            or opts.get("host") is not None
            or str(opts.get("location") or "").startswith(("http://", "https://"))
        )
        where = str(opts.get("url") or opts.get("host") or opts.get("location") or "")
        return ClientEngine(location, collection, retry, remote=remote, where=where)
    if not isinstance(location, str) or not location:
        raise InvalidArgumentError(
            "location must be ':memory:', a directory path, 'edge:<dir>', an http(s):// URL or a QdrantClient; "
            f"got {location!r}"
        )
    if location.startswith(("http://", "https://")):
        client = qdrant_client.QdrantClient(url=location, api_key=api_key, timeout=timeout)
        return ClientEngine(client, collection, retry, remote=True, where=location)
    if api_key is not None:
        raise InvalidArgumentError(f"api_key is only for a server URL (http:// or https://); location is {location!r}")
    if location == ":memory:":
        return ClientEngine(qdrant_client.QdrantClient(location=":memory:"), collection, retry, remote=False)
    return ClientEngine(qdrant_client.QdrantClient(path=location), collection, retry, remote=False)


__all__ = ["ClientEngine", "EdgeEngine", "Engine", "Hit", "Point", "open_engine"]
