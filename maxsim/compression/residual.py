"""Residual codec: each token vector is stored as its nearest centroid plus a quantised residual.

For a token x with nearest centroid c, the residual r = x - c is quantised per dimension d into
one of B = 2**nbits buckets using learned cutoffs (quantiles of the training residuals of that
dimension); bucket b decodes to weights[d, b] (the mid-quantile of the bucket). Decoding gives
x_hat = normalize(c + weights[d, code_d]).

The centroid table itself can be stored on a per-dimension grid of ``2**table_bits`` values
(format version 3: 4 bits, evenly spaced over each dimension's range, 64 bytes per centroid at
dim 128 instead of 256 in float16).
The codec is trained against the gridded centroids, so storing them that way loses nothing:
residuals and decoding use exactly the stored values.

A codec may carry a *refinement*: a finer codec (``nbits + refine_bits`` bits per dimension,
same centroids) whose buckets nest this codec's, each bucket split into ``2**refine_bits``
sub-buckets. A residual's fine code is then ``coarse << refine_bits | low``: the coarse code is
exactly what this codec alone gives, and the low bits are a second, separately stored plane
(:meth:`ResidualCodec.encode_planes`) that only the final exact re-rank reads.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numba
import numpy as np

from maxsim.compression.bits import check_nbits, pack_codes, unpack_codes, unpack_table
from maxsim.compression.kmeans import assign_centroids, centroid_index, train_centroids
from maxsim.errors import InvalidArgumentError


@dataclass(frozen=True, eq=False)
class ResidualCodec:
    """Arrays of a trained codec.

    Attributes
    ----------
    centroids : float32 [k, dim], unit rows.
    cutoffs : float32 [dim, B - 1], increasing bucket boundaries per dimension.
    weights : float32 [dim, B], decoded residual value of each bucket per dimension.
    nbits : bits per dimension (1, 2 or 4; 8 for the fine codec of a 4+4 two-plane index).
    table_grid : float32 [2**table_bits, dim], the values each dimension of a centroid takes,
        when the centroids lie on such a grid, else None (stored as float16/float32).
    table_bits : bits per dimension of that grid (0 without one).
    refinement : the finer codec whose buckets nest these (see the module docstring), or None.
    """

    centroids: np.ndarray
    cutoffs: np.ndarray
    weights: np.ndarray
    nbits: int
    table_grid: np.ndarray | None = None
    table_bits: int = 0
    refinement: ResidualCodec | None = None

    def __post_init__(self) -> None:
        k, dim = self.centroids.shape
        if self.nbits != REFINED_NBITS:  # 8 bits only as the fine codec of a 4+4 two-plane index
            check_nbits(self.nbits, dim)
        buckets = 1 << self.nbits
        if self.cutoffs.shape != (dim, buckets - 1) or self.weights.shape != (dim, buckets):
            raise InvalidArgumentError(
                f"codec arrays disagree: centroids {self.centroids.shape}, cutoffs {self.cutoffs.shape}, "
                f"weights {self.weights.shape}, nbits {self.nbits}"
            )
        if self.table_grid is not None and (
            self.table_bits not in (4,) or self.table_grid.shape != (1 << self.table_bits, dim)
        ):
            raise InvalidArgumentError(
                f"codec grid {self.table_grid.shape} / {self.table_bits} bits does not fit dim {dim}"
            )
        if self.refinement is not None:
            fine = self.refinement
            check_refine_bits(self.nbits, fine.nbits - self.nbits)
            if fine.centroids is not self.centroids and not np.array_equal(fine.centroids, self.centroids):
                raise InvalidArgumentError("a codec's refinement must use the same centroids")
            step = 1 << (fine.nbits - self.nbits)
            if not np.array_equal(fine.cutoffs[:, step - 1 :: step], self.cutoffs):
                raise InvalidArgumentError("the refinement's buckets do not nest the codec's buckets")

    def table_codes(self) -> np.ndarray:
        """Grid levels of the centroids, uint8 [k, dim]; ValueError if they are not on the grid."""
        if self.table_grid is None:
            raise InvalidArgumentError("this codec's centroids are not on a grid")
        q = _grid_levels(self.centroids, self.table_grid)
        if not np.array_equal(grid_values(q, self.table_grid), self.centroids):
            raise InvalidArgumentError(
                "the codec's centroids are not on its grid (train with train_codec(table_bits=...))"
            )
        return q

    @functools.cached_property
    def centroid_index(self):
        """Nearest-centroid search over this codec's centroids, built once per codec: making it
        (k-means of the centroids into cells) grows with the centroid count, and a build encodes
        one chunk at a time."""
        return centroid_index(self.centroids)

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def n_centroids(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def code_dtype(self) -> np.dtype:
        """Smallest dtype that holds a centroid id."""
        return np.dtype(np.uint16) if self.n_centroids <= (1 << 16) else np.dtype(np.int32)

    @property
    def bytes_per_token(self) -> int:
        return self.dim * self.nbits // 8

    @property
    def refine_bits(self) -> int:
        """Bits per dimension of the refinement plane (0 without a refinement)."""
        return 0 if self.refinement is None else self.refinement.nbits - self.nbits

    @property
    def refine_bytes_per_token(self) -> int:
        return self.dim * self.refine_bits // 8

    def encode(self, x: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """Encode float32 [n, dim] -> (centroid ids [n] code_dtype, packed residuals uint8 [n, bytes])."""
        ids, packed, _ = self._encode(x, chunk, planes=False)
        return ids, packed

    def encode_planes(self, x: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Like :meth:`encode`, plus the refinement plane: the low ``refine_bits`` bits of each
        dimension's fine code, packed, uint8 [n, refine_bytes_per_token] (None without a refinement)."""
        return self._encode(x, chunk, planes=True)

    def _encode(self, x: np.ndarray, chunk: int, planes: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        n = len(x)
        fine = self.refinement if planes else None
        ids = np.empty(n, dtype=self.code_dtype)
        packed = np.empty((n, self.bytes_per_token), dtype=np.uint8)
        low = None if fine is None else np.empty((n, self.refine_bytes_per_token), dtype=np.uint8)
        index = self.centroid_index
        for start in range(0, n, chunk):
            block = np.asarray(x[start : start + chunk], dtype=np.float32)
            cid = assign_centroids(block, self.centroids, index=index)
            ids[start : start + len(block)] = cid
            resid = block - self.centroids[cid]
            if fine is None:
                packed[start : start + len(block)] = pack_codes(self.quantize(resid), self.nbits)
            else:  # the fine code's high bits are this codec's code (the buckets nest)
                assert low is not None
                codes = fine.quantize(resid)
                packed[start : start + len(block)] = pack_codes(codes >> self.refine_bits, self.nbits)
                low[start : start + len(block)] = pack_codes(codes & ((1 << self.refine_bits) - 1), self.refine_bits)
        return ids, packed, low

    def quantize(self, residuals: np.ndarray) -> np.ndarray:
        """Bucket index of each residual value: float32 [n, dim] -> uint8 [n, dim]."""
        if self.cutoffs.shape[1] == 255:  # the fine codec of a 4+4 index: 255 passes would cost minutes
            return _bucketize_255(np.ascontiguousarray(residuals, dtype=np.float32), self.cutoffs)
        codes = np.zeros(residuals.shape, dtype=np.uint8)
        for b in range(self.cutoffs.shape[1]):  # B - 1 <= 15 vectorised passes
            codes += residuals > self.cutoffs[:, b][None, :]
        return codes

    def lookup_table(self) -> np.ndarray:
        """Decoded residual values per packed byte: float32 [bytes_per_token, 256, 8 // nbits].

        ``lut[p, v, j]`` is the residual of dimension ``p * (8 // nbits) + j`` when byte ``p`` of a
        token's packed residual has value ``v``.
        """
        per_byte = 8 // self.nbits
        table = unpack_table(self.nbits)  # [256, per_byte] bucket ids
        w = self.weights.reshape(self.bytes_per_token, per_byte, -1)  # [p, j, B]
        j = np.arange(per_byte)
        return np.ascontiguousarray(w[:, j[None, :], table], dtype=np.float32)  # [p, 256, per_byte]

    def decode(self, centroid_ids: np.ndarray, packed: np.ndarray, refine: np.ndarray | None = None) -> np.ndarray:
        """Decode to float32 [n, dim] unit rows (pure numpy reference for the numba kernels); with
        ``refine`` (the refinement plane of the same tokens) at the refinement's precision."""
        if refine is None:
            lut = self.lookup_table()
            p = np.arange(packed.shape[1])[None, :]
            resid = lut[p, packed.astype(np.int64)].reshape(len(packed), self.dim)
        else:
            if self.refinement is None:
                raise InvalidArgumentError("this codec has no refinement to decode a second plane with")
            codes = unpack_codes(packed, self.nbits).astype(np.int64) << self.refine_bits
            codes |= unpack_codes(refine, self.refine_bits)
            resid = self.refinement.weights[np.arange(self.dim)[None, :], codes]
        x = self.centroids[centroid_ids.astype(np.int64)] + resid
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x.astype(np.float32, copy=False)


@numba.njit(nogil=True, cache=True)
def _bucketize_255(x: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:  # pragma: no cover - jit
    """Number of each dimension's cutoffs strictly below each value: float32 [n, dim], increasing
    cutoffs float32 [dim, 255] -> uint8 [n, dim]. A branch-free binary search, unrolled: eight
    steps whose outcome the CPU need not predict (6x a rolled loop, 20x numpy per dimension)."""
    n, dim = x.shape
    out = np.empty((n, dim), dtype=np.uint8)
    for i in range(n):
        for d in range(dim):
            v = x[i, d]
            c = cutoffs[d]
            lo = 128 * (c[127] < v)
            lo += 64 * (c[lo + 63] < v)
            lo += 32 * (c[lo + 31] < v)
            lo += 16 * (c[lo + 15] < v)
            lo += 8 * (c[lo + 7] < v)
            lo += 4 * (c[lo + 3] < v)
            lo += 2 * (c[lo + 1] < v)
            lo += c[lo] < v
            out[i, d] = lo
    return out


#: bits per dimension of the fine codec of a 4+4 two-plane index (no plain index uses 8 bits)
REFINED_NBITS = 8


def check_refine_bits(nbits: int, refine_bits: int) -> None:
    """Refinement planes pack like the first plane: ``refine_bits`` equals ``nbits`` (1, 2 or 4),
    so the two planes together hold 2, 4 or 8 bits per dimension (0 means no refinement)."""
    if isinstance(refine_bits, bool) or not isinstance(refine_bits, int):
        raise InvalidArgumentError(f"refine_bits must be an integer, got {refine_bits!r}")
    if refine_bits and not (refine_bits == nbits and nbits in (1, 2, 4)):
        raise InvalidArgumentError(
            f"refine_bits must be 0 or equal to nbits (1, 2 or 4), got refine_bits={refine_bits} with nbits={nbits}"
        )


def grid_values(levels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Centroids from grid levels uint8 [k, dim] and the per-dimension level values float32
    [2**bits, dim]: centroids[c, d] = grid[levels[c, d], d]."""
    return np.ascontiguousarray(grid[levels.astype(np.int64), np.arange(grid.shape[1])[None, :]], dtype=np.float32)


def _grid_levels(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Nearest grid value of each entry of x [k, dim] (grid [L, dim] increasing): uint8 [k, dim]."""
    cuts = (grid[1:].astype(np.float64) + grid[:-1]) / 2  # [L-1, dim]
    out = np.empty(x.shape, dtype=np.uint8)
    for d in range(x.shape[1]):  # per dimension, vectorised over centroids
        out[:, d] = np.searchsorted(cuts[:, d], x[:, d], side="left")
    return out


def to_grid(centroids: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Snap each dimension of centroids float32 [k, dim] to 2**bits evenly spaced values spanning
    that dimension's range: (levels uint8 [k, dim], grid float32 [2**bits, dim], increasing).

    Evenly spaced, not Lloyd-Max: on `shared` (8,192 centroids, same k-means) a per-dimension
    Lloyd-Max grid had the lower residual error (0.0479 vs 0.0496) but the lower recall@10
    ceiling (0.900 vs 0.914; float16: 0.920), as it coarsens the large components that make a
    centroid distinctive (bench/index_codec_ceiling.py).
    """
    n_levels = 1 << bits
    lo = centroids.min(axis=0).astype(np.float64)
    hi = centroids.max(axis=0).astype(np.float64)
    step = np.where(hi > lo, (hi - lo) / (n_levels - 1), 1.0)
    grid = (lo[None, :] + np.arange(n_levels)[:, None] * step[None, :]).astype(np.float32)
    return _grid_levels(centroids, grid), grid


def train_codec(
    sample: np.ndarray,
    n_centroids: int,
    nbits: int,
    *,
    seed: int = 0,
    niter: int = 10,
    lloyd_iters: int = 8,
    table_bits: int = 0,
    refine_bits: int = 0,
    checkpoint: str | os.PathLike | None = None,
) -> ResidualCodec:
    """Train centroids and per-dimension bucket cutoffs on a sample float32 [n, dim] of token vectors.

    Cutoffs start at the residual quantiles of each dimension (equal-mass buckets) and are refined
    by ``lloyd_iters`` Lloyd-Max steps (bucket value = mean of its residuals, cutoff = midpoint),
    which lowers the reconstruction error of the tails.

    ``table_bits`` (4) snaps the centroids to a per-dimension grid of that many bits (format
    version 3); 0 rounds them to float16 (versions 1 and 2). Either way the residuals are taken
    against the stored values.

    ``refine_bits`` adds a refinement (see :class:`ResidualCodec`): the codec itself is trained
    exactly as without it, then each of its buckets is split into ``2**refine_bits`` sub-buckets
    by the same Lloyd-Max steps on the residuals that fall in it.

    ``checkpoint``: a directory where a long k-means saves its steps (see
    :func:`~maxsim.compression.kmeans.train_centroids`).
    """
    check_nbits(nbits, sample.shape[1])
    check_refine_bits(nbits, refine_bits)
    centroids = train_centroids(sample, n_centroids, niter=niter, seed=seed, checkpoint=checkpoint)
    grid = None
    if table_bits:
        if table_bits != 4:
            raise InvalidArgumentError(f"table_bits must be 0 or 4, got {table_bits!r}")
        levels, grid = to_grid(centroids, table_bits)
        centroids = grid_values(levels, grid)
    else:
        # rounded to float16, the dtype of the stored table; residuals are taken against the
        # rounded centroids, so storing them in half precision loses nothing
        centroids = centroids.astype(np.float16).astype(np.float32)
    rng = np.random.default_rng(seed)
    fit = sample if len(sample) <= 100_000 else sample[rng.choice(len(sample), 100_000, replace=False)]
    resid = fit - centroids[assign_centroids(fit, centroids)]  # [n, dim]
    buckets = 1 << nbits
    cut_q = np.arange(1, buckets) / buckets
    mid_q = (np.arange(buckets) + 0.5) / buckets
    cutoffs = np.quantile(resid, cut_q, axis=0).T.astype(np.float64)  # [dim, B-1]
    weights = np.quantile(resid, mid_q, axis=0).T.astype(np.float64)  # [dim, B]
    for _ in range(lloyd_iters):  # Lloyd-Max refinement: weights = bucket means, cutoffs = midpoints
        codes = np.zeros(resid.shape, dtype=np.int64)
        for b in range(buckets - 1):
            codes += resid > cutoffs[:, b][None, :]
        for b in range(buckets):
            hit = codes == b
            count = hit.sum(axis=0)
            total = np.where(hit, resid, 0.0).sum(axis=0)
            weights[:, b] = np.where(count > 0, total / np.maximum(count, 1), weights[:, b])
        weights.sort(axis=1)
        cutoffs = (weights[:, 1:] + weights[:, :-1]) / 2
    cutoffs = cutoffs.astype(np.float32)
    weights = weights.astype(np.float32)
    centroids = np.ascontiguousarray(centroids)
    table_bits = table_bits if grid is not None else 0
    refinement = None
    if refine_bits:
        fine_cutoffs, fine_weights = _nested_buckets(
            resid.astype(np.float32), cutoffs, weights, refine_bits, lloyd_iters
        )
        refinement = ResidualCodec(
            centroids, fine_cutoffs, fine_weights, nbits + refine_bits, table_grid=grid, table_bits=table_bits
        )
    return ResidualCodec(
        centroids,
        np.ascontiguousarray(cutoffs),
        np.ascontiguousarray(weights),
        nbits,
        table_grid=grid,
        table_bits=table_bits,
        refinement=refinement,
    )


def _nested_buckets(
    resid: np.ndarray, cutoffs: np.ndarray, weights: np.ndarray, refine_bits: int, lloyd_iters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split each bucket of (cutoffs float32 [dim, B-1], weights [dim, B]) into S = 2**refine_bits
    sub-buckets by 1-D Lloyd-Max on the residuals float32 [n, dim] it holds (starting from their
    quantiles). Returns the fine (cutoffs float32 [dim, B*S-1], weights float32 [dim, B*S]); the
    fine cutoffs at positions S-1, 2S-1, ... are exactly ``cutoffs``, so a fine code's high bits
    are the coarse code."""
    dim, n_buckets = weights.shape
    subs = 1 << refine_bits
    fine_cut = np.empty((dim, n_buckets * subs - 1), dtype=np.float32)
    fine_w = np.empty((dim, n_buckets * subs), dtype=np.float32)
    inf = np.float32(np.inf)
    for d in range(dim):
        col = resid[:, d]
        coarse = np.searchsorted(cutoffs[d], col, side="left")  # = number of cutoffs below (as quantize)
        for b in range(n_buckets):
            lo = cutoffs[d, b - 1] if b > 0 else -inf
            hi = cutoffs[d, b] if b < n_buckets - 1 else inf
            vals = col[coarse == b].astype(np.float64)
            if len(vals) == 0:  # an empty bucket: every sub-bucket decodes to the bucket's value
                w = np.full(subs, float(weights[d, b]))
            else:
                w = np.quantile(vals, (np.arange(subs) + 0.5) / subs)
                for _ in range(lloyd_iters):
                    sub = np.searchsorted((w[1:] + w[:-1]) / 2, vals, side="left")
                    count = np.bincount(sub, minlength=subs)
                    total = np.bincount(sub, weights=vals, minlength=subs)
                    w = np.sort(np.where(count > 0, total / np.maximum(count, 1), w))
            # sub-cutoffs stay inside the bucket, so the fine code's high bits are the coarse code
            cut = np.clip(((w[1:] + w[:-1]) / 2).astype(np.float32), lo, hi)
            fine_cut[d, b * subs : b * subs + subs - 1] = cut
            if b < n_buckets - 1:
                fine_cut[d, b * subs + subs - 1] = cutoffs[d, b]
            fine_w[d, b * subs : (b + 1) * subs] = w.astype(np.float32)
    return fine_cut, fine_w
