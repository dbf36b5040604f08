"""On-disk layout of an index directory, and durable writes.

::

    <index>/
      manifest.json          format name + version, dim, nbits, model name (written atomically)
      catalog.sqlite         ids, texts, metadata, tombstones, the list of live segments (WAL mode)
      write.lock             flock'ed by the single writer
      codec-<gen>/           centroids.npy, cutoffs.npy, weights.npy, files.json
      seg-<gen>-<n>/         codes.npy, residuals.npy, offsets.npy, docnos.npy,
                             ivf_offsets.npy, ivf_docs.npy, files.json
      tmp-*/                 directories being written; never referenced, removed by the writer

Codec and segment directories are immutable once renamed into place. ``files.json`` lists each
array's shape, dtype, byte size and CRC-32, so truncation and corruption are reported as
:class:`IndexCorruptedError` rather than surfacing as wrong results.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maxsim.compression.residual import ResidualCodec
from maxsim.index.errors import IndexCorruptedError

FORMAT_NAME = "maxsim-index"
#: 1: float32 centroid table. 2: float16 centroid table (the codec encodes against the
#: float16-rounded centroids, so nothing is lost). This version reads both; a version-1 index
#: keeps writing float32 tables, so older readers can still open it.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
LOCK = "write.lock"
FILES_JSON = "files.json"
#: Files at most this big are checksummed on every open; larger ones by Index.verify().
CRC_ON_OPEN_BYTES = 16 << 20
#: Documents per segment: local document numbers are stored as uint16 in the inverted lists.
MAX_SEGMENT_DOCS = 1 << 16


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON via a temporary file, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise IndexCorruptedError(f"{what} is missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IndexCorruptedError(f"{what} is not valid JSON ({e}): {path}") from None
    if not isinstance(obj, dict):
        raise IndexCorruptedError(f"{what} does not hold a JSON object: {path}")
    return obj


def _crc_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def write_array_dir(root: Path, prefix: str, arrays: dict[str, np.ndarray], extra: dict) -> str:
    """Write ``arrays`` as .npy files into a new immutable directory ``<prefix>-<uuid>``.

    Each file is fsynced, ``files.json`` records sizes and CRCs, then the directory is renamed
    into place and the parent fsynced. Returns the directory name.
    """
    tmp = root / f"tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    files = {}
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        path = tmp / f"{name}.npy"
        with open(path, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        files[name] = {
            "shape": list(arr.shape),
            "dtype": arr.dtype.str,
            "bytes": path.stat().st_size,
            "crc32": _crc_file(path),
        }
    with open(tmp / FILES_JSON, "w", encoding="utf-8") as f:
        json.dump({"files": files, **extra}, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    os.rename(tmp, root / name)
    fsync_dir(root)
    return name


def load_array_dir(path: Path, names: tuple[str, ...], *, verify_all: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Open the arrays of a directory written by :func:`write_array_dir`, memory-mapped.

    Checks every file's size, dtype and shape against ``files.json``; checksums files up to
    CRC_ON_OPEN_BYTES (all files with ``verify_all``). Raises IndexCorruptedError on mismatch.
    """
    info = read_json(path / FILES_JSON, "array directory listing")
    files = info.get("files")
    if not isinstance(files, dict):
        raise IndexCorruptedError(f"{path / FILES_JSON} has no 'files' table")
    out = {}
    for name in names:
        meta = files.get(name)
        fpath = path / f"{name}.npy"
        if meta is None:
            raise IndexCorruptedError(f"{path / FILES_JSON} does not list {name}.npy")
        try:
            size = fpath.stat().st_size
        except FileNotFoundError:
            raise IndexCorruptedError(f"index file is missing: {fpath}") from None
        if size != meta["bytes"]:
            raise IndexCorruptedError(f"index file is truncated or resized: {fpath} has {size} bytes, expected {meta['bytes']}")
        if verify_all or size <= CRC_ON_OPEN_BYTES:
            if _crc_file(fpath) != meta["crc32"]:
                raise IndexCorruptedError(f"index file is corrupted (checksum mismatch): {fpath}")
        try:
            arr = np.load(fpath, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as e:
            raise IndexCorruptedError(f"index file cannot be read as an array ({e}): {fpath}") from None
        if list(arr.shape) != meta["shape"] or arr.dtype.str != meta["dtype"]:
            raise IndexCorruptedError(
                f"index file header is corrupted: {fpath} holds {arr.dtype.str}{list(arr.shape)}, "
                f"expected {meta['dtype']}{meta['shape']}"
            )
        out[name] = arr
    return out, info


# --------------------------------------------------------------------------------------------
# codecs


def centroid_dtype(format_version: int) -> np.dtype:
    """dtype of the stored centroid table for an index of ``format_version``."""
    return np.dtype(np.float32) if format_version < 2 else np.dtype(np.float16)


def write_codec(root: Path, codec: ResidualCodec, n_tokens_trained: int, format_version: int = FORMAT_VERSION) -> str:
    table = codec.centroids.astype(centroid_dtype(format_version))
    if not np.array_equal(table.astype(np.float32), codec.centroids):
        raise ValueError("the codec's centroids are not representable in the stored dtype (train with train_codec)")
    return write_array_dir(
        root,
        "codec",
        {"centroids": table, "cutoffs": codec.cutoffs, "weights": codec.weights},
        {"nbits": codec.nbits, "n_tokens_trained": int(n_tokens_trained)},
    )


def load_codec(root: Path, name: str, *, verify_all: bool = False) -> ResidualCodec:
    arrays, info = load_array_dir(root / name, ("centroids", "cutoffs", "weights"), verify_all=verify_all)
    if arrays["centroids"].dtype not in (np.float16, np.float32):
        raise IndexCorruptedError(f"codec {root / name} has centroids of dtype {arrays['centroids'].dtype}")
    try:
        return ResidualCodec(
            np.ascontiguousarray(arrays["centroids"], dtype=np.float32),  # float16 on disk: widened once, in memory
            np.ascontiguousarray(arrays["cutoffs"]),
            np.ascontiguousarray(arrays["weights"]),
            int(info["nbits"]),
        )
    except (KeyError, ValueError) as e:
        raise IndexCorruptedError(f"codec {root / name} is inconsistent: {e}") from None


# --------------------------------------------------------------------------------------------
# segments

SEGMENT_ARRAYS = ("codes", "residuals", "offsets", "docnos", "ivf_offsets", "ivf_docs")


@dataclass(frozen=True, eq=False)
class Segment:
    """An immutable, memory-mapped run of documents encoded with one codec.

    codes [n_tokens] centroid ids; residuals uint8 [n_tokens, bytes]; offsets int64 [n_docs + 1];
    docnos int64 [n_docs] ascending global document numbers; ivf_offsets int64 [k + 1] and
    ivf_docs uint16 [n_pairs]: the local documents having a token at each centroid.
    """

    name: str
    codec: str
    codes: np.ndarray
    residuals: np.ndarray
    offsets: np.ndarray
    docnos: np.ndarray
    ivf_offsets: np.ndarray
    ivf_docs: np.ndarray

    @property
    def n_docs(self) -> int:
        return int(self.docnos.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.codes.shape[0])


def build_ivf(codes: np.ndarray, offsets: np.ndarray, n_centroids: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists centroid -> local docs: (ivf_offsets int64 [k + 1], ivf_docs uint16 [n_pairs])."""
    n_docs = len(offsets) - 1
    doc_of_token = np.repeat(np.arange(n_docs, dtype=np.int64), np.diff(offsets))
    keys = np.unique(codes.astype(np.int64) * n_docs + doc_of_token)  # sorted by (centroid, doc)
    cents = keys // max(n_docs, 1)
    docs = (keys % max(n_docs, 1)).astype(np.uint16)
    counts = np.bincount(cents, minlength=n_centroids)
    ivf_offsets = np.zeros(n_centroids + 1, dtype=np.int64)
    np.cumsum(counts, out=ivf_offsets[1:])
    return ivf_offsets, docs


def write_segment(
    root: Path, codec_name: str, n_centroids: int, codes: np.ndarray, residuals: np.ndarray,
    offsets: np.ndarray, docnos: np.ndarray,
) -> str:
    if len(docnos) > MAX_SEGMENT_DOCS:
        raise ValueError(f"a segment holds at most {MAX_SEGMENT_DOCS} documents")
    ivf_offsets, ivf_docs = build_ivf(codes, offsets, n_centroids)
    return write_array_dir(
        root,
        "seg",
        {
            "codes": codes,
            "residuals": residuals,
            "offsets": offsets.astype(np.int64),
            "docnos": docnos.astype(np.int64),
            "ivf_offsets": ivf_offsets,
            "ivf_docs": ivf_docs,
        },
        {"codec": codec_name, "n_docs": int(len(docnos)), "n_tokens": int(len(codes))},
    )


def load_segment(root: Path, name: str, codec: ResidualCodec, *, verify_all: bool = False) -> Segment:
    arrays, info = load_array_dir(root / name, SEGMENT_ARRAYS, verify_all=verify_all)
    offsets = np.asarray(arrays["offsets"])
    docnos = np.asarray(arrays["docnos"])
    ivf_offsets = np.asarray(arrays["ivf_offsets"])
    n_docs, n_tokens = len(docnos), len(arrays["codes"])
    problems = []
    if len(offsets) != n_docs + 1 or (n_docs >= 0 and len(offsets) and (offsets[0] != 0 or offsets[-1] != n_tokens)):
        problems.append("document offsets do not cover the tokens")
    elif n_docs and np.any(np.diff(offsets) < 0):
        problems.append("document offsets decrease")
    if arrays["residuals"].shape != (n_tokens, codec.bytes_per_token):
        problems.append(f"residuals shape {arrays['residuals'].shape} != ({n_tokens}, {codec.bytes_per_token})")
    if len(ivf_offsets) != codec.n_centroids + 1 or ivf_offsets[-1] != len(arrays["ivf_docs"]):
        problems.append("inverted-list offsets do not match the codec or the lists")
    if n_docs > 1 and np.any(np.diff(docnos) <= 0):
        problems.append("document numbers are not increasing")
    # bounds that the compiled kernels rely on (they do not check indices): cheap, always done
    if not problems and n_tokens and int(np.asarray(arrays["codes"]).max()) >= codec.n_centroids:
        problems.append("a centroid id is out of range")
    if not problems and len(arrays["ivf_docs"]) and int(np.asarray(arrays["ivf_docs"]).max()) >= n_docs:
        problems.append("an inverted list points past the last document")
    if problems:
        raise IndexCorruptedError(f"segment {root / name} is inconsistent: {'; '.join(problems)}")
    return Segment(name, str(info.get("codec")), arrays["codes"], arrays["residuals"], offsets, docnos,
                   ivf_offsets, arrays["ivf_docs"])


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
