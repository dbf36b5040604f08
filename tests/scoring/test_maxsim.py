"""MaxSim as plain functions. Shapes: query [n_q, dim], documents [n_d, dim] each."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.scoring.maxsim import maxsim_score, maxsim_scores, maxsim_token_matches


def _unit(rng, n, dim=16):
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_hand_checkable():
    q = np.array([[1, 0], [0, 1]], dtype=np.float32)
    d = np.array([[0.6, 0.8], [1, 0]], dtype=np.float32)
    assert maxsim_score(q, d) == pytest.approx(1.8)
    idx, best = maxsim_token_matches(q, d)
    assert idx.tolist() == [1, 0] and best.tolist() == pytest.approx([1.0, 0.8])


def test_vectorised_equals_loop():
    rng = np.random.default_rng(0)
    q = _unit(rng, 32)
    docs = [_unit(rng, n) for n in (1, 5, 300, 17, 64, 2)] + [np.zeros((0, 16), np.float32)]
    fast = maxsim_scores(q, docs, chunk_tokens=256)  # small chunks exercise the blocking
    slow = [maxsim_score(q, d) for d in docs]
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    assert fast[-1] == 0.0


def test_dim_mismatch_is_an_error():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="dims differ"):
        maxsim_scores(_unit(rng, 4, 16), [_unit(rng, 3, 8)])
