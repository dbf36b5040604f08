"""Bit packing of small integer codes (1, 2 or 4 bits each) into bytes.

Layout: the codes of one row are packed in order, ``8 // nbits`` codes per byte, the first code
in the most significant bits. A row of ``dim`` codes becomes ``dim * nbits // 8`` bytes.
"""

from __future__ import annotations

import numpy as np

from maxsim.errors import InvalidArgumentError

SUPPORTED_NBITS: tuple[int, ...] = (1, 2, 4)


def check_nbits(nbits: int, dim: int) -> None:
    """Raise ValueError unless ``nbits`` is supported and ``dim * nbits`` fills whole bytes."""
    if nbits not in SUPPORTED_NBITS:
        raise InvalidArgumentError(f"nbits must be one of {SUPPORTED_NBITS}, got {nbits!r}")
    if dim <= 0 or (dim * nbits) % 8 != 0:
        raise InvalidArgumentError(f"dim * nbits must be a positive multiple of 8, got dim={dim}, nbits={nbits}")


def pack_codes(codes: np.ndarray, nbits: int) -> np.ndarray:
    """Pack codes uint8 [n, dim] (values < 2**nbits) into uint8 [n, dim * nbits // 8].

    >>> pack_codes(np.array([[3, 0, 1, 2]], dtype=np.uint8), 2).tolist()  # 0b11_00_01_10
    [[198]]
    """
    n, dim = codes.shape
    check_nbits(nbits, dim)
    per_byte = 8 // nbits
    grouped = codes.astype(np.uint8, copy=False).reshape(n, dim // per_byte, per_byte)
    shifts = (nbits * np.arange(per_byte - 1, -1, -1)).astype(np.uint8)  # [per_byte]
    return np.bitwise_or.reduce(grouped << shifts, axis=2).astype(np.uint8)


def unpack_table(nbits: int) -> np.ndarray:
    """Codes held by each byte value: uint8 [256, 8 // nbits]."""
    per_byte = 8 // nbits
    values = np.arange(256, dtype=np.uint16)[:, None]
    shifts = nbits * np.arange(per_byte - 1, -1, -1)[None, :]
    return ((values >> shifts) & ((1 << nbits) - 1)).astype(np.uint8)


def unpack_codes(packed: np.ndarray, nbits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: uint8 [n, n_bytes] -> uint8 [n, n_bytes * 8 // nbits].

    >>> unpack_codes(np.array([[198]], dtype=np.uint8), 2).tolist()
    [[3, 0, 1, 2]]
    """
    n, n_bytes = packed.shape
    return unpack_table(nbits)[packed].reshape(n, n_bytes * (8 // nbits))


# ---- centroid ids: ``id_bits`` bits each, one little-endian bit stream (format version 3)

#: Widest packed centroid id: an id then spans at most 4 bytes of the stream (kernels read 4).
MAX_ID_BITS = 24


def id_bits(n_centroids: int) -> int:
    """Bits needed for a centroid id below ``n_centroids`` (at least 1, at most ``MAX_ID_BITS``).

    >>> id_bits(4096), id_bits(4097), id_bits(1), id_bits(262_144)
    (12, 13, 1, 18)
    """
    if not 1 <= n_centroids <= 1 << MAX_ID_BITS:
        raise InvalidArgumentError(f"centroid ids are packed for 1..{1 << MAX_ID_BITS} centroids, got {n_centroids}")
    return max(1, (n_centroids - 1).bit_length())


def packed_ids_nbytes(n: int, bits: int) -> int:
    """Bytes of ``n`` ids packed at ``bits`` bits each."""
    return (n * bits + 7) // 8


def pack_ids(ids: np.ndarray, bits: int, chunk: int = 1 << 20) -> np.ndarray:
    """Pack integer ids [n] (each < 2**bits) into a bit stream: id t occupies bits
    ``[t * bits, (t + 1) * bits)``, least significant bit first; uint8 [ceil(n * bits / 8)].

    >>> pack_ids(np.array([1, 2, 3]), 4).tolist()  # 0x21, 0x03
    [33, 3]
    """
    ids = np.asarray(ids).reshape(-1)
    out = np.zeros(packed_ids_nbytes(len(ids), bits), dtype=np.uint8)
    shifts = np.arange(bits, dtype=np.uint32)
    for start in range(0, len(ids), chunk):  # chunk is a multiple of 8: each chunk fills whole bytes
        block = ids[start : start + chunk].astype(np.uint32)
        stream = ((block[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
        packed = np.packbits(stream, bitorder="little")
        first = start * bits // 8
        out[first : first + len(packed)] = packed
    return out


def unpack_ids(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_ids`: int64 [n] (pure numpy reference; kernels read ids in place)."""
    stream = np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little")[: n * bits].reshape(n, bits)
    return (stream.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=1)
