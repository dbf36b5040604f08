"""Centroid scores of the query tokens, S^T = (Q C^T)^T float32 [k, nq]: the first cost of every
approximate search, and at a million documents (262,144 centroids) the largest one.

Float32 products read the whole float32 table (128 MB at 262,144 x 128) for every query. Where
the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), a bfloat16 copy of the table is half
the bytes and its products run on those units: at 262,144 centroids the whole centroid step
(products, widening, best-centroid scan) took 26.2 ms against 48.4 in float32 on one core
(``bench/scale.py --stages diagnose``: its ``wide`` and ``wide-f32`` rows). The scores then carry bfloat16
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

import numba
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
#: Rows per bfloat16 product: the block's scores (2 MB at 32 query tokens) stay in cache
#: while they are widened to float32.
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
    """out float32 [hi - lo, nq] = centroids[lo:hi] @ q.T, in float32 or through bfloat16."""
    if not bf16:
        kernels.rows_times(codec.centroids[lo:hi], np.ascontiguousarray(q.T), out=out)
        return
    import torch  # noqa: PLC0415

    table = _bf16_table(codec)
    qt = torch.from_numpy(np.ascontiguousarray(q.T)).to(torch.bfloat16)
    block = torch.empty((min(BF16_ROWS, hi - lo), q.shape[0]), dtype=torch.bfloat16)
    bits = block.view(torch.int16).numpy().view(np.uint16)
    for s in range(lo, hi, BF16_ROWS):
        e = min(s + BF16_ROWS, hi)
        torch.mm(table[s:e], qt, out=block[: e - s])
        widen_bf16(bits[: e - s], out[s - lo : e - lo])


@numba.njit(nogil=True, cache=True)
def widen_bf16(bits, out):  # pragma: no cover - jit
    """bfloat16 bit patterns uint16 [n, m] -> float32 out [n, m]; exact (bfloat16 is the top half
    of a float32)."""
    n, m = bits.shape
    for i in range(n):
        row = out[i].view(np.uint32)
        for j in range(m):
            row[j] = np.uint32(bits[i, j]) << 16
