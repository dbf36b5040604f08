"""Centroid scores of the query tokens, S^T = (Q C^T)^T float32 [k, nq]: the first cost of every
approximate search, and at a million documents (262,144 centroids) the largest one.

Float32 products read the whole float32 table (128 MB at 262,144 x 128) for every query. Where
the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), a bfloat16 copy of the table is half
the bytes and its products run on those units. The bfloat16 scores are then kept as int16 *order
keys* (the bit pattern, with the magnitude bits of negative values flipped, so integer order is
float order): the best-centroid scan and stage 2's per-token maxima become integer compares 32
lanes wide over a table half the size of float32 scores, and nothing is widened. Speed figures
are in docs/index.md (from ``bench/scale.py --stages diagnose``). The scores carry bfloat16
rounding (about 2e-3 on scores near 1), which only stages 1-2 see: they choose which documents
are scored exactly, and stage 3 re-ranks with float32 query vectors, so returned scores are
unchanged. Small tables stay float32, where the product costs little and exact centroid choice
keeps results bit-identical to earlier versions.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Literal

import numpy as np

from maxsim.errors import InvalidArgumentError
from maxsim.index import kernels

if TYPE_CHECKING:
    from maxsim.compression.residual import ResidualCodec

CentroidScores = Literal["auto", "float32", "bfloat16"]
MODES = ("auto", "float32", "bfloat16")
#: "auto" picks bfloat16 from this many centroids up (1M-document indexes have 262,144; at
#: 65,536 the float32 product is already some 10 ms of every query).
BF16_MIN_CENTROIDS = 65_536
#: Rows per bfloat16 product: the block's scores (1 MB at 32 query tokens) stay in cache
#: while they are turned into order keys.
BF16_ROWS = 16_384

_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TABLES_LOCK = threading.Lock()


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidArgumentError(f"centroid_scores must be one of {', '.join(MODES)}; got {mode!r}")


@functools.cache
def native_bf16() -> bool:
    """True where the CPU has bfloat16 instructions (read from /proc/cpuinfo; False elsewhere, so
    other platforms keep float32 unless asked)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def use_bf16(mode: str, n_centroids: int) -> bool:
    check_mode(mode)
    if mode == "auto":
        return n_centroids >= BF16_MIN_CENTROIDS and native_bf16()
    return mode == "bfloat16"


def _bf16_table(codec: ResidualCodec):
    """The codec's centroids as a bfloat16 torch tensor, made once per codec (the codec is
    immutable; the copy goes when the codec does)."""
    with _TABLES_LOCK:
        table = _TABLES.get(codec)
        if table is None:
            import torch  # noqa: PLC0415 - only indexes with large tables pay for the import

            table = torch.from_numpy(np.ascontiguousarray(codec.centroids)).to(torch.bfloat16)
            _TABLES[codec] = table
        return table


def score_rows(codec: ResidualCodec, q: np.ndarray, lo: int, hi: int, out: np.ndarray, bf16: bool) -> None:
    """Scores of centroids [lo, hi) against q [nq, dim] into out [hi - lo, nq]: float32
    products into a float32 ``out``, or bfloat16 products into an int16 ``out`` as order keys
    (:func:`maxsim.index.kernels.order_keys`; :func:`keys_to_float32` gives their values)."""
    if not bf16:
        kernels.rows_times(codec.centroids[lo:hi], np.ascontiguousarray(q.T), out=out)
        return
    import torch  # noqa: PLC0415

    table = _bf16_table(codec)
    qt = torch.from_numpy(np.ascontiguousarray(q.T)).to(torch.bfloat16)
    for s in range(lo, hi, BF16_ROWS):
        e = min(s + BF16_ROWS, hi)
        block = out[s - lo : e - lo]
        torch.mm(table[s:e], qt, out=torch.from_numpy(block).view(torch.bfloat16))
        kernels.order_keys(block)  # while the block is still in cache


def keys_to_float32(keys: np.ndarray) -> np.ndarray:
    """float32 values of int16 order keys of bfloat16 numbers (exact: a bfloat16 number is the top
    half of a float32)."""
    bits = np.array(keys, dtype=np.int16, order="C")  # a copy: order_keys maps in place
    kernels.order_keys(bits)
    return (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
