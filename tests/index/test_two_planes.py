"""Two residual planes (``Index.create(refine_bits=2)``): the first plane is a plain 2-bit index,
both planes together decode at 4 bits, and the second plane lives through every write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maxsim.compression.bits import pack_codes, unpack_codes
from maxsim.errors import InvalidArgumentError
from maxsim.index import Index, IndexCorruptedError, SearchConfig, storage
from maxsim.index.build import BuildProgress, ChunkWriter, build_from_vectors, install_codec

from .conftest import DIM, unit

N_DOCS = 300
IDS = [f"d{i}" for i in range(N_DOCS)]


@pytest.fixture(scope="module")
def docs(gen) -> list[np.ndarray]:
    return [gen.doc(i) for i in IDS]


@pytest.fixture(scope="module")
def two_plane(tmp_path_factory, docs) -> Path:
    """A two-plane index written by two adds (two segments); the module's tests only read it."""
    path = tmp_path_factory.mktemp("tp") / "idx"
    with Index.create(path, dim=DIM, refine_bits=2, auto_optimize=False) as index:
        index.add_embeddings(docs[:200], ids=IDS[:200])
        index.add_embeddings(docs[200:], ids=IDS[200:])
    return path


def _segs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.name.startswith("seg-")), key=lambda p: np.load(p / "docnos.npy")[0])


def _codec(path: Path):
    name = next(p.name for p in path.iterdir() if p.name.startswith("codec-"))
    return storage.load_codec(path, name)


def _plane_codes(seg: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroid ids, first-plane codes, second-plane codes) of a segment, from its files."""
    from maxsim.compression.bits import unpack_ids

    info = json.loads((seg / "files.json").read_text())
    ids = unpack_ids(np.load(seg / "codes.npy"), info["code_bits"], info["n_tokens"])
    hi = unpack_codes(np.load(seg / "residuals.npy"), 2)
    lo = unpack_codes(np.load(seg / "residuals_refine.npy"), 2)
    return ids, hi, lo


def test_first_plane_is_the_2bit_index_and_both_planes_decode_at_4_bits(two_plane, docs, tmp_path):
    manifest = json.loads((two_plane / storage.MANIFEST).read_text())
    assert manifest["format_version"] == storage.REFINE_FORMAT_VERSION and manifest["refine_bits"] == 2
    codec = _codec(two_plane)
    assert codec.nbits == 2 and codec.refinement is not None and codec.refinement.nbits == 4
    fine = codec.refinement
    # the 4-bit buckets nest the 2-bit ones: cutoffs 3, 7, 11 are the 2-bit cutoffs
    assert np.array_equal(fine.cutoffs[:, [3, 7, 11]], codec.cutoffs)

    # the same vectors in a plain 2-bit index (same training sample and seed): the same bytes
    plain = tmp_path / "plain"
    with Index.create(plain, dim=DIM, auto_optimize=False) as index:
        index.add_embeddings(docs[:200], ids=IDS[:200])
        index.add_embeddings(docs[200:], ids=IDS[200:])
    for a, b in zip(_segs(two_plane), _segs(plain), strict=True):
        for name in ("codes", "residuals", "offsets", "docnos"):
            assert np.array_equal(np.load(a / f"{name}.npy"), np.load(b / f"{name}.npy")), name
        assert not (b / "residuals_refine.npy").exists()

    # fine code = first plane << 2 | second plane = the 4-bit quantisation of the residuals
    x = np.concatenate(docs[:200])
    ids, hi, lo = _plane_codes(_segs(two_plane)[0])
    assert np.array_equal(fine.quantize(x - codec.centroids[ids]), (hi << 2) | lo)

    with Index.open(two_plane, readonly=True) as index:
        snap = index._refresh()
        seg = next(s for s in snap.segments if s.docnos[0] == 0)
        local = np.arange(seg.n_docs)
        # the first plane alone (the kernel stages 1-3 use without refinement) is the 2-bit decode
        assert np.allclose(snap.decode(seg, local), codec.decode(ids, pack_codes(hi, 2)), atol=1e-6)
        # both planes: the 4-bit codec's decode of the fine codes; get_embeddings returns it
        four_bit = fine.decode(ids, pack_codes((hi << 2) | lo, 4))
        assert np.allclose(snap.decode(seg, local, refine=True), four_bit, atol=1e-6)
        got = np.concatenate(index.get_embeddings(IDS[:200]))
        assert np.allclose(got, four_bit, atol=1e-6)
        # and it is the closer one to the original vectors
        err2 = np.abs(snap.decode(seg, local) - x).sum()
        assert np.abs(got - x).sum() < 0.5 * err2


def test_search_ranks_like_a_4bit_index_with_the_same_codec(two_plane, docs, gen, tmp_path):
    """A real 4-bit index given the two-plane index's 4-bit codec: same rankings, same scores."""
    codec = _codec(two_plane)
    path4 = tmp_path / "four"
    four = Index.create(path4, dim=DIM, nbits=4, auto_optimize=False)
    fine = codec.refinement
    assert fine is not None
    install_codec(four, fine, N_DOCS, None)
    writer = ChunkWriter(four, BuildProgress(), chunk_docs=200)  # the same two segments as the two-plane index
    from maxsim.index.build import VectorDoc

    writer.add([VectorDoc(i, d) for i, d in zip(IDS, docs, strict=True)])
    writer.commit(finished=True)
    queries = [gen.query_for(docs[j], seed=j) for j in (3, 77, 150, 240, 299)]
    with Index.open(two_plane, readonly=True) as index:
        for config in (SearchConfig(exact=True), SearchConfig(exact=False, n_exact=20)):
            a = index.search_embeddings(queries, k=10, config=config)
            b = four.search_embeddings(queries, k=10, config=config)
            for ha, hb in zip(a, b, strict=True):
                assert [h["id"] for h in ha] == [h["id"] for h in hb]
                assert np.allclose([h["score"] for h in ha], [h["score"] for h in hb], atol=1e-4)
        # refine=False scores the short list with the first plane: other (2-bit) scores
        first = index.search_embeddings(queries, k=10, config=SearchConfig(exact=True, refine=False))
        exact = index.search_embeddings(queries, k=10, config=SearchConfig(exact=True))
        assert first[0][0]["id"] == exact[0][0]["id"] == "d3"
        assert abs(first[0][0]["score"] - exact[0][0]["score"]) > 1e-3
    four.close()


def _plane_listed(path: Path) -> None:
    segs = _segs(path)
    assert segs
    for seg in segs:
        files = json.loads((seg / "files.json").read_text())["files"]
        assert files["residuals_refine"]["shape"] == [files["residuals"]["shape"][0], DIM // 4]


def test_refine_plane_survives_delete_update_compaction_retraining_and_reopen(two_plane, docs, gen, tmp_path):
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(two_plane, path)
    q = gen.query_for(docs[40], seed=40)
    with Index.open(path, auto_optimize=False) as index:
        before = index.get_embeddings(["d40", "d250"])
        index.delete(["d3", "d210"])
        new = unit(gen.doc("fresh"))
        index.update_embeddings(["d7"], [new])
        # compaction (what optimize() does while the centroids fit): codes and both planes copied
        index._rewrite(index._refresh(), list(index._refresh().segments))
        assert index.info()["segments"] == 1 and index.info()["refine_bits"] == 2
        _plane_listed(path)
        after = index.get_embeddings(["d40", "d250"])
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        codec = index._refresh().codec
        assert codec is not None and codec.refinement is not None
        ids, hi, lo = codec.encode_planes(new)
        assert lo is not None and np.allclose(index.get_embeddings(["d7"])[0], codec.decode(ids, hi, lo), atol=1e-6)
        assert index.search_embeddings(q, k=1)[0][0]["id"] == "d40"
        assert index.optimize(force=True)  # re-trained: every document re-encoded into both planes
        index.verify()
    _plane_listed(path)
    with Index.open(path) as index:
        assert index.refine_bits == 2 and len(index) == N_DOCS - 2
        assert index.search_embeddings(q, k=1)[0][0]["id"] == "d40"
        assert "d3" not in index and index.info()["refine_bytes_per_token"] == pytest.approx(DIM / 4, rel=0.01)
        index.verify()


def test_verify_catches_a_damaged_refine_plane(two_plane, tmp_path, monkeypatch):
    import shutil

    path = tmp_path / "damaged"
    shutil.copytree(two_plane, path)
    f = _segs(path)[0] / "residuals_refine.npy"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0x10  # same size, valid header: only the checksum sees it
    f.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="residuals_refine.npy"):
        Index.open(path)  # small files are checksummed on open
    monkeypatch.setattr(storage, "CRC_ON_OPEN_BYTES", 0)
    with Index.open(path) as index:  # unchecked on open: verify() finds it
        with pytest.raises(IndexCorruptedError, match="checksum.*residuals_refine.npy"):
            index.verify()
    f.unlink()
    with pytest.raises(IndexCorruptedError, match="missing.*residuals_refine.npy"):
        Index.open(path)


def test_an_index_without_refine_still_opens_and_bad_settings_are_refused(built_plain, tmp_path):
    manifest = json.loads((built_plain / storage.MANIFEST).read_text())
    assert manifest["format_version"] == storage.FORMAT_VERSION and "refine_bits" not in manifest
    assert not list(built_plain.glob("seg-*/residuals_refine.npy"))
    with Index.open(built_plain) as index:
        assert index.refine_bits == 0 and index.info()["refine_bytes_per_token"] == 0
        q = np.eye(4, DIM, dtype=np.float32)
        assert index.search_embeddings(q, k=3, config=SearchConfig(refine=True)) == index.search_embeddings(
            q, k=3, config=SearchConfig(refine=False)
        )
        index.verify()
    for nbits, refine in ((2, 1), (2, 4), (4, 2), (1, 2), (4, 8)):
        with pytest.raises(InvalidArgumentError, match="refine_bits"):
            Index.create(tmp_path / f"bad{nbits}{refine}", dim=DIM, nbits=nbits, refine_bits=refine)
    # a manifest that claims a refinement plane its version does not have
    (built_plain / storage.MANIFEST).write_text(json.dumps({**manifest, "refine_bits": 2}))
    with pytest.raises(IndexCorruptedError, match="refine_bits"):
        Index.open(built_plain)


@pytest.fixture()
def built_plain(tmp_path, gen) -> Path:
    path = tmp_path / "plain"
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings([gen.doc(i) for i in range(60)], ids=[f"p{i}" for i in range(60)])
    return path


def test_streaming_build_writes_both_planes(tmp_path, docs):
    def source(skip: int):
        from maxsim.index.build import VectorDoc

        for i in range(skip, 120):
            yield VectorDoc(IDS[i], docs[i])

    index = build_from_vectors(tmp_path / "b", source, dim=DIM, refine_bits=2, chunk_docs=50, progress=False)
    with index:
        assert index.refine_bits == 2 and index.info()["segments"] == 3
        index.verify()
    _plane_listed(tmp_path / "b")


def test_four_plus_four_planes_keep_the_4bit_index_and_decode_at_8_bits(docs, gen, tmp_path):
    """nbits=4, refine_bits=4: the first plane is byte for byte a plain 4-bit index, both planes
    decode with the nested 256-bucket codec, much closer to the original vectors."""
    paths = {}
    for name, refine in (("plain4", 0), ("planes44", 4)):
        paths[name] = tmp_path / name
        with Index.create(paths[name], dim=DIM, nbits=4, refine_bits=refine, auto_optimize=False) as index:
            index.add_embeddings(docs, ids=IDS)
    for a, b in zip(_segs(paths["planes44"]), _segs(paths["plain4"]), strict=True):
        for name in ("codes", "residuals", "offsets", "docnos"):
            assert np.array_equal(np.load(a / f"{name}.npy"), np.load(b / f"{name}.npy")), name
    codec = _codec(paths["planes44"])
    fine = codec.refinement
    assert codec.nbits == 4 and fine is not None and fine.nbits == 8 and fine.cutoffs.shape == (DIM, 255)
    assert np.array_equal(fine.cutoffs[:, 15::16], codec.cutoffs)  # the 16 buckets nest in the 256
    # the binary-search quantiser of the fine codec counts the cutoffs below, as the 4-bit passes do
    x = np.concatenate(docs)
    with Index.open(paths["planes44"], readonly=True) as index:
        snap = index._refresh()
        seg = snap.segments[0]
        ids = np.asarray(codec.encode(x)[0])
        r = x - codec.centroids[ids.astype(np.int64)]
        assert np.array_equal(fine.quantize(r) >> 4, codec.quantize(r))
        brute = (r[:, :, None] > fine.cutoffs[None, :, :]).sum(axis=2)
        assert np.array_equal(fine.quantize(r), brute)
        local = np.arange(seg.n_docs)
        err4 = np.abs(snap.decode(seg, local) - x).sum()
        err8 = np.abs(snap.decode(seg, local, refine=True) - x).sum()
        assert err8 < 0.25 * err4
        assert index.info()["refine_bytes_per_token"] == pytest.approx(DIM / 2, rel=0.01)
        q = gen.query_for(docs[17], seed=17)
        exact = index.search_embeddings(q, k=5, config=SearchConfig(exact=True))[0]
        pruned = index.search_embeddings(q, k=5, config=SearchConfig(exact=False, n_exact=20))[0]
        assert exact[0]["id"] == pruned[0]["id"] == "d17"
        true = [float((q @ d.T).max(axis=1).sum()) for d in docs]
        # scored from both planes: within a hair of MaxSim over the original vectors
        assert abs(exact[0]["score"] - true[17]) < 0.02
        index.verify()
