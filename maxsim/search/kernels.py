"""Numba kernels of the search pipeline (and the small-block BLAS helper). Loops run over documents and tokens inside compiled code.

Shapes used below: nq query tokens, dim dimensions, k centroids, B packed bytes per token,
P = 8 // nbits codes per byte. ``codes`` [n_tokens] centroid ids, ``packed`` uint8 [n_tokens, B],
``offsets`` int64 [n_docs + 1] (token range of each local document), ``lut`` float32 [B, 256, P].
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"nogil": True, "cache": True, "fastmath": True}


@numba.njit(**_JIT)
def ivf_candidates(ivf_offsets, ivf_docs, probe_c, probe_s, impute, allowed):  # pragma: no cover - jit
    """Stage 1: documents in the inverted lists of each query token's nearest centroids.

    probe_c int64 [nq, nprobe] (centroids by descending score per query token), probe_s float32
    [nq, nprobe] their scores, impute float32 [nq] the score assumed for a query token whose
    probed lists miss a document, allowed uint8 [n_docs]. Returns (docs int64 [m], approximate
    scores float32 [m]): sum over query tokens of the best probed-centroid score (or ``impute``).
    """
    nq, nprobe = probe_c.shape
    n_docs = allowed.shape[0]
    acc = np.zeros(n_docs, dtype=np.float32)
    seen = np.full(n_docs, -1, dtype=np.int32)
    touched = np.zeros(n_docs, dtype=np.uint8)
    cand = np.empty(n_docs, dtype=np.int64)
    n_cand = 0
    base = np.float32(0.0)
    for i in range(nq):
        base += impute[i]
        for j in range(nprobe):
            c = probe_c[i, j]
            gain = probe_s[i, j] - impute[i]
            for p in range(ivf_offsets[c], ivf_offsets[c + 1]):
                d = np.int64(ivf_docs[p])
                if seen[d] == i:
                    continue
                seen[d] = i
                if allowed[d] == 0:
                    continue
                acc[d] += gain
                if touched[d] == 0:
                    touched[d] = 1
                    cand[n_cand] = d
                    n_cand += 1
    docs = cand[:n_cand].copy()
    scores = np.empty(n_cand, dtype=np.float32)
    for x in range(n_cand):
        scores[x] = acc[docs[x]] + base
    return docs, scores


@numba.njit(**_JIT)
def centroid_interaction(docs, offsets, codes, st):  # pragma: no cover - jit
    """Stage 2: MaxSim with each token replaced by its centroid. st float32 [k, nq] = (Q C^T)^T."""
    n = docs.shape[0]
    nq = st.shape[1]
    out = np.empty(n, dtype=np.float32)
    for x in range(n):
        d = docs[x]
        best = np.full(nq, -np.inf, dtype=np.float32)
        for t in range(offsets[d], offsets[d + 1]):
            row = st[np.int64(codes[t])]
            for i in range(nq):
                if row[i] > best[i]:
                    best[i] = row[i]
        s = np.float32(0.0)
        if offsets[d + 1] > offsets[d]:
            for i in range(nq):
                s += best[i]
        out[x] = s
    return out


@numba.njit(**_JIT)
def decompress(docs, offsets, codes, packed, centroids, lut, out_offsets, out):  # pragma: no cover - jit
    """Decompress the tokens of ``docs`` into out float32 [total, dim] at ``out_offsets`` [n + 1]."""
    n = docs.shape[0]
    nbytes, _, per = lut.shape
    dim = out.shape[1]
    for x in range(n):
        d = docs[x]
        row = out_offsets[x]
        for t in range(offsets[d], offsets[d + 1]):
            c = np.int64(codes[t])
            norm = np.float32(0.0)
            for p in range(nbytes):
                b = np.int64(packed[t, p])
                for j in range(per):
                    val = centroids[c, p * per + j] + lut[p, b, j]
                    out[row, p * per + j] = val
                    norm += val * val
            inv = np.float32(1.0) / max(np.sqrt(norm), np.float32(1e-12))
            for e in range(dim):
                out[row, e] *= inv
            row += 1


@numba.njit(**_JIT)
def segment_maxsum(sims, out_offsets):  # pragma: no cover - jit
    """MaxSim from token similarities: sims float32 [t, nq] (rows grouped by document at
    ``out_offsets`` [n + 1]) -> float32 [n], sum over query tokens of the max over the rows."""
    n = out_offsets.shape[0] - 1
    nq = sims.shape[1]
    out = np.zeros(n, dtype=np.float32)
    best = np.empty(nq, dtype=np.float32)
    for x in range(n):
        if out_offsets[x + 1] == out_offsets[x]:
            continue
        best[:] = -np.inf
        for r in range(out_offsets[x], out_offsets[x + 1]):
            for i in range(nq):
                if sims[r, i] > best[i]:
                    best[i] = sims[r, i]
        s = np.float32(0.0)
        for i in range(nq):
            s += best[i]
        out[x] = s
    return out


#: Rows per matrix product. OpenBLAS runs products this small on the calling thread; larger ones
#: go to its thread pool, which stalls badly when the machine is busy (measured 15x slower).
BLAS_ROWS = 64


def rows_times(x, yt):
    """x float32 [n, d] @ yt float32 [d, m] -> [n, m], in blocks that BLAS keeps single-threaded."""
    out = np.empty((x.shape[0], yt.shape[1]), dtype=np.float32)
    for s in range(0, x.shape[0], BLAS_ROWS):
        np.matmul(x[s : s + BLAS_ROWS], yt, out=out[s : s + BLAS_ROWS])
    return out
