"""Corrupted or truncated index files give a clear IndexCorruptedError, never a crash or wrong results."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from maxsim.index import Index, IndexCorruptedError, storage

from .conftest import DIM


@pytest.fixture()
def built(tmp_path, gen):
    path = tmp_path / "idx"
    ids = [f"d{i}" for i in range(120)]
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings([gen.doc(x) for x in ids], ids=ids)
    return path


@pytest.fixture()
def built_ivf(tmp_path, gen, monkeypatch):
    """Like ``built``, with the inverted lists stored (version 3 stores them for large segments)."""
    monkeypatch.setattr(storage, "IVF_STORED_MIN_TOKENS", 0)
    path = tmp_path / "idx-ivf"
    ids = [f"d{i}" for i in range(120)]
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings([gen.doc(x) for x in ids], ids=ids)
    assert (_seg(path) / "ivf_docs.npy").exists()
    return path


def _seg(path):
    return next(p for p in path.iterdir() if p.name.startswith("seg-"))


def _codec(path):
    return next(p for p in path.iterdir() if p.name.startswith("codec-"))


def _open_and_search(path):
    with Index.open(path) as index:
        index.search_embeddings([np.eye(4, DIM, dtype=np.float32)], k=3)
        index.verify()


@pytest.mark.parametrize("name", ["codes", "residuals", "offsets", "docnos", "ivf_offsets", "ivf_docs"])
def test_truncated_segment_file(built, built_ivf, name):
    path = built_ivf if name.startswith("ivf_") else built
    f = _seg(path) / f"{name}.npy"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorruptedError, match="truncated"):
        _open_and_search(path)


@pytest.mark.parametrize("name", ["offsets", "docnos", "ivf_docs", "codes"])
def test_flipped_bytes_in_small_files_are_caught_on_open(built, built_ivf, name):
    path = built_ivf if name.startswith("ivf_") else built
    f = _seg(path) / f"{name}.npy"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        Index.open(path)


def test_stored_and_rebuilt_inverted_lists_agree(built, built_ivf):
    with Index.open(built) as a, Index.open(built_ivf) as b:
        sa, sb = a._refresh().segments[0], b._refresh().segments[0]
        assert not (_seg(built) / "ivf_docs.npy").exists()
        if a._refresh().codec.n_centroids == b._refresh().codec.n_centroids:
            np.testing.assert_array_equal(sa.ivf_offsets, sb.ivf_offsets)
            np.testing.assert_array_equal(sa.ivf_docs, sb.ivf_docs)
        # and both equal the definition: sorted unique (centroid, document) pairs
        from maxsim.compression.bits import unpack_ids

        codes = unpack_ids(sa.codes, sa.code_bits, sa.n_tokens)
        doc = np.repeat(np.arange(sa.n_docs), np.diff(sa.offsets))
        pairs = np.unique(codes * sa.n_docs + doc)
        np.testing.assert_array_equal(sa.ivf_docs, pairs % sa.n_docs)
        np.testing.assert_array_equal(
            np.diff(sa.ivf_offsets), np.bincount(pairs // sa.n_docs, minlength=len(sa.ivf_offsets) - 1)
        )


def test_flipped_bytes_in_large_files_are_caught_by_verify(built, monkeypatch):
    # files above CRC_ON_OPEN_BYTES are only size- and bounds-checked on open; verify() reads all
    monkeypatch.setattr(storage, "CRC_ON_OPEN_BYTES", 0)
    f = _seg(built) / "residuals.npy"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x55
    f.write_bytes(bytes(data))
    index = Index.open(built)  # opens: the codes are any byte values
    with pytest.raises(IndexCorruptedError, match="checksum"):
        index.verify()


def test_out_of_range_centroid_ids_are_refused_even_unchecksummed(tmp_path, gen, monkeypatch):
    # a version-2 index stores ids as uint16, so a corrupted id can exceed the centroid count
    path = tmp_path / "v2"
    ids = [f"d{i}" for i in range(120)]
    with monkeypatch.context() as m:
        m.setattr(storage, "FORMAT_VERSION", 2)
        with Index.create(path, dim=DIM) as index:
            index.add_embeddings([gen.doc(x) for x in ids], ids=ids)
    monkeypatch.setattr(storage, "CRC_ON_OPEN_BYTES", 0)
    f = _seg(path) / "codes.npy"
    arr = np.load(f)
    assert arr.dtype == np.uint16
    arr[3] = np.iinfo(arr.dtype).max
    np.save(f, arr)  # same size, valid header: only the bounds check can catch it
    with pytest.raises(IndexCorruptedError, match="out of range"):
        Index.open(path)


def test_packed_centroid_ids_are_bounds_checked(built, monkeypatch):
    """Version 3 packs ids at ceil(log2(k)) bits: all-ones ids are out of range unless k is a
    power of two (then every pattern is a valid id and only verify() sees the damage)."""
    monkeypatch.setattr(storage, "CRC_ON_OPEN_BYTES", 0)
    info = json.loads((_seg(built) / "files.json").read_text())
    with Index.open(built) as index:
        k = index.info()["centroids"]
    assert info["code_bits"] == max(1, (k - 1).bit_length())
    f = _seg(built) / "codes.npy"
    arr = np.load(f)
    assert arr.dtype == np.uint8 and len(arr) == (info["n_tokens"] * info["code_bits"] + 7) // 8
    arr[:] = 0xFF
    np.save(f, arr)
    if k & (k - 1):
        with pytest.raises(IndexCorruptedError, match="out of range"):
            Index.open(built)
    else:
        with Index.open(built) as index:
            assert len(index.search_embeddings([np.eye(4, DIM, dtype=np.float32)], k=3)[0]) == 3
            with pytest.raises(IndexCorruptedError, match="checksum"):
                index.verify()


def test_codec_corruption(built):
    f = _codec(built) / "centroid_levels.npy"
    data = bytearray(f.read_bytes())
    data[200] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        Index.open(built)


def test_missing_segment_file_and_directory(built):
    seg = _seg(built)
    (seg / "docnos.npy").unlink()
    with pytest.raises(IndexCorruptedError, match="missing"):
        Index.open(built)
    storage.remove_dir(seg)
    with pytest.raises(IndexCorruptedError, match="missing"):
        Index.open(built)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"format": "other"}), "not a maxsim index manifest"),
        (json.dumps({"format": "maxsim-index", "format_version": 99, "dim": 64, "nbits": 2}), "format version 99"),
        (json.dumps({"format": "maxsim-index", "format_version": 1, "dim": 64, "nbits": 3}), "nbits"),
        ("", "not valid JSON"),
    ],
)
def test_bad_manifest(built, content, message):
    (built / storage.MANIFEST).write_text(content)
    with pytest.raises(IndexCorruptedError, match=message):
        Index.open(built)


def test_bad_files_json(built):
    (_seg(built) / storage.FILES_JSON).write_text("[]")
    with pytest.raises(IndexCorruptedError, match="JSON object"):
        Index.open(built)


@pytest.mark.parametrize("how", ["garbage", "truncate", "delete"])
def test_bad_catalog(built, how):
    db = built / storage.CATALOG
    for extra in ("-wal", "-shm"):
        (built / (storage.CATALOG + extra)).unlink(missing_ok=True)
    if how == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    elif how == "truncate":
        db.write_bytes(db.read_bytes()[:1000])
    else:
        db.unlink()
    with pytest.raises(IndexCorruptedError, match="catalog"):
        _open_and_search(built)


def test_cli_reports_corruption_in_one_line(built):
    (_seg(built) / "offsets.npy").write_bytes(b"\x93NUMPY")
    script = textwrap.dedent(f"""
        import sys
        from maxsim.cli.index import main
        sys.exit(main(["info", {str(built)!r}]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("maxsim index info: error: index file is truncated") and "Traceback" not in out.stderr


@pytest.mark.parametrize("version, table_dtype", [(1, np.float32), (2, np.float16)])
def test_older_format_index_still_opens_and_keeps_its_format(tmp_path, gen, monkeypatch, version, table_dtype):
    """Version 1 stored a float32 centroid table, version 2 a float16 one (both with uint16 ids).
    Such an index opens, searches, takes writes and deletes, re-clusters and keeps its version,
    so older readers can still open it."""
    path = tmp_path / f"v{version}"
    ids = [f"d{i}" for i in range(80)]
    with monkeypatch.context() as m:
        m.setattr(storage, "FORMAT_VERSION", version)
        with Index.create(path, dim=DIM) as index:
            index.add_embeddings([gen.doc(x) for x in ids[:60]], ids=ids[:60])
    assert json.loads((path / storage.MANIFEST).read_text())["format_version"] == version
    with Index.open(path) as index:
        q = gen.query_for(gen.doc("d7"), seed=7)
        assert index.search_embeddings(q, k=1)[0][0]["id"] == "d7"
        index.add_embeddings([gen.doc(x) for x in ids[60:]], ids=ids[60:])
        index.delete(["d3"])
        assert index.optimize(force=True)
        assert len(index) == 79 and index.search_embeddings(q, k=1)[0][0]["id"] == "d7"
        index.verify()
    assert json.loads((path / storage.MANIFEST).read_text())["format_version"] == version
    assert np.load(_codec(path) / "centroids.npy").dtype == table_dtype
    assert all(np.load(p / "codes.npy").dtype == np.uint16 for p in path.iterdir() if p.name.startswith("seg-"))


def test_new_indexes_store_a_4bit_centroid_grid_and_packed_ids(built):
    assert json.loads((built / storage.MANIFEST).read_text())["format_version"] == storage.FORMAT_VERSION == 3
    levels = np.load(_codec(built) / "centroid_levels.npy")
    grid = np.load(_codec(built) / "centroid_grid.npy")
    assert not (_codec(built) / "centroids.npy").exists()
    assert levels.dtype == np.uint8 and levels.shape[1] == DIM // 2 and grid.shape == (16, DIM)
    with Index.open(built) as index:
        codec = index._refresh().codec
        assert levels.shape[0] == codec.n_centroids
        # the in-memory table is exactly the stored grid values (the codec was trained on them)
        from maxsim.compression import unpack_codes

        np.testing.assert_array_equal(codec.centroids, grid[unpack_codes(levels, 4), np.arange(DIM)])


# ---- the catalog: SQLite has no page checksums, the index's row checksums stand in -----------


@pytest.fixture()
def tagged(tmp_path, gen):
    """An index whose documents carry distinctive texts and metadata, closed (WAL checkpointed)."""
    path = tmp_path / "tagged"
    ids = [f"doc-{i:03d}" for i in range(40)]
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings(
            [gen.doc(x) for x in ids],
            ids=ids,
            texts=[f"text-{i:03d}" for i in range(40)],
            metadata=[{"tag": f"t{i:03d}"} for i in range(40)],
        )
    assert not (path / "catalog.sqlite-wal").exists() or (path / "catalog.sqlite-wal").stat().st_size == 0
    return path


def _flip_one_bit(path, needle: bytes, offset: int, bit: int = 0) -> None:
    """Flip one bit of the single occurrence of ``needle`` in the catalog file."""
    f = path / "catalog.sqlite"
    data = bytearray(f.read_bytes())
    assert data.count(needle) == 1, needle
    data[data.index(needle) + offset] ^= 1 << bit
    f.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "needle, offset",
    [
        (b'"t012"', 4),  # a metadata value: t012 -> t013
        (b"doc-012text-012", 6),  # an id, in the docs table (the unique index keeps the old one): doc-012 -> doc-013
    ],
)
def test_flipped_bit_in_catalog_rows_is_an_error_not_a_wrong_answer(tagged, gen, needle, offset):
    _flip_one_bit(tagged, needle, offset)
    with Index.open(tagged) as index:
        q = gen.query_for(gen.doc("doc-012"), seed=3)
        with pytest.raises(IndexCorruptedError, match="checksum"):
            index.search_embeddings(q, k=3)
        with pytest.raises(IndexCorruptedError, match="checksum"):
            index.get(["doc-012"])
        with pytest.raises(IndexCorruptedError, match="checksum|integrity"):
            index.verify()
        # documents whose rows are intact are still served
        assert index.get(["doc-020"])[0]["metadata"] == {"tag": "t020"}


def test_flipped_bit_in_metadata_lookup_table_is_caught_by_verify(tagged):
    f = tagged / "catalog.sqlite"
    raw = bytearray(f.read_bytes())
    # meta_kv and its index store the bare value (the docs table stores it as JSON, in quotes):
    # change both copies alike, so SQLite's own integrity check has nothing to compare
    copies = [i for i in range(len(raw)) if raw.startswith(b"t012", i) and raw[i - 1 : i] != b'"']
    assert copies
    for pos in copies:
        raw[pos + 3] ^= 1  # t012 -> t013: a filter on tag t013 would now also return doc-012
    f.write_bytes(bytes(raw))
    with Index.open(tagged) as index:
        assert index._catalog.query("PRAGMA integrity_check") == [("ok",)]
        with pytest.raises(IndexCorruptedError, match="metadata"):
            index.verify()


def test_catalog_of_an_index_written_before_row_checksums_is_read_and_upgraded(tagged, gen):
    import sqlite3

    conn = sqlite3.connect(str(tagged / "catalog.sqlite"))
    conn.execute("ALTER TABLE docs DROP COLUMN crc")  # the layout before checksums
    conn.commit()
    conn.close()
    with Index.open(tagged, readonly=True) as old:
        assert old.get(["doc-003"])[0]["metadata"] == {"tag": "t003"}
        old.verify()
    with Index.open(tagged) as index:
        index.add_embeddings([gen.doc("new")], ids=["new"])  # a writer adds the column and fills it
        index.verify()
    _flip_one_bit(tagged, b'"t012"', 4)
    with Index.open(tagged) as index, pytest.raises(IndexCorruptedError, match="checksum"):
        index.get(["doc-012"])


def test_damaged_header_of_a_large_array_names_the_file(built, monkeypatch):
    monkeypatch.setattr(storage, "CRC_ON_OPEN_BYTES", 0)  # as for a file too large to checksum on open
    f = _seg(built) / "residuals.npy"
    data = bytearray(f.read_bytes())
    close = data.index(b"), }")
    data[close] = ord(" ")  # an unclosed parenthesis: numpy's header parser raises tokenize.TokenError
    f.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="residuals.npy"):
        Index.open(built)
