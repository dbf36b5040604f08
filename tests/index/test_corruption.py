"""Corrupted or truncated index files give a clear IndexCorruptedError, never a crash or wrong results."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from maxsim.index import Index, IndexCorruptedError
from maxsim.index import storage

from .conftest import DIM


@pytest.fixture()
def built(tmp_path, gen):
    path = tmp_path / "idx"
    ids = [f"d{i}" for i in range(120)]
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings([gen.doc(x) for x in ids], ids=ids)
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
def test_truncated_segment_file(built, name):
    f = _seg(built) / f"{name}.npy"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexCorruptedError, match="truncated"):
        _open_and_search(built)


@pytest.mark.parametrize("name", ["offsets", "docnos", "ivf_docs", "codes"])
def test_flipped_bytes_in_small_files_are_caught_on_open(built, name):
    f = _seg(built) / f"{name}.npy"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        Index.open(built)


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


def test_out_of_range_centroid_ids_are_refused_even_unchecksummed(built, monkeypatch):
    monkeypatch.setattr(storage, "CRC_ON_OPEN_BYTES", 0)
    f = _seg(built) / "codes.npy"
    arr = np.load(f)
    arr[3] = np.iinfo(arr.dtype).max
    np.save(f, arr)  # same size, valid header: only the bounds check can catch it
    with pytest.raises(IndexCorruptedError, match="out of range"):
        Index.open(built)


def test_codec_corruption(built):
    f = _codec(built) / "centroids.npy"
    data = bytearray(f.read_bytes())
    data[200] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        Index.open(built)


def test_missing_segment_file_and_directory(built):
    seg = _seg(built)
    (seg / "ivf_docs.npy").unlink()
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
        from maxsim.index_cli import main
        sys.exit(main(["info", {str(built)!r}]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("maxsim index info: error: index file is truncated") and "Traceback" not in out.stderr


def test_format_version_1_index_still_opens_and_keeps_its_format(tmp_path, gen, monkeypatch):
    """Version 1 stored a float32 centroid table; version 2 stores float16. A version-1 index
    opens, searches, takes writes and stays version 1 (float32), so older readers can open it."""
    path = tmp_path / "v1"
    ids = [f"d{i}" for i in range(80)]
    with monkeypatch.context() as m:
        m.setattr(storage, "FORMAT_VERSION", 1)
        with Index.create(path, dim=DIM) as index:
            index.add_embeddings([gen.doc(x) for x in ids[:60]], ids=ids[:60])
    assert json.loads((path / storage.MANIFEST).read_text())["format_version"] == 1
    assert np.load(_codec(path) / "centroids.npy").dtype == np.float32
    with Index.open(path) as index:
        q = gen.query_for(gen.doc("d7"), seed=7)
        assert index.search_embeddings(q, k=1)[0]["id"] == "d7"
        index.add_embeddings([gen.doc(x) for x in ids[60:]], ids=ids[60:])
        assert index.optimize(force=True)
        assert len(index) == 80 and index.search_embeddings(q, k=1)[0]["id"] == "d7"
        index.verify()
    assert json.loads((path / storage.MANIFEST).read_text())["format_version"] == 1
    assert np.load(_codec(path) / "centroids.npy").dtype == np.float32


def test_new_indexes_store_float16_centroids(built):
    assert json.loads((built / storage.MANIFEST).read_text())["format_version"] == storage.FORMAT_VERSION == 2
    table = np.load(_codec(built) / "centroids.npy")
    assert table.dtype == np.float16
    with Index.open(built) as index:
        codec = index._refresh().codec
        np.testing.assert_array_equal(codec.centroids, table.astype(np.float32))
