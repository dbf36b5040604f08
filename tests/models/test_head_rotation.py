"""Head rotation: 128-d scores unchanged, the Matryoshka cuts keep the most energy possible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maxsim.errors import InvalidArgumentError
from maxsim.models.head_rotation import prefix_energy, principal_rotation, rotate_head

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
DOCS = ["alpha beta gamma delta", "epsilon zeta eta theta alpha", "gamma gamma beta", "theta eta delta beta zeta"]
QUERIES = ["alpha gamma", "zeta theta", "beta"]


def tiny():
    from maxsim.train.tiny import tiny_model

    return tiny_model(WORDS, seed=7)


def maxsim_scores(q, d):
    return np.array([[float((qi @ di.T).max(axis=1).sum()) for di in d] for qi in q])


def test_rotation_keeps_full_scores_and_fills_the_cut():
    model = tiny()
    top = max(model.heads)
    q, d = model.encode_queries(QUERIES, dim=top), model.encode_documents(DOCS, dim=top)
    rotation = principal_rotation(q, d)
    assert np.allclose(rotation @ rotation.T, np.eye(top), atol=1e-4)

    rotated = tiny()
    rotated.heads = {top: rotate_head(model.heads[top], rotation)}
    q2, d2 = rotated.encode_queries(QUERIES, dim=top), rotated.encode_documents(DOCS, dim=top)
    # every 128-d dot product is the same, so every score is
    assert np.allclose(maxsim_scores(q, d), maxsim_scores(q2, d2), atol=1e-4)
    for cut in (d for d in model.dims if d < top):
        before, after = prefix_energy(q + d, cut), prefix_energy(q2 + d2, cut)
        assert after > before
        assert after == pytest.approx(prefix_energy(q + d, cut, rotation), abs=1e-4)
        # no other orthogonal rotation does better than the principal axes (a random one, here)
        random_rotation, _ = np.linalg.qr(np.random.default_rng(cut).normal(size=(top, top)))
        assert prefix_energy(q + d, cut, random_rotation.astype(np.float32)) <= after + 1e-6
    # the cut vectors are the principal projections, re-normalised
    small = rotated.encode_documents(DOCS[:1], dim=64)[0]
    expected = d[0] @ rotation[:64].T
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(small, expected, atol=1e-4)


def test_bad_rotations_are_refused():
    head = torch.nn.Linear(16, 8)
    with pytest.raises(InvalidArgumentError, match="orthogonal"):
        rotate_head(head, 2 * np.eye(8, dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match=r"\[8, 8\]"):
        rotate_head(head, np.eye(4, dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="query vectors"):
        principal_rotation([], [np.ones((3, 8), np.float32)])
    with pytest.raises(InvalidArgumentError, match=r"\[n, 8\]"):
        principal_rotation([np.ones((2, 4), np.float32)], [np.ones((3, 8), np.float32)])
