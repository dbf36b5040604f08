"""On-disk layout of an index directory, and durable writes.

::

    <index>/
      manifest.json          format name + version, dim, nbits, model name (written atomically)
      catalog.sqlite         ids, texts, metadata, tombstones, the list of live segments (WAL mode)
      write.lock             flock'ed by the single writer
      codec-<gen>/           centroids.npy (versions 1-2) or centroid_levels.npy + centroid_grid.npy
                             (version 3), cutoffs.npy, weights.npy, files.json
      seg-<gen>-<n>/         codes.npy, residuals.npy, offsets.npy, docnos.npy,
                             ivf_offsets.npy, ivf_docs.npy (version 3: only segments of at
                             least IVF_STORED_MIN_TOKENS tokens), residuals_refine.npy
                             (version 4: the refinement plane), files.json
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
from typing import Any

import numpy as np

from maxsim.compression.bits import (
    MAX_ID_BITS,
    check_nbits,
    id_bits,
    pack_codes,
    pack_ids,
    packed_ids_nbytes,
    unpack_codes,
)
from maxsim.compression.residual import ResidualCodec, check_refine_bits, grid_values
from maxsim.errors import InvalidArgumentError
from maxsim.index import faults
from maxsim.index.errors import IndexCorruptedError

FORMAT_NAME = "maxsim-index"
#: Versions. 1: float32 centroid table. 2: float16 centroid table (the codec encodes against the
#: float16-rounded centroids, so nothing is lost). 3: the centroid table on a 4-bit grid per
#: dimension (64 bytes per centroid at dim 128; the codec encodes against the gridded values),
#: centroid ids bit-packed at ceil(log2(k)) bits per token (12 bits for 4096 centroids) and
#: fewer centroids for small collections (see choose_n_centroids). 4: version 3 plus a second
#: residual plane (``refine_bits`` in the manifest, ``residuals_refine.npy`` in every segment,
#: the nested finer buckets in the codec); only indexes created with ``refine_bits`` use it, so
#: a reader that does not know the plane refuses the index instead of writing segments without
#: it. This version reads all four; an index keeps writing its own version, so older readers can
#: still open the ones they know.
FORMAT_VERSION = 3
REFINE_FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
MANIFEST = "manifest.json"
CATALOG = "catalog.sqlite"
LOCK = "write.lock"
FILES_JSON = "files.json"
#: Files at most this big are checksummed on every open; larger ones by Index.verify().
CRC_ON_OPEN_BYTES = 16 << 20
#: Documents per segment: local document numbers are stored as uint16 in the inverted lists.
MAX_SEGMENT_DOCS = 1 << 16
#: Version 3 stores the inverted lists (a function of the centroid ids and document offsets) only
#: for segments of at least this many tokens; smaller segments rebuild them when opened, in one
#: compiled pass over their ids (about 10 ms per million tokens), which saves 0.4-1.0 bytes per
#: token on disk. (Opening already reads every id once, for the bounds check.)
IVF_STORED_MIN_TOKENS = 1 << 22


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: dict) -> None:
    """Write JSON via a temporary file, fsync, rename, fsync the directory (the temporary file is
    removed if anything fails; OS errors become IndexWriteError/DiskFullError)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise faults.os_error(e, path, "writing") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_manifest(root: Path, manifest: dict) -> None:
    """IndexCorruptedError unless ``manifest`` (read from ``root``) is one this version can open."""
    if manifest.get("format") != FORMAT_NAME:
        raise IndexCorruptedError(f"{root / MANIFEST} is not a maxsim index manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version not in READABLE_VERSIONS:
        raise IndexCorruptedError(
            f"index format version {version!r} is not supported by this maxsim "
            f"(it reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )
    for key in ("dim", "nbits"):
        if not isinstance(manifest.get(key), int):
            raise IndexCorruptedError(f"{root / MANIFEST} has no valid {key!r}")
    refine = manifest.get("refine_bits", 0)
    try:
        check_nbits(manifest["nbits"], manifest["dim"])
        check_refine_bits(manifest["nbits"], refine)
    except ValueError as e:
        raise IndexCorruptedError(f"{root / MANIFEST}: {e}") from None
    if bool(refine) != (version >= REFINE_FORMAT_VERSION):
        raise IndexCorruptedError(f"{root / MANIFEST}: format version {version} with refine_bits {refine}")


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
    try:
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
    except OSError as e:
        remove_dir(tmp)  # a full disk must not stay full of our partial files
        raise faults.os_error(e, tmp, f"writing a {prefix} directory") from e
    except BaseException:
        remove_dir(tmp)
        raise
    try:
        fsync_dir(root)
    except OSError as e:
        remove_dir(root / name)
        raise faults.os_error(e, root, "syncing the index directory") from e
    return name


def load_array_dir(
    path: Path, names: tuple[str, ...], *, verify_all: bool = False
) -> tuple[dict[str, np.ndarray], dict]:
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
            raise IndexCorruptedError(
                f"index file is truncated or resized: {fpath} has {size} bytes, expected {meta['bytes']}"
            )
        if verify_all or size <= CRC_ON_OPEN_BYTES:
            if _crc_file(fpath) != meta["crc32"]:
                raise IndexCorruptedError(f"index file is corrupted (checksum mismatch): {fpath}")
        try:
            arr = np.load(fpath, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - a damaged header fails in many ways (ValueError, tokenize.TokenError, ...)
            raise IndexCorruptedError(
                f"index file cannot be read as an array ({type(e).__name__}: {e}): {fpath}"
            ) from None
        if list(arr.shape) != meta["shape"] or arr.dtype.str != meta["dtype"]:
            raise IndexCorruptedError(
                f"index file header is corrupted: {fpath} holds {arr.dtype.str}{list(arr.shape)}, "
                f"expected {meta['dtype']}{meta['shape']}"
            )
        out[name] = arr
    return out, info


def directory_state(root: Path) -> str:
    """ "index" (has a manifest), "incomplete" (only index files, no manifest: an interrupted
    create) or "other" (anything else, which create never deletes)."""
    if (root / MANIFEST).exists():
        return "index"
    names = {p.name for p in root.iterdir()}
    ours = {LOCK, CATALOG, *(CATALOG + x for x in ("-wal", "-shm", "-journal"))}
    if names and all(n in ours or n.startswith(("tmp-", "seg-", "codec-", f".{MANIFEST}.")) for n in names):
        return "incomplete"
    return "other"


def clear_index_dir(root: Path) -> None:
    """Delete an index's files except its lock (held by the caller). The manifest goes first, so a
    crash part-way leaves an interrupted creation (see :func:`directory_state`), never an index
    with half its files."""
    (root / MANIFEST).unlink(missing_ok=True)
    fsync_dir(root)
    for entry in root.iterdir():
        if entry.name != LOCK:
            remove_dir(entry) if entry.is_dir() else entry.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# codecs


def centroid_dtype(format_version: int) -> np.dtype:
    """dtype of the stored centroid table for an index of ``format_version`` 1 or 2."""
    return np.dtype(np.float32) if format_version < 2 else np.dtype(np.float16)


#: Bits per dimension of the centroid grid of format version 3.
TABLE_BITS = 4


def table_bits(format_version: int) -> int:
    """Bits per dimension of the stored centroid grid (0: a float16/float32 table)."""
    return TABLE_BITS if format_version >= 3 else 0


def packs_ids(format_version: int) -> bool:
    """Whether segments of ``format_version`` store centroid ids bit-packed."""
    return format_version >= 3


def centroid_bytes(format_version: int, dim: int) -> int:
    """Stored bytes of one centroid."""
    bits = table_bits(format_version)
    return dim * bits // 8 if bits else dim * centroid_dtype(format_version).itemsize


def write_codec(root: Path, codec: ResidualCodec, n_tokens_trained: int, format_version: int = FORMAT_VERSION) -> str:
    extra = {"nbits": codec.nbits, "n_tokens_trained": int(n_tokens_trained)}
    if table_bits(format_version):
        if codec.table_bits != table_bits(format_version):
            raise InvalidArgumentError(
                f"format version {format_version} stores a {table_bits(format_version)}-bit centroid grid "
                f"(train with train_codec(table_bits={table_bits(format_version)}))"
            )
        levels = pack_codes(codec.table_codes(), codec.table_bits)
        assert codec.table_grid is not None  # a codec with table_bits has its grid
        table = {"centroid_levels": levels, "centroid_grid": codec.table_grid.astype(np.float32)}
        extra["table_bits"] = codec.table_bits
    else:
        c = codec.centroids.astype(centroid_dtype(format_version))
        if not np.array_equal(c.astype(np.float32), codec.centroids):
            raise InvalidArgumentError(
                "the codec's centroids are not representable in the stored dtype (train with train_codec)"
            )
        table = {"centroids": c}
    arrays = {**table, "cutoffs": codec.cutoffs, "weights": codec.weights}
    if codec.refinement is not None:  # the nested finer buckets of the refinement plane
        if format_version < REFINE_FORMAT_VERSION:
            raise InvalidArgumentError(f"format version {format_version} has no refinement plane")
        arrays.update(refine_cutoffs=codec.refinement.cutoffs, refine_weights=codec.refinement.weights)
        extra["refine_bits"] = codec.refine_bits
    return write_array_dir(root, "codec", arrays, extra)


def load_codec(root: Path, name: str, *, verify_all: bool = False) -> ResidualCodec:
    listing = read_json(root / name / FILES_JSON, "array directory listing")
    gridded = isinstance(listing.get("files"), dict) and "centroid_levels" in listing["files"]
    table = ("centroid_levels", "centroid_grid") if gridded else ("centroids",)
    refined = isinstance(listing.get("files"), dict) and "refine_weights" in listing["files"]
    fine = ("refine_cutoffs", "refine_weights") if refined else ()
    arrays, info = load_array_dir(root / name, (*table, "cutoffs", "weights", *fine), verify_all=verify_all)
    try:
        grid, bits = None, 0
        if gridded:
            bits = int(info["table_bits"])
            grid = np.ascontiguousarray(arrays["centroid_grid"], dtype=np.float32)
            levels = np.asarray(arrays["centroid_levels"])
            if (
                bits != TABLE_BITS
                or levels.dtype != np.uint8
                or levels.ndim != 2
                or grid.shape != (1 << bits, levels.shape[1] * 8 // bits)
            ):
                raise InvalidArgumentError(f"centroid grid of {bits} bits, levels {levels.dtype}{levels.shape}")
            centroids = grid_values(unpack_codes(levels, bits), grid)  # [k, dim] float32, in memory
        else:
            if arrays["centroids"].dtype not in (np.float16, np.float32):
                raise IndexCorruptedError(f"codec {root / name} has centroids of dtype {arrays['centroids'].dtype}")
            centroids = np.ascontiguousarray(arrays["centroids"], dtype=np.float32)  # float16 on disk: widened once
        nbits = int(info["nbits"])
        refinement = None
        if refined:
            refinement = ResidualCodec(
                centroids,
                np.ascontiguousarray(arrays["refine_cutoffs"]),
                np.ascontiguousarray(arrays["refine_weights"]),
                nbits + int(info["refine_bits"]),
                table_grid=grid,
                table_bits=bits,
            )
        return ResidualCodec(
            centroids,
            np.ascontiguousarray(arrays["cutoffs"]),
            np.ascontiguousarray(arrays["weights"]),
            nbits,
            table_grid=grid,
            table_bits=bits,
            refinement=refinement,
        )
    except (KeyError, ValueError) as e:
        raise IndexCorruptedError(f"codec {root / name} is inconsistent: {e}") from None


# --------------------------------------------------------------------------------------------
# segments

SEGMENT_ARRAYS = ("codes", "residuals", "offsets", "docnos", "ivf_offsets", "ivf_docs")
#: The second residual plane of a version-4 segment: read only for the final exact re-rank.
REFINE_ARRAY = "residuals_refine"


@dataclass(frozen=True, eq=False)
class Segment:
    """An immutable, memory-mapped run of documents encoded with one codec.

    codes: centroid ids, uint16 [n_tokens] (versions 1-2, ``code_bits`` 0) or a uint8 bit stream
    of ``code_bits`` bits per token (version 3); residuals uint8 [n_tokens, bytes]; offsets int64 [n_docs + 1];
    docnos int64 [n_docs] ascending global document numbers; ivf_offsets int64 [k + 1] and
    ivf_docs uint16 [n_pairs]: the local documents having a token at each centroid; refine uint8
    [n_tokens, refine bytes] the refinement plane (version 4, memory-mapped, read only for the
    documents of the final re-rank), else None.
    """

    name: str
    codec: str
    codes: np.ndarray
    residuals: np.ndarray
    offsets: np.ndarray
    docnos: np.ndarray
    ivf_offsets: np.ndarray
    ivf_docs: np.ndarray
    code_bits: int = 0
    refine: np.ndarray | None = None

    @property
    def n_docs(self) -> int:
        return int(self.docnos.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])


def build_ivf(
    codes: np.ndarray, offsets: np.ndarray, n_centroids: int, code_bits: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists centroid -> local docs: (ivf_offsets int64 [k + 1], ivf_docs uint16 [n_pairs])."""
    from maxsim.index.kernels import build_ivf as kernel  # noqa: PLC0415 - numba, loaded on first use

    return kernel(codes, code_bits, np.ascontiguousarray(offsets, dtype=np.int64), int(n_centroids))


def write_segment(
    root: Path,
    codec_name: str,
    n_centroids: int,
    codes: np.ndarray,
    residuals: np.ndarray,
    offsets: np.ndarray,
    docnos: np.ndarray,
    pack: bool = False,
    refine: np.ndarray | None = None,
) -> str:
    """Write a segment; ``codes`` are plain centroid ids, bit-packed on disk when ``pack``;
    ``refine`` is the refinement plane of an index that has one."""
    if len(docnos) > MAX_SEGMENT_DOCS:
        raise InvalidArgumentError(f"a segment holds at most {MAX_SEGMENT_DOCS} documents")
    extra: dict[str, Any] = {"codec": codec_name, "n_docs": int(len(docnos)), "n_tokens": int(len(codes))}
    arrays = {"residuals": residuals, "offsets": offsets.astype(np.int64), "docnos": docnos.astype(np.int64)}
    if refine is not None:
        if len(refine) != len(residuals):
            raise InvalidArgumentError(f"refinement plane of {len(refine)} tokens for {len(residuals)} residuals")
        arrays[REFINE_ARRAY] = refine
    if not pack or len(codes) >= IVF_STORED_MIN_TOKENS:
        arrays["ivf_offsets"], arrays["ivf_docs"] = build_ivf(codes, offsets, n_centroids)
    if pack:
        extra["code_bits"] = id_bits(n_centroids)
        codes = pack_ids(codes, extra["code_bits"])
    return write_array_dir(root, "seg", {"codes": codes, **arrays}, extra)


def load_segment(root: Path, name: str, codec: ResidualCodec, *, verify_all: bool = False) -> Segment:
    from maxsim.index.kernels import max_code  # noqa: PLC0415 - numba, only once a segment is opened

    listing = read_json(root / name / FILES_JSON, "array directory listing")
    files: dict = listing["files"] if isinstance(listing.get("files"), dict) else {}
    # version 3 leaves the inverted lists of small segments out (rebuilt below); packed ids mark it
    derived = "code_bits" in listing and "ivf_docs" not in files and "ivf_offsets" not in files
    names = tuple(n for n in SEGMENT_ARRAYS if not (derived and n.startswith("ivf_")))
    if codec.refinement is not None:  # listed or not: a missing plane is damage, never a 2-bit segment
        names += (REFINE_ARRAY,)
    elif REFINE_ARRAY in files:
        raise IndexCorruptedError(f"segment {root / name} has a refinement plane its codec does not have")
    arrays, info = load_array_dir(root / name, names, verify_all=verify_all)
    offsets = np.asarray(arrays["offsets"])
    docnos = np.asarray(arrays["docnos"])
    codes = arrays["codes"]
    n_docs = len(docnos)
    problems = []
    code_bits = info.get("code_bits", 0)
    if not isinstance(code_bits, int) or not 0 <= code_bits <= MAX_ID_BITS:
        problems.append(f"invalid code_bits {code_bits!r}")
        code_bits = 0
    n_tokens = int(offsets[-1]) if code_bits and len(offsets) else len(codes)
    if code_bits and (
        codes.dtype != np.uint8 or codes.ndim != 1 or len(codes) != packed_ids_nbytes(n_tokens, code_bits)
    ):
        problems.append(
            f"packed centroid ids {codes.dtype}{codes.shape} do not hold {n_tokens} ids of {code_bits} bits"
        )
    if len(offsets) != n_docs + 1 or (n_docs >= 0 and len(offsets) and (offsets[0] != 0 or offsets[-1] != n_tokens)):
        problems.append("document offsets do not cover the tokens")
    elif n_docs and np.any(np.diff(offsets) < 0):
        problems.append("document offsets decrease")
    if arrays["residuals"].shape != (n_tokens, codec.bytes_per_token):
        problems.append(f"residuals shape {arrays['residuals'].shape} != ({n_tokens}, {codec.bytes_per_token})")
    refine = arrays.get(REFINE_ARRAY)
    if refine is not None and (refine.dtype != np.uint8 or refine.shape != (n_tokens, codec.refine_bytes_per_token)):
        problems.append(
            f"refinement plane {refine.dtype}{refine.shape} != uint8({n_tokens}, {codec.refine_bytes_per_token})"
        )
    if not derived:
        ivf_offsets = np.asarray(arrays["ivf_offsets"])
        if len(ivf_offsets) != codec.n_centroids + 1 or ivf_offsets[-1] != len(arrays["ivf_docs"]):
            problems.append("inverted-list offsets do not match the codec or the lists")
    if n_docs > 1 and np.any(np.diff(docnos) <= 0):
        problems.append("document numbers are not increasing")
    # bounds that the compiled kernels rely on (they do not check indices): cheap, always done
    if not problems and n_tokens:
        top = int(max_code(codes, code_bits, n_tokens)) if code_bits else int(np.asarray(codes).max())
        if top >= codec.n_centroids:
            problems.append("a centroid id is out of range")
    if not problems and not derived and len(arrays["ivf_docs"]) and int(np.asarray(arrays["ivf_docs"]).max()) >= n_docs:
        problems.append("an inverted list points past the last document")
    if problems:
        raise IndexCorruptedError(f"segment {root / name} is inconsistent: {'; '.join(problems)}")
    if derived:  # ids are in range (checked above), so the lists are well formed
        ivf_offsets, ivf_docs = build_ivf(codes, offsets, codec.n_centroids, code_bits)
    else:
        ivf_offsets, ivf_docs = np.asarray(arrays["ivf_offsets"]), arrays["ivf_docs"]
    return Segment(
        name,
        str(info.get("codec")),
        codes,
        arrays["residuals"],
        offsets,
        docnos,
        ivf_offsets,
        ivf_docs,
        code_bits,
        refine,
    )


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
