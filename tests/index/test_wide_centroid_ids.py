"""Indexes with more than 65,536 centroids: centroid ids packed at 17+ bits, through storage and search."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.compression.bits import MAX_ID_BITS, id_bits, pack_ids, unpack_ids
from maxsim.compression.residual import train_codec
from maxsim.index import Index, SearchConfig, kernels, storage
from maxsim.index.build import install_codec


@pytest.mark.parametrize("bits", [16, 17, 18, 21, 24])
def test_packed_ids_read_back_in_place_at_every_width(bits):
    rng = np.random.default_rng(bits)
    ids = rng.integers(0, 1 << bits, size=1001)
    ids[:3] = [0, (1 << bits) - 1, 1 << (bits - 1)]
    packed = pack_ids(ids, bits)
    assert unpack_ids(packed, bits, len(ids)).tolist() == ids.tolist()
    got = kernels.gather_codes(packed, bits, np.arange(len(ids), dtype=np.int64))
    assert got.tolist() == ids.tolist()


def test_id_bits_bounds():
    assert id_bits(65_536) == 16 and id_bits(65_537) == 17 and id_bits(1 << MAX_ID_BITS) == MAX_ID_BITS
    with pytest.raises(ValueError, match="centroid ids"):
        id_bits((1 << MAX_ID_BITS) + 1)


def test_index_with_70k_centroids_stores_and_finds_ids_above_65535(tmp_path):
    dim, k = 16, 70_001  # 17-bit ids
    rng = np.random.default_rng(0)
    cents = rng.normal(size=(k, dim)).astype(np.float32)
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    codec = train_codec(cents, k, 2, table_bits=storage.table_bits(storage.FORMAT_VERSION))  # k == sample: no k-means
    assert codec.n_centroids == k
    idx = Index.create(tmp_path / "idx", dim=dim, nbits=2, auto_optimize=False)
    install_codec(idx, codec, 10**8, None)
    # documents made of high centroids (ids above 65,535) plus a little noise
    picks = [rng.integers(65_536, k, size=6) for _ in range(40)]
    docs = [codec.centroids[p] + 0.01 * rng.normal(size=(6, dim)).astype(np.float32) for p in picks]
    idx.add_embeddings(docs, ids=[f"d{i}" for i in range(40)])
    idx.close()
    with Index.open(tmp_path / "idx") as idx:
        snap = idx._refresh()
        seg = snap.segments[0]
        assert seg.code_bits == 17
        codes = kernels.gather_codes(seg.codes, seg.code_bits, np.arange(6 * 40, dtype=np.int64))
        assert (codes >= 65_536).mean() > 0.9  # the ids survived packing (a few noisy tokens may move)
        stored = idx.get_embeddings(["d7"])[0]
        unit = docs[7] / np.linalg.norm(docs[7], axis=1, keepdims=True)
        assert np.all((stored * unit).sum(axis=1) > 0.95)
        for i in (0, 7, 39):
            q = unit if i == 7 else docs[i] / np.linalg.norm(docs[i], axis=1, keepdims=True)
            hits = idx.search_embeddings([q], k=3, config=SearchConfig(exact=False))[0]
            assert hits[0]["id"] == f"d{i}"
