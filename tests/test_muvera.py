"""MUVERA fixed dimensional encodings.

Contract: ``Muvera(dim, config)`` maps token vectors [n_tokens, dim] to float32
[config.output_dim]; documents aggregate per SimHash partition by mean, queries by sum; the
same seed gives the same encodings; query.document inner products track MaxSim.
"""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.postprocess.muvera import MAX_OUTPUT_DIM, Muvera, MuveraConfig, pooled_vector
from maxsim.scoring.maxsim import maxsim_scores


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _ranks(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a))


@pytest.mark.parametrize(
    ("dim", "config", "expected"),
    [
        (128, MuveraConfig(), 20 * 4 * 64),
        (64, MuveraConfig(k_sim=5, dim_proj=16, repetitions=20), 20 * 32 * 16),
        (64, MuveraConfig(k_sim=3, dim_proj=8, repetitions=4), 4 * 8 * 8),
        (96, MuveraConfig(k_sim=4, dim_proj=96, repetitions=2), 2 * 16 * 96),
        (128, MuveraConfig(final_dim=1000), 1000),
    ],
)
def test_shapes(dim: int, config: MuveraConfig, expected: int) -> None:
    enc = Muvera(dim, config)
    rng = np.random.default_rng(0)
    docs = [_unit(rng.normal(size=(n, dim))) for n in (1, 7, 50)]
    assert enc.output_dim == expected == config.output_dim
    assert enc.encode_document(docs[1]).shape == (expected,)
    assert enc.encode_query(docs[2]).shape == (expected,)
    batch = enc.encode_documents(docs)
    assert batch.shape == (3, expected) and batch.dtype == np.float32
    assert enc.encode_queries([]).shape == (0, expected)


def test_same_seed_same_encoding_other_seed_differs() -> None:
    rng = np.random.default_rng(1)
    x = _unit(rng.normal(size=(20, 64)))
    a = Muvera(64, MuveraConfig(seed=7, final_dim=512))
    b = Muvera(64, MuveraConfig(seed=7, final_dim=512))
    c = Muvera(64, MuveraConfig(seed=8, final_dim=512))
    np.testing.assert_array_equal(a.encode_document(x), b.encode_document(x))
    np.testing.assert_array_equal(a.encode_query(x), b.encode_query(x))
    assert not np.allclose(a.encode_document(x), c.encode_document(x))


def test_one_partition_is_mean_for_documents_and_sum_for_queries() -> None:
    # k_sim=0: a single partition; dim_proj == dim: no projection. Each repetition then holds the
    # document's mean vector or the query's sum vector, so <q, d> = reps * sum_i <q_i, mean(d)>.
    rng = np.random.default_rng(2)
    q, d = _unit(rng.normal(size=(4, 8))), _unit(rng.normal(size=(6, 8)))
    enc = Muvera(8, MuveraConfig(k_sim=0, dim_proj=8, repetitions=3))
    np.testing.assert_allclose(enc.encode_document(d), np.tile(d.mean(axis=0), 3), rtol=1e-6)
    np.testing.assert_allclose(enc.encode_query(q), np.tile(q.sum(axis=0), 3), rtol=1e-6)
    expected = 3 * float((q @ d.mean(axis=0)).sum())
    assert float(enc.encode_query(q) @ enc.encode_document(d)) == pytest.approx(expected, rel=1e-5)


def test_fill_empty_partitions() -> None:
    # One token lands in one of 8 partitions; filling copies its projection into the other 7.
    x = _unit(np.random.default_rng(3).normal(size=(1, 16)))
    filled = Muvera(16, MuveraConfig(k_sim=3, dim_proj=4, repetitions=2, fill_empty_partitions=True))
    empty = Muvera(16, MuveraConfig(k_sim=3, dim_proj=4, repetitions=2, fill_empty_partitions=False))
    blocks = filled.encode_document(x).reshape(2, 8, 4)
    for rep in range(2):
        assert np.allclose(blocks[rep], blocks[rep, 0])  # all 8 partitions hold the same vector
        assert np.abs(blocks[rep]).sum() > 0
    unfilled = empty.encode_document(x).reshape(2, 8, 4)
    assert ((np.abs(unfilled).sum(axis=2) > 0).sum(axis=1) == 1).all()  # one non-empty partition per rep
    # queries are never filled
    assert ((np.abs(filled.encode_query(x).reshape(2, 8, 4)).sum(axis=2) > 0).sum(axis=1) == 1).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inner_products_track_maxsim_order(seed: int) -> None:
    # Documents share a growing number of (noisy) query tokens: MaxSim rises with the overlap,
    # and the FDE inner products must order the documents the same way (nearly).
    dim = 64
    rng = np.random.default_rng(seed)
    q = _unit(rng.normal(size=(16, dim)))
    docs = [
        _unit(np.concatenate([q[:m] + 0.03 * rng.normal(size=(m, dim)), rng.normal(size=(40 - m, dim))]))
        for m in range(0, 17, 2)
    ]
    exact = maxsim_scores(q, docs)
    # isotropic random tokens: the paper's finer partitioning (32 buckets of 16 dims)
    enc = Muvera(dim, MuveraConfig(k_sim=5, dim_proj=16, repetitions=20, seed=seed))
    approx = enc.encode_documents(docs) @ enc.encode_query(q)
    spearman = np.corrcoef(_ranks(exact), _ranks(approx))[0, 1]
    assert spearman >= 0.9
    assert int(np.argmax(approx)) == int(np.argmax(exact))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k_sim": -1}, "k_sim"),
        ({"k_sim": 13}, "k_sim"),
        ({"dim_proj": 0}, "dim_proj"),
        ({"repetitions": 0}, "repetitions"),
        ({"final_dim": 0}, "final_dim"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MuveraConfig(**kwargs)


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="cannot exceed the token dim"):
        Muvera(64, MuveraConfig(dim_proj=128))
    with pytest.raises(ValueError, match=str(MAX_OUTPUT_DIM)):
        Muvera(128, MuveraConfig(k_sim=8, dim_proj=64, repetitions=8))
    enc = Muvera(64, MuveraConfig(k_sim=2, dim_proj=8, repetitions=2))
    with pytest.raises(ValueError, match=r"\[n_tokens, 64\]"):
        enc.encode_document(np.zeros((3, 32), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown MuveraConfig keys"):
        MuveraConfig.from_dict({"k_sim": 3, "ksim": 4})


def test_config_round_trips_through_dict() -> None:
    cfg = MuveraConfig(k_sim=3, dim_proj=8, repetitions=5, fill_empty_partitions=False, final_dim=100, seed=9)
    assert MuveraConfig.from_dict(cfg.to_dict()) == cfg


def test_pooled_vector_is_unit_mean() -> None:
    x = _unit(np.random.default_rng(4).normal(size=(5, 32)))
    p = pooled_vector(x)
    assert p.shape == (32,)
    assert np.linalg.norm(p) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(p, x.mean(0) / np.linalg.norm(x.mean(0)), rtol=1e-5)
