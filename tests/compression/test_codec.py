"""Bit packing and the residual codec, checked against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.compression import choose_n_centroids, pack_codes, train_codec, unpack_codes
from maxsim.index import kernels


@pytest.mark.parametrize("nbits", [1, 2, 4])
def test_pack_roundtrip(nbits):
    rng = np.random.default_rng(nbits)
    codes = rng.integers(0, 1 << nbits, size=(37, 64)).astype(np.uint8)
    packed = pack_codes(codes, nbits)
    assert packed.shape == (37, 64 * nbits // 8)
    np.testing.assert_array_equal(unpack_codes(packed, nbits), codes)


def test_pack_rejects_bad_nbits():
    with pytest.raises(ValueError, match="nbits must be one of"):
        pack_codes(np.zeros((1, 8), np.uint8), 3)
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_codes(np.zeros((1, 3), np.uint8), 2)


def _data(n=4000, dim=64, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(50, dim))
    x = c[rng.integers(0, 50, n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_more_bits_reconstruct_better():
    x = _data()
    cos = {}
    for nbits in (1, 2, 4):
        codec = train_codec(x, 64, nbits)
        ids, packed = codec.encode(x)
        assert packed.shape == (len(x), 64 * nbits // 8)
        y = codec.decode(ids, packed)
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
        cos[nbits] = float((x * y).sum(1).mean())
    assert cos[1] < cos[2] < cos[4]
    assert cos[2] > 0.9


def test_cutoffs_start_as_quantiles_and_lloyd_lowers_error():
    x = _data()
    plain = train_codec(x, 32, 2, lloyd_iters=0)
    ids, packed = plain.encode(x)
    codes = unpack_codes(packed, 2)
    # quantile cutoffs split each dimension's residuals into equal-mass buckets
    frac = np.stack([(codes == b).mean(axis=0) for b in range(4)])  # [4, dim]
    assert np.all(np.abs(frac - 0.25) < 0.08)
    assert np.all(np.diff(plain.cutoffs, axis=1) > 0)
    refined = train_codec(x, 32, 2, lloyd_iters=8)
    np.testing.assert_array_equal(refined.centroids, plain.centroids)
    err = {}
    for name, codec in (("plain", plain), ("refined", refined)):
        y = codec.decode(*codec.encode(x))
        err[name] = float(((x - y) ** 2).sum(1).mean())
    assert err["refined"] < err["plain"]


def test_numba_decompress_matches_numpy_decode():
    x = _data(500)
    codec = train_codec(x, 16, 2)
    ids, packed = codec.encode(x)
    offsets = np.array([0, 100, 250, 500], dtype=np.int64)
    out = np.empty((500, 64), np.float32)
    kernels.decompress(np.arange(3), offsets, ids, packed, codec.centroids, codec.lookup_table(), offsets, out)
    np.testing.assert_allclose(out, codec.decode(ids, packed), atol=1e-5)


def test_exact_path_matches_reference_maxsim():
    from maxsim.scoring.maxsim import maxsim_score

    x = _data(300)
    codec = train_codec(x, 16, 4)
    ids, packed = codec.encode(x)
    offsets = np.array([0, 120, 120, 300], dtype=np.int64)  # middle document is empty
    q = _data(8, seed=5)
    buf = np.empty((300, 64), np.float32)
    kernels.decompress(np.arange(3), offsets, ids, packed, codec.centroids, codec.lookup_table(), offsets, buf)
    got = kernels.segment_maxsum(kernels.rows_times(buf, np.ascontiguousarray(q.T)), offsets)
    y = codec.decode(ids, packed)
    want = [maxsim_score(q, y[:120]), 0.0, maxsim_score(q, y[120:])]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_choose_n_centroids_is_power_of_two_and_bounded():
    for n in (1, 7, 100, 10_000, 10_000_000):
        k = choose_n_centroids(n)
        assert k & (k - 1) == 0 and 1 <= k <= max(1, n // 8) or k == 1
    with pytest.raises(ValueError):
        choose_n_centroids(0)


def test_nearest_centroid_index_is_built_once_per_codec(monkeypatch):
    """A build encodes chunk after chunk with one codec: the index over its centroids (k-means
    into cells past 16k centroids, seconds at 262k) is made once, and encoding is unchanged."""
    from maxsim.compression import residual

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codec = train_codec(x, 32, 2)
    made = []
    real = residual.centroid_index
    monkeypatch.setattr(residual, "centroid_index", lambda c: made.append(1) or real(c))
    first = codec.encode(x[:1000])
    second = codec.encode(x[1000:])
    assert len(made) == 1
    whole = train_codec(x, 32, 2).encode(x)  # a fresh codec of the same sample, in one call
    assert np.array_equal(np.concatenate([first[0], second[0]]), whole[0])
    assert np.array_equal(np.concatenate([first[1], second[1]]), whole[1])
