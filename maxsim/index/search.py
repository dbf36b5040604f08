"""Search over compressed segments: PLAID-style candidate generation, pruning, exact re-ranking.

Pipeline for one query Q float32 [nq, dim] over the segments of one snapshot (the budgets
``n_candidates`` and ``n_exact`` are for the whole index, not per segment: an index of 1M
documents has 16 segments, and per-segment budgets made its search cost grow with their count):

1. Centroid scores S = Q C^T [nq, k]. Each query token probes its ``nprobe`` best centroids;
   the documents in their inverted lists are the candidates, scored by summing, per query token,
   the best probed-centroid score (or the next centroid's score when none of the lists holds the
   document): :func:`maxsim.index.kernels.ivf_candidates`.
2. The best ``n_candidates`` are re-scored by centroid interaction (MaxSim with each document
   token replaced by its centroid, over all centroids).
3. The best ``n_exact`` of those get exact MaxSim on decompressed vectors; top ``k`` returned.
   An index with a refinement plane (``refine_bits``) decodes these few documents from both
   residual planes; stages 1-2 never read that plane.

Exact mode skips 1-2 and scores every allowed document with stage 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from maxsim.errors import InvalidArgumentError
from maxsim.index import kernels
from maxsim.index.centroid_scores import CentroidScores, check_mode, keys_to_float32, score_rows, use_bf16
from maxsim.parallel import PARTS_PER_THREAD, run_parts

if TYPE_CHECKING:
    from maxsim.compression.residual import ResidualCodec
    from maxsim.index.storage import Segment


@dataclass(frozen=True)
class SearchConfig:
    """Search parameters; ``None`` means "chosen from k and the collection size".

    Parameters
    ----------
    nprobe : centroids probed per query token (default 4, 8 for indexes of 16k+ centroids).
    n_candidates : documents kept after stage 1 for centroid interaction, over the whole index (all
        segments compete for it; default max(40k, 400)).
    n_exact : documents re-ranked exactly after stage 2, over the whole index (default max(6k, 60)).
    exact : True forces exact scoring of every document, False forbids it (except that a filter
        leaving at most ``n_exact`` documents is always scored exactly), None picks exact mode
        when at most ``exact_threshold`` documents can match.
    exact_threshold : size below which exact mode is chosen automatically.
    threads : threads one query may use (its documents are split between them); the kernels
        release the GIL, so concurrent queries from separate threads also run in parallel.
    refine : in an index with a refinement plane, decode the exactly scored documents from both
        residual planes (True, default) or from the first plane alone (False: as a plain index
        of ``nbits`` bits, without reading the second plane).
    centroid_scores : "float32", "bfloat16" (half the bytes, about 3x faster at 1M documents on CPUs with native
        bfloat16; stages 1-2 only, see :mod:`maxsim.index.centroid_scores`) or "auto" (bfloat16
        for tables of 65,536+ centroids on such CPUs).
    """

    nprobe: int | None = None
    n_candidates: int | None = None
    n_exact: int | None = None
    exact: bool | None = None
    exact_threshold: int = 512
    threads: int = 1
    refine: bool = True
    centroid_scores: CentroidScores = "auto"

    def __post_init__(self) -> None:
        check_mode(self.centroid_scores)
        if not isinstance(self.threads, int) or self.threads < 1:
            raise InvalidArgumentError(f"threads must be a positive integer, got {self.threads!r}")
        for name in ("nprobe", "n_candidates", "n_exact"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise InvalidArgumentError(f"{name} must be a positive integer or None, got {v!r}")
        if self.exact_threshold < 0:
            raise InvalidArgumentError("exact_threshold must be >= 0")

    def resolved(self, k: int, n_centroids: int) -> tuple[int, int, int]:
        nprobe = self.nprobe or (8 if n_centroids >= 16384 else 4)
        n_cand = self.n_candidates or max(40 * k, 400)
        n_exact = self.n_exact or max(6 * k, 60)
        return min(nprobe, n_centroids), n_cand, max(k, min(n_exact, n_cand))


#: Work below which a stage is not split between threads (the hand-off, some 50 us, costs
#: more): stage 2 documents (a few us each), stage 3 documents (some 30 us each), centroids.
MIN_PARALLEL_DOCS = 64
MIN_PARALLEL_EXACT_DOCS = 8
MIN_PARALLEL_CENTROIDS = 1024


def split_map(fn, docs: np.ndarray, threads: int, min_docs: int = MIN_PARALLEL_DOCS) -> np.ndarray:
    """fn(docs) -> float32 [len(docs)], computed on slices of at least ``min_docs`` documents
    by up to ``threads`` threads."""
    if threads <= 1:
        return fn(docs)
    n_parts = min(threads * PARTS_PER_THREAD, len(docs) // max(1, min_docs))
    if n_parts <= 1:
        return fn(docs)
    return np.concatenate(run_parts(fn, np.array_split(docs, n_parts), threads))


@dataclass(frozen=True, eq=False)
class PreparedQuery:
    """Per-query arrays shared by all segments of one codec."""

    q: np.ndarray  # float32 [nq, dim]
    st: np.ndarray  # [k, nq] centroid scores transposed: float32, or int16 order keys of bfloat16
    probe_c: np.ndarray  # int64 [nq, nprobe]
    probe_s: np.ndarray  # float32 [nq, nprobe]
    impute: np.ndarray  # float32 [nq]

    def centroid_interaction(self, seg: Segment, docs: np.ndarray) -> np.ndarray:
        """Stage 2 scores of local ``docs`` of ``seg``: float32 [n]."""
        kernel = kernels.centroid_interaction_keys if self.st.dtype == np.int16 else kernels.centroid_interaction
        return kernel(docs, seg.offsets, seg.codes, self.st, seg.code_bits)


def prepare_query(
    q: np.ndarray, codec: ResidualCodec, nprobe: int, threads: int = 1, centroid_scores: CentroidScores = "auto"
) -> PreparedQuery:
    """Centroid scores of the query tokens and the centroids each probes (split by centroid
    ranges between ``threads`` threads; float32 or through bfloat16, see ``SearchConfig``)."""
    q = np.ascontiguousarray(q, dtype=np.float32)
    k = codec.centroids.shape[0]
    bf16 = use_bf16(centroid_scores, k)
    take = min(nprobe + 1, k)
    st = np.empty((k, q.shape[0]), dtype=np.int16 if bf16 else np.float32)  # [k, nq]
    lowest = np.iinfo(np.int16).min if bf16 else -np.inf

    def part(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 scores) of the range's best centroids per query token."""
        lo, hi = bounds
        score_rows(codec, q, lo, hi, st[lo:hi], bf16)
        ids, sc = kernels.top_centroids(st, lo, hi, take, st.dtype.type(lowest))
        return ids, keys_to_float32(sc) if bf16 else sc

    n_parts = 1 if threads <= 1 else min(threads * PARTS_PER_THREAD, k // MIN_PARALLEL_CENTROIDS)
    if n_parts <= 1:
        ids, sc = part((0, k))
    else:  # ranges aligned to the BLAS blocks; per-range winners merged by score, then id
        cuts = [(k * j // n_parts) // kernels.BLAS_ROWS * kernels.BLAS_ROWS for j in range(n_parts)] + [k]
        found = run_parts(part, list(zip(cuts[:-1], cuts[1:], strict=True)), threads)
        ids = np.concatenate([f[0] for f in found], axis=1)
        sc = np.concatenate([f[1] for f in found], axis=1)
        order = np.argsort(-sc, axis=1, kind="stable")[:, :take]
        ids = np.take_along_axis(ids, order, axis=1)
        sc = np.take_along_axis(sc, order, axis=1)
    if take > nprobe:
        impute = sc[:, nprobe].copy()
    else:  # every centroid probed: a missing document cannot occur for this token
        impute = np.minimum(sc[:, -1], 0.0)
    return PreparedQuery(
        q=q,
        st=st,
        probe_c=np.ascontiguousarray(ids[:, :nprobe]),
        probe_s=np.ascontiguousarray(sc[:, :nprobe]),
        impute=impute.astype(np.float32),
    )


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest scores, best first (ties broken by position)."""
    if n < len(scores):
        idx = np.argpartition(-scores, n - 1)[:n]
    else:
        idx = np.arange(len(scores))
    return idx[np.lexsort((idx, -scores[idx]))]


def decompress_docs(
    seg: Segment,
    codec: ResidualCodec,
    lut: np.ndarray,
    docs: np.ndarray,
    out_offsets: np.ndarray,
    out: np.ndarray,
    refine: bool = False,
) -> None:
    """Decompress the tokens of local ``docs`` into out float32 [total, dim] at out_offsets [n + 1]:
    from both residual planes when ``refine`` and the segment has a second one, else from the first."""
    if refine and seg.refine is not None and codec.refinement is not None:
        kernels.decompress_refined(
            docs,
            seg.offsets,
            seg.codes,
            seg.residuals,
            seg.refine,
            codec.centroids,
            codec.refinement.weights,
            codec.nbits,
            out_offsets,
            out,
            seg.code_bits,
        )
    else:
        kernels.decompress(
            docs, seg.offsets, seg.codes, seg.residuals, codec.centroids, lut, out_offsets, out, seg.code_bits
        )


def exact_maxsim(
    seg: Segment,
    codec: ResidualCodec,
    lut: np.ndarray,
    q: np.ndarray,
    docs: np.ndarray,
    max_tokens: int = 1 << 16,
    refine: bool = True,
) -> np.ndarray:
    """Exact MaxSim of q [nq, dim] against the decompressed tokens of local ``docs``: float32 [n].

    Decompresses up to ``max_tokens`` tokens at a time (from both residual planes when ``refine``
    and the index has two), multiplies with single-threaded BLAS, then reduces per document.
    """
    docs = docs.astype(np.int64, copy=False)
    lens = seg.offsets[docs + 1] - seg.offsets[docs]
    out = np.empty(len(docs), dtype=np.float32)
    qt = np.ascontiguousarray(q.T, dtype=np.float32)
    start = 0
    while start < len(docs):
        stop = start + max(1, int(np.searchsorted(np.cumsum(lens[start:]), max_tokens, side="right")))
        stop = min(stop, len(docs))
        chunk = docs[start:stop]
        offs = np.zeros(len(chunk) + 1, dtype=np.int64)
        np.cumsum(lens[start:stop], out=offs[1:])
        buf = np.empty((int(offs[-1]), q.shape[1]), dtype=np.float32)
        decompress_docs(seg, codec, lut, chunk, offs, buf, refine)
        out[start:stop] = kernels.segment_maxsum(kernels.rows_times(buf, qt), offs)
        start = stop
    return out


def search_segments(
    segments: Sequence[Segment],
    allowed: Sequence[np.ndarray],
    codec: ResidualCodec,
    lut: np.ndarray,
    pq: PreparedQuery,
    k: int,
    n_cand: int,
    n_exact: int,
    threads: int = 1,
    refine: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate top-k over all segments: (segment positions, local docs, exact scores), best first.

    Candidates of every segment compete for one budget: stage-1 and centroid-interaction scores
    depend only on the query and a document's codes (one codec), so they compare across segments.
    """
    found = [
        (si, *kernels.ivf_candidates(seg.ivf_offsets, seg.ivf_docs, pq.probe_c, pq.probe_s, pq.impute, mask))
        for si, (seg, mask) in enumerate(zip(segments, allowed, strict=True))
    ]
    found = [f for f in found if len(f[1])]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    seg_of = np.concatenate([np.full(len(d), si, dtype=np.int64) for si, d, _ in found])
    docs = np.concatenate([d for _, d, _ in found]).astype(np.int64, copy=False)
    approx = np.concatenate([a for _, _, a in found])
    if len(docs) > n_cand:
        keep = _top(approx, n_cand)
        seg_of, docs = seg_of[keep], docs[keep]

    def per_segment(fn, min_docs: int = MIN_PARALLEL_DOCS) -> np.ndarray:
        out = np.empty(len(docs), dtype=np.float32)
        for si in np.unique(seg_of):
            sel = np.flatnonzero(seg_of == si)
            out[sel] = split_map(lambda d, seg=segments[si]: fn(seg, d), docs[sel], threads, min_docs)
        return out

    if len(docs) > n_exact:
        ci = per_segment(pq.centroid_interaction)
        keep = _top(ci, n_exact)
        seg_of, docs = seg_of[keep], docs[keep]
    scores = per_segment(lambda seg, d: exact_maxsim(seg, codec, lut, pq.q, d, refine=refine), MIN_PARALLEL_EXACT_DOCS)
    best = _top(scores, min(k, len(docs)))
    return seg_of[best], docs[best], scores[best]


def exact_segment(
    seg: Segment,
    codec: ResidualCodec,
    lut: np.ndarray,
    q: np.ndarray,
    docs: np.ndarray,
    k: int,
    threads: int = 1,
    refine: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the given local docs of one segment."""
    if len(docs) == 0:
        return docs.astype(np.int64), np.zeros(0, dtype=np.float32)
    scores = split_map(
        lambda d: exact_maxsim(seg, codec, lut, q, d, refine=refine),
        docs.astype(np.int64),
        threads,
        MIN_PARALLEL_EXACT_DOCS,
    )
    best = _top(scores, min(k, len(docs)))
    return docs[best].astype(np.int64), scores[best]
