"""Tiny synthetic retrieval data and a tiny model: training tests run in seconds."""

from __future__ import annotations

import random

import pytest

from maxsim.train.data import Pair

TOPICS = [f"w{i}" for i in range(40)]
FILLER = [f"f{i}" for i in range(10)]


def make_pairs(n_docs: int = 24, queries_per_doc: int = 2, seed: int = 0) -> list[Pair]:
    rng = random.Random(seed)
    pairs = []
    for d in range(n_docs):
        own = rng.sample(TOPICS, 4)
        text = " ".join(own + rng.sample(FILLER, 4)) + " ."
        for _ in range(queries_per_doc):
            pairs.append(Pair(" ".join(rng.sample(own, 2)), text, lang="xx", source="a" if d % 2 else "b"))
    return pairs


@pytest.fixture
def pairs() -> list[Pair]:
    return make_pairs()


@pytest.fixture
def tiny():
    from maxsim.train.tiny import tiny_model

    return tiny_model(TOPICS + FILLER, seed=0)


@pytest.fixture
def make_tiny():
    from maxsim.train.tiny import tiny_model

    return lambda: tiny_model(TOPICS + FILLER, seed=0)
