"""Bit packing of small integer codes (1, 2 or 4 bits each) into bytes.

Layout: the codes of one row are packed in order, ``8 // nbits`` codes per byte, the first code
in the most significant bits. A row of ``dim`` codes becomes ``dim * nbits // 8`` bytes.
"""

from __future__ import annotations

import numpy as np

SUPPORTED_NBITS: tuple[int, ...] = (1, 2, 4)


def check_nbits(nbits: int, dim: int) -> None:
    """Raise ValueError unless ``nbits`` is supported and ``dim * nbits`` fills whole bytes."""
    if nbits not in SUPPORTED_NBITS:
        raise ValueError(f"nbits must be one of {SUPPORTED_NBITS}, got {nbits!r}")
    if dim <= 0 or (dim * nbits) % 8 != 0:
        raise ValueError(f"dim * nbits must be a positive multiple of 8, got dim={dim}, nbits={nbits}")


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
