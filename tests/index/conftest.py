"""Shared helpers for index tests: clustered synthetic token vectors, deterministic per id."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

DIM = 64


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Clustered:
    """Documents whose tokens sit around a few of ``n_topics`` topic directions (like real
    late-interaction vectors, which cluster by meaning), plus Gaussian noise."""

    def __init__(self, dim: int = DIM, n_topics: int = 1000, noise: float = 0.6, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim, self.noise = dim, noise
        self.topics = unit(rng.normal(size=(n_topics, dim)))

    def doc(self, key: str | int, min_tokens: int = 30, max_tokens: int = 100) -> np.ndarray:
        """Token vectors of a document, a pure function of ``key``."""
        rng = np.random.default_rng(zlib.crc32(str(key).encode()))
        n = int(rng.integers(min_tokens, max_tokens + 1))
        topics = rng.integers(0, len(self.topics), size=3)
        x = self.topics[rng.choice(topics, size=n)] + self.noise * rng.normal(size=(n, self.dim)) / np.sqrt(self.dim)
        return unit(x)

    def query_for(self, doc: np.ndarray, seed: int, n: int = 32) -> np.ndarray:
        rng = np.random.default_rng(seed)
        picked = doc[rng.choice(len(doc), size=n)]
        return unit(picked + self.noise * rng.normal(size=picked.shape) / np.sqrt(self.dim))


@pytest.fixture(scope="session")
def gen() -> Clustered:
    return Clustered()
