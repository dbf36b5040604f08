"""Store factories for the conformance suite: every test runs once per store.

- ``index``: the on-disk :class:`maxsim.index.Index` in a temporary directory;
- ``qdrant-memory``: :class:`QdrantStore` on qdrant-client's in-memory engine;
- ``qdrant-edge``: :class:`QdrantStore` on Qdrant Edge in a temporary directory.

The Qdrant stores are skipped when their client package is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

DIM = 64
STORES = ["index", "qdrant-memory", "qdrant-edge"]


def _open(kind: str, where: Path, model: Any) -> Any:
    if kind == "index":
        from maxsim.index import Index

        return Index.create(where / "index", model=model, dim=DIM)
    needs = "qdrant_edge" if kind == "qdrant-edge" else "qdrant_client"
    if importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed")
    from maxsim.integrations.qdrant import QdrantSettings, QdrantStore
    from maxsim.postprocess.muvera import MuveraConfig

    location = ":memory:" if kind == "qdrant-memory" else f"edge:{where / 'edge'}"
    settings = QdrantSettings(muvera=MuveraConfig(k_sim=3, dim_proj=8, repetitions=4, seed=1))
    return QdrantStore.create(location, "conformance", dim=DIM, model=model, settings=settings, batch_size=8)


@pytest.fixture(params=STORES)
def make_store(request, tmp_path: Path) -> Callable[..., Any]:
    """``make_store(model=None)``: a new empty store of the parametrized kind, closed after the test."""
    opened: list[Any] = []

    def make(model: Any = None) -> Any:
        where = tmp_path / f"store{len(opened)}"
        where.mkdir()
        store = _open(request.param, where, model)
        opened.append(store)
        return store

    make.kind = request.param  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()


class Corpus:
    """Random unit token vectors: each document is found first by a query made of its own tokens."""

    def __init__(self, n: int = 12, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.docs = [_unit(rng.normal(size=(int(rng.integers(4, 12)), DIM))) for _ in range(n)]
        self.ids = [f"doc-{i}" for i in range(n)]
        self.texts = [f"text {i}" for i in range(n)]
        self.meta = [{"lang": ["en", "fr", "de"][i % 3], "n": i} for i in range(n)]

    def query(self, i: int) -> np.ndarray:
        return self.docs[i][:4].copy()


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus()
