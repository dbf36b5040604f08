"""The four embedding types of the Jina API, and their inverses (used by tests and clients).

- ``float``: each vector as a list of floats (float32 values, printed exactly).
- ``base64``: each vector's little-endian float32 bytes, base64-encoded; one string per vector.
- ``ubinary``: each vector's sign bits (1 where the value is > 0), packed 8 per uint8,
  most significant bit first (``numpy.packbits``): 16 bytes for 128 dimensions.
- ``binary``: the same bytes as int8, i.e. ``ubinary - 128``; clients add 128 and unpack.
"""

from __future__ import annotations

import base64

import numpy as np

from maxsim.errors import InvalidArgumentError

EMBEDDING_TYPES = ("float", "base64", "binary", "ubinary")


def encode_vectors(v: np.ndarray, kind: str) -> list | np.ndarray:
    """[n, dim] float32 -> the JSON value of one item's ``embeddings`` in the given type.

    ``float`` stays a float32 array: the response writer (orjson) prints each value's shortest
    float32 form, which reads back to the identical float32."""
    if kind == "float":
        return np.ascontiguousarray(v, dtype=np.float32)
    if kind == "base64":
        le = v.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in le]
    packed = np.packbits(v > 0, axis=1)
    if kind == "ubinary":
        return packed.tolist()
    if kind == "binary":
        return (packed.astype(np.int16) - 128).astype(np.int8).tolist()
    raise InvalidArgumentError(f"unknown embedding type {kind!r}; use one of {EMBEDDING_TYPES}")


def decode_vectors(value: list, kind: str, dim: int) -> np.ndarray:
    """Inverse of :func:`encode_vectors`: floats for float/base64, 0/1 sign bits for the binary types."""
    if kind == "float":
        return np.asarray(value, dtype=np.float32).reshape(-1, dim)
    if kind == "base64":
        return np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in value]).astype(np.float32)
    if kind == "ubinary":
        return np.unpackbits(np.asarray(value, dtype=np.uint8).reshape(len(value), -1), axis=1)[:, :dim]
    if kind == "binary":
        return np.unpackbits(
            (np.asarray(value, dtype=np.int16) + 128).astype(np.uint8).reshape(len(value), -1), axis=1
        )[:, :dim]
    raise InvalidArgumentError(f"unknown embedding type {kind!r}; use one of {EMBEDDING_TYPES}")
