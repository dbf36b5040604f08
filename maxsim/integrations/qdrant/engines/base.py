"""What the store needs of an engine (the points it writes, the hits it reads), and the imports
of the optional Qdrant packages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from maxsim.integrations.qdrant.errors import MissingDependencyError
from maxsim.integrations.qdrant.filters import Condition
from maxsim.integrations.qdrant.settings import QdrantSettings

INSTALL_HINT = "pip install 'maxsim[qdrant]'"


@dataclass
class Point:
    """One stored point: a document, or one part of a long one."""

    id: str
    vectors: dict[str, Any]
    payload: dict[str, Any]


@dataclass
class Hit:
    """One scored point of a query's answer."""

    score: float
    payload: dict[str, Any]


class Engine(Protocol):
    """What the store asks of an engine; point ids are uuid strings, conditions all must hold."""

    kind: str

    def exists(self) -> bool: ...
    def create(self, dim: int, settings: QdrantSettings, manifest: dict) -> None: ...
    def drop(self) -> None: ...
    def manifest(self) -> dict | None: ...
    def upsert(self, points: list[Point]) -> None: ...
    def delete(self, doc_ids: list[str], min_part: Mapping[str, int] | None = None) -> None: ...
    def set_metadata(self, doc_ids: list[str], metadata: list[dict | None]) -> None: ...
    def query(
        self,
        requests: list[tuple[list[list[float]], tuple[str, list[float]] | None]],
        prefetch_limit: int,
        limit: int,
        conditions: list[Condition],
        exact: bool,
    ) -> list[list[Hit]]: ...
    def retrieve(self, ids: list[str]) -> list[dict]: ...
    def count(self, conditions: list[Condition]) -> int: ...
    def optimize(self) -> None: ...
    def close(self) -> None: ...


def import_client() -> Any:
    try:
        import qdrant_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"the Qdrant integration needs qdrant-client: {INSTALL_HINT}") from exc
    return qdrant_client


def import_edge() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(f"Qdrant Edge locations ('edge:...') need qdrant-edge-py: {INSTALL_HINT}") from exc
    return qdrant_edge
