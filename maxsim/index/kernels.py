"""Numba kernels of the search pipeline (and the small-block BLAS helper). Loops run over documents and tokens inside compiled code.

Shapes used below: nq query tokens, dim dimensions, k centroids, B packed bytes per token,
P = 8 // nbits codes per byte. ``codes`` the centroid ids: int [n_tokens] when ``code_bits`` is
0, else a uint8 bit stream of ``code_bits`` bits per id (format version 3, see
:func:`maxsim.compression.bits.pack_ids`); ``packed`` uint8 [n_tokens, B],
``offsets`` int64 [n_docs + 1] (token range of each local document), ``lut`` float32 [B, 256, P].
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"nogil": True, "cache": True, "fastmath": True}


@numba.njit(inline="always", **_JIT)
def code_at(codes, t, code_bits):  # pragma: no cover - jit
    """Centroid id of token t: codes[t], or bits [t * code_bits, (t + 1) * code_bits) of the stream."""
    if code_bits == 0:
        return np.int64(codes[t])
    bit = np.int64(t) * code_bits
    pos = bit >> 3
    off = bit & 7
    v = np.int64(codes[pos])
    if off + code_bits > 8:
        v |= np.int64(codes[pos + 1]) << 8
        if off + code_bits > 16:
            v |= np.int64(codes[pos + 2]) << 16
            if off + code_bits > 24:
                v |= np.int64(codes[pos + 3]) << 24
    return (v >> off) & ((np.int64(1) << code_bits) - 1)


@numba.njit(**_JIT)
def gather_codes(codes, code_bits, tokens):  # pragma: no cover - jit
    """Centroid ids of the given tokens int64 [m] -> int64 [m]."""
    out = np.empty(tokens.shape[0], dtype=np.int64)
    for x in range(tokens.shape[0]):
        out[x] = code_at(codes, tokens[x], code_bits)
    return out


@numba.njit(**_JIT)
def max_code(codes, code_bits, n_tokens):  # pragma: no cover - jit
    """Largest centroid id of the first n_tokens tokens (-1 if none): the bounds check on open."""
    best = np.int64(-1)
    for t in range(n_tokens):
        c = code_at(codes, t, code_bits)
        if c > best:
            best = c
    return best


@numba.njit(**_JIT)
def build_ivf(codes, code_bits, offsets, n_centroids):  # pragma: no cover - jit
    """Inverted lists centroid -> local documents having a token there, each list ascending:
    (ivf_offsets int64 [k + 1], ivf_docs uint16 [n_pairs]). Two passes over the tokens."""
    n_docs = offsets.shape[0] - 1
    last = np.full(n_centroids, -1, dtype=np.int64)
    ivf_offsets = np.zeros(n_centroids + 1, dtype=np.int64)
    for d in range(n_docs):
        for t in range(offsets[d], offsets[d + 1]):
            c = code_at(codes, t, code_bits)
            if last[c] != d:
                last[c] = d
                ivf_offsets[c + 1] += 1
    for c in range(n_centroids):
        ivf_offsets[c + 1] += ivf_offsets[c]
    pos = ivf_offsets[:-1].copy()
    docs = np.empty(ivf_offsets[n_centroids], dtype=np.uint16)
    last[:] = -1
    for d in range(n_docs):
        for t in range(offsets[d], offsets[d + 1]):
            c = code_at(codes, t, code_bits)
            if last[c] != d:
                last[c] = d
                docs[pos[c]] = d
                pos[c] += 1
    return ivf_offsets, docs


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
def top_centroids(st, lo, hi, take, lowest):  # pragma: no cover - jit
    """The ``take`` best centroids in rows [lo, hi) of st [k, nq] (float32 scores or int16 order
    keys, see :func:`order_keys`), per query token.

    Returns (ids int64 [nq, take], scores [nq, take] of st's dtype) sorted by descending score,
    ties by centroid id; slots beyond hi - lo hold id -1 and score ``lowest``. One pass over the
    rows: a row is first compared with every query token's current ``take``-th score at once (a
    vector compare; most rows stop there), and only then inserted into the sorted buffers.
    """
    nq = st.shape[1]
    ids = np.full((nq, take), -1, dtype=np.int64)
    sc = np.full((nq, take), lowest, dtype=st.dtype)
    bar = np.full(nq, lowest, dtype=st.dtype)  # sc[:, take - 1], contiguous for the vector compare
    for c in range(lo, hi):
        row = st[c]
        over = False
        for i in range(nq):
            over |= row[i] > bar[i]
        if not over:
            continue
        for i in range(nq):
            v = row[i]
            if v > bar[i]:
                j = take - 1
                while j > 0 and sc[i, j - 1] < v:
                    sc[i, j] = sc[i, j - 1]
                    ids[i, j] = ids[i, j - 1]
                    j -= 1
                sc[i, j] = v
                ids[i, j] = c
                bar[i] = sc[i, take - 1]
    return ids, sc


@numba.njit(inline="always", **_JIT)
def order_key(v):  # pragma: no cover - jit
    """int16 bfloat16 bit pattern <-> order key (an involution): negative values get their
    magnitude bits flipped, so that integer order is float order."""
    return v ^ (np.int16(-(v < 0)) & np.int16(0x7FFF))


@numba.njit(**_JIT)
def order_keys(bits):  # pragma: no cover - jit
    """In place over a C-contiguous int16 array: bfloat16 bit patterns <-> order keys."""
    flat = bits.reshape(-1)
    for x in range(flat.shape[0]):
        flat[x] = order_key(flat[x])


@numba.njit(**_JIT)
def centroid_interaction(docs, offsets, codes, st, code_bits=0):  # pragma: no cover - jit
    """Stage 2: MaxSim with each token replaced by its centroid. st float32 [k, nq] = (Q C^T)^T."""
    n = docs.shape[0]
    nq = st.shape[1]
    out = np.empty(n, dtype=np.float32)
    for x in range(n):
        d = docs[x]
        best = np.full(nq, -np.inf, dtype=np.float32)
        for t in range(offsets[d], offsets[d + 1]):
            row = st[code_at(codes, t, code_bits)]
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
def centroid_interaction_keys(docs, offsets, codes, keys, code_bits=0):  # pragma: no cover - jit
    """:func:`centroid_interaction` over int16 order keys of bfloat16 scores [k, nq]: the max per
    query token is an integer max (32 lanes per vector), one 64-byte row per token; the sum is
    taken over the float32 values of the maxima, in the same order as the float32 kernel."""
    n = docs.shape[0]
    nq = keys.shape[1]
    out = np.empty(n, dtype=np.float32)
    best = np.empty(nq, dtype=np.int16)
    wide = np.empty(nq, dtype=np.uint32)
    as_float = wide.view(np.float32)
    for x in range(n):
        d = docs[x]
        best[:] = -32768
        for t in range(offsets[d], offsets[d + 1]):
            row = keys[code_at(codes, t, code_bits)]
            for i in range(nq):
                best[i] = max(best[i], row[i])
        s = np.float32(0.0)
        if offsets[d + 1] > offsets[d]:
            for i in range(nq):
                wide[i] = np.uint32(np.uint16(order_key(best[i]))) << 16
            for i in range(nq):
                s += as_float[i]
        out[x] = s
    return out


@numba.njit(inline="always", **_JIT)
def normalise(o):  # pragma: no cover - jit
    """Scale the float32 vector o to unit length in place (a zero vector stays zero). A loop of its
    own, after the decode, so that the sum of squares vectorises."""
    norm = np.float32(0.0)
    for e in range(o.shape[0]):
        norm += o[e] * o[e]
    inv = np.float32(1.0) / max(np.sqrt(norm), np.float32(1e-12))
    for e in range(o.shape[0]):
        o[e] *= inv


@numba.njit(**_JIT)
def decompress(docs, offsets, codes, packed, centroids, lut, out_offsets, out, code_bits=0):  # pragma: no cover - jit
    """Decompress the tokens of ``docs`` into out float32 [total, dim] at ``out_offsets`` [n + 1]."""
    n = docs.shape[0]
    nbytes, _, per = lut.shape
    for x in range(n):
        d = docs[x]
        row = out_offsets[x]
        for t in range(offsets[d], offsets[d + 1]):
            c = code_at(codes, t, code_bits)
            o = out[row]
            if per == 4:  # 2 bits (unrolled: the compiler then keeps the byte's four codes in registers)
                for p in range(nbytes):
                    b = np.int64(packed[t, p])
                    e = 4 * p
                    o[e] = centroids[c, e] + lut[p, b, 0]
                    o[e + 1] = centroids[c, e + 1] + lut[p, b, 1]
                    o[e + 2] = centroids[c, e + 2] + lut[p, b, 2]
                    o[e + 3] = centroids[c, e + 3] + lut[p, b, 3]
            elif per == 2:  # 4 bits
                for p in range(nbytes):
                    b = np.int64(packed[t, p])
                    e = 2 * p
                    o[e] = centroids[c, e] + lut[p, b, 0]
                    o[e + 1] = centroids[c, e + 1] + lut[p, b, 1]
            else:
                for p in range(nbytes):
                    b = np.int64(packed[t, p])
                    for j in range(per):
                        o[p * per + j] = centroids[c, p * per + j] + lut[p, b, j]
            normalise(o)
            row += 1


@numba.njit(**_JIT)
def decompress_refined(
    docs, offsets, codes, packed, refine, centroids, fine_weights, nbits, out_offsets, out, code_bits=0
):  # pragma: no cover - jit
    """Like :func:`decompress`, from both residual planes: packed (high bits) and refine (low bits)
    uint8 [n_tokens, B] share one layout of ``nbits``-bit codes, and dimension e of a token decodes
    to ``fine_weights[e, high << nbits | low]`` (fine_weights float32 [dim, 2**(2 * nbits)])."""
    n = docs.shape[0]
    nbytes = packed.shape[1]
    per = 8 // nbits
    mask = (1 << nbits) - 1
    for x in range(n):
        d = docs[x]
        row = out_offsets[x]
        for t in range(offsets[d], offsets[d + 1]):
            c = code_at(codes, t, code_bits)
            o = out[row]
            if nbits == 4:  # the 4+4 layout, unrolled: each byte pair gives two 8-bit indices
                for p in range(nbytes):
                    hi = np.int64(packed[t, p])
                    lo = np.int64(refine[t, p])
                    e = 2 * p
                    o[e] = centroids[c, e] + fine_weights[e, (hi & 0xF0) | (lo >> 4)]
                    o[e + 1] = centroids[c, e + 1] + fine_weights[e + 1, ((hi & 0x0F) << 4) | (lo & 0x0F)]
            else:
                for p in range(nbytes):
                    hi = np.int64(packed[t, p])
                    lo = np.int64(refine[t, p])
                    for j in range(per):
                        shift = nbits * (per - 1 - j)
                        e = p * per + j
                        o[e] = (
                            centroids[c, e]
                            + fine_weights[e, (((hi >> shift) & mask) << nbits) | ((lo >> shift) & mask)]
                        )
            normalise(o)
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


def rows_times(x, yt, out=None):
    """x float32 [n, d] @ yt float32 [d, m] -> [n, m] (into ``out`` if given), in blocks that
    BLAS keeps single-threaded."""
    if out is None:
        out = np.empty((x.shape[0], yt.shape[1]), dtype=np.float32)
    for s in range(0, x.shape[0], BLAS_ROWS):
        np.matmul(x[s : s + BLAS_ROWS], yt, out=out[s : s + BLAS_ROWS])
    return out
