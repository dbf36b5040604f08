"""Spherical k-means for token vectors, backed by faiss.

Up to ``FLAT_MAX_CENTROIDS`` centroids, plain faiss k-means and exact nearest-centroid search.
Beyond that (collections of about 1.6M tokens and more, where PLAID's rule asks for 32k-64k
centroids), flat k-means costs sample x k x dim per iteration (hours on a laptop CPU at 64k),
so both steps go through a coarse level of about sqrt(k) cells: k-means per cell, and
assignment that probes the cells nearest each token (``centroid_index``).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from maxsim.errors import InvalidArgumentError
from maxsim.parallel import PARTS_PER_THREAD, run_parts, single_threaded_blas, usable_cpus

#: Upper bound on centroids (ids are packed at 18 bits here). PLAID's rule reaches it at about
#: 170M tokens (a million documents of 165 tokens); a cap of 65,536 (uint16 ids) left a
#: collection whose token clusters outnumber the centroids with centroid interaction unable to
#: tell documents apart (recall@10 0.18 at 1M synthetic documents, see docs/scale.md).
MAX_CENTROIDS = 1 << 18
#: Centroids per square root of the token count (PLAID uses 16).
CENTROIDS_PER_SQRT_TOKEN = 16.0
#: Bytes of centroid table allowed per token when the caller gives the table's bytes per
#: centroid: a small collection then gets fewer centroids, so that the table (a fixed cost)
#: stays a small share of the index (the per-token data is about 34 bytes at 2 bits, dim 128).
TABLE_BYTES_PER_TOKEN = 2.0
#: Largest centroid count trained and searched flat; more go through a coarse level.
FLAT_MAX_CENTROIDS = 1 << 14
#: Coarse cells probed per token when assigning to more than FLAT_MAX_CENTROIDS centroids.
#: At 65,536 centroids on the scale benchmark's data, 8 probes cost 3.4x the time of 4 (faiss
#: IVF: 35k vs 118k tokens/s on 2 cores) for residuals only 3.5% shorter; 4 keeps a 1M-document
#: build within an hour of CPU.
ASSIGN_PROBES = 4
#: Threads of the nearest-centroid search past FLAT_MAX_CENTROIDS (at most; the machine's cores).
MAX_ASSIGN_THREADS = 8
#: Whole-table Lloyd iterations after the per-cell k-means of a two-level training.
REFINE_ITERS = 4
#: Assignments of at least this many vectors show a progress bar (minutes at 10M+ tokens).
PROGRESS_MIN_VECTORS = 2_000_000


def choose_n_centroids(n_tokens: int, centroid_bytes: float = 0.0) -> int:
    """Number of centroids for a collection of ``n_tokens`` token vectors.

    A power of two near ``16 * sqrt(n_tokens)`` (PLAID's rule: on real embeddings 4 * sqrt lost
    7 points of recall@10 to coarser centroid interaction), never more than n_tokens / 8, at
    most MAX_CENTROIDS, at least 1. With ``centroid_bytes`` (the stored size of one centroid),
    also at most the largest power of two whose table fits in TABLE_BYTES_PER_TOKEN bytes per
    token (64-byte centroids: 2048 for 100k tokens, where PLAID's rule gives 4096; from about
    260k tokens on, PLAID's rule is the smaller one).

    >>> choose_n_centroids(1_000_000), choose_n_centroids(100), choose_n_centroids(1)
    (16384, 8, 1)
    >>> choose_n_centroids(49_550_000), choose_n_centroids(165_000_000), choose_n_centroids(10**10)
    (131072, 262144, 262144)
    >>> choose_n_centroids(100_000), choose_n_centroids(100_000, 64), choose_n_centroids(302_845, 64)
    (4096, 2048, 8192)
    """
    if n_tokens <= 0:
        raise InvalidArgumentError("cannot choose centroids for an empty collection")
    target = CENTROIDS_PER_SQRT_TOKEN * math.sqrt(n_tokens)
    k = 1 << max(0, round(math.log2(target)))
    k = min(k, max(1, n_tokens // 8), MAX_CENTROIDS)
    if centroid_bytes > 0:
        k = min(k, max(1, int(TABLE_BYTES_PER_TOKEN * n_tokens / centroid_bytes)))
    return 1 << int(math.floor(math.log2(k)))


def train_centroids(
    sample: np.ndarray,
    n_centroids: int,
    *,
    niter: int = 10,
    seed: int = 0,
    max_points_per_centroid: int = 64,
    checkpoint: str | os.PathLike | None = None,
) -> np.ndarray:
    """Train ``n_centroids`` unit-norm centroids on ``sample`` float32 [n, dim]; returns [k, dim].

    faiss subsamples to ``max_points_per_centroid * n_centroids`` points. If the sample has fewer
    distinct points than ``n_centroids``, fewer centroids are returned. Above
    ``FLAT_MAX_CENTROIDS`` the k-means is two-level (``_train_two_level``); with ``checkpoint``
    (a directory) its steps are saved there as they finish, and a training killed part-way
    continues from them when called again with the same sample (tens of minutes at 262,144
    centroids on 2 cores). The caller removes the directory when done.
    """
    if sample.ndim != 2 or len(sample) == 0:
        raise InvalidArgumentError(f"k-means needs a non-empty 2-D sample, got shape {sample.shape}")
    x = np.ascontiguousarray(sample, dtype=np.float32)
    k = max(1, min(int(n_centroids), len(x)))
    if k == len(x):
        centroids = x.copy()
    elif k > FLAT_MAX_CENTROIDS:
        steps = _Checkpoint(checkpoint, x, k, seed) if checkpoint is not None else None
        centroids = _train_two_level(
            x, k, niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid, steps=steps
        )
    else:
        centroids = _kmeans(x, k, niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids /= np.maximum(norms, 1e-12)
    return centroids


def _kmeans(x: np.ndarray, k: int, *, niter: int, seed: int, max_points_per_centroid: int) -> np.ndarray:
    import faiss  # noqa: PLC0415 - heavy import kept off `import maxsim`

    if k >= len(x):
        return x.copy()
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=niter,
        seed=seed,
        spherical=True,
        verbose=False,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=1,
    )
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32).copy()


def coarse_cells(k: int) -> int:
    """Coarse cells for ``k`` centroids: the power of two nearest sqrt(k), so that both levels
    cost about sqrt(k) dot products per point instead of k."""
    return 1 << max(1, round(math.log2(k) / 2))


class _Checkpoint:
    """Finished steps of one two-level training, as .npy files in a directory. A fingerprint of
    the sample and the settings guards against resuming another training's steps."""

    def __init__(self, path: str | os.PathLike, x: np.ndarray, k: int, seed: int):
        self.path = Path(path)
        digest = hashlib.sha256(repr((x.shape, k, seed)).encode())
        digest.update(np.ascontiguousarray(x[:: max(1, len(x) // 4096)]).tobytes())
        key = digest.hexdigest()
        stamp = self.path / "fingerprint"
        if self.path.exists() and (not stamp.exists() or stamp.read_text() != key):
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        if not stamp.exists():
            stamp.write_text(key)

    def load(self, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        f = self.path / f"{name}.npy"
        try:
            a = np.load(f)
        except (OSError, ValueError):
            return None
        return a if a.shape == shape else None

    def save(self, name: str, a: np.ndarray) -> None:
        tmp = self.path / f"{name}.tmp.npy"
        np.save(tmp, a)
        os.replace(tmp, self.path / f"{name}.npy")  # a kill leaves the old step or the new, never half


def _train_two_level(
    x: np.ndarray, k: int, *, niter: int, seed: int, max_points_per_centroid: int, steps: _Checkpoint | None = None
) -> np.ndarray:
    """k-means over coarse cells, then within each cell: a cell holding n_c of the sample's n
    points gets about k * n_c / n centroids (largest remainders, at most n_c). Per iteration it
    costs about n * (cells + k / cells) dot products instead of n * k."""
    rng = np.random.default_rng(seed)
    cap = max_points_per_centroid * k
    if len(x) > cap:  # the same subsampling flat faiss k-means would do
        x = x[np.sort(rng.choice(len(x), cap, replace=False))]
    cells = coarse_cells(k)
    coarse = steps.load("coarse", (min(cells, len(x)), x.shape[1])) if steps else None
    if coarse is None:
        coarse = _kmeans(x, cells, niter=niter, seed=seed, max_points_per_centroid=256)
        coarse /= np.maximum(np.linalg.norm(coarse, axis=1, keepdims=True), 1e-12)
        if steps:
            steps.save("coarse", coarse)
    cell_of = assign_centroids(x, coarse)
    counts = np.bincount(cell_of, minlength=len(coarse))
    share = counts * (k / len(x))
    quota = np.minimum(np.floor(share).astype(np.int64), counts)
    # hand out the remaining centroids by largest remainder, never more than a cell's points
    room = counts - quota
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    left = k - int(quota.sum())
    for c in order:
        if left <= 0:
            break
        if room[c] > 0:
            quota[c] += 1
            left -= 1
    by_cell = np.argsort(cell_of, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    parts = []
    with tqdm(
        total=int(np.count_nonzero(quota)) + REFINE_ITERS, desc=f"k-means, {k} centroids", unit="step", leave=False
    ) as bar:
        for c in np.flatnonzero(quota):
            part = steps.load(f"cell-{c}", (int(quota[c]), x.shape[1])) if steps else None
            if part is None:
                members = x[by_cell[bounds[c] : bounds[c + 1]]]
                part = _kmeans(members, int(quota[c]), niter=niter, seed=seed + int(c), max_points_per_centroid=1 << 30)
                if steps:
                    steps.save(f"cell-{c}", part)
            parts.append(part)
            bar.update()
        centroids = np.concatenate(parts).astype(np.float32, copy=False)
        # Lloyd iterations over all centroids at once, with approximate assignment: cells trained
        # apart leave their borders where the data's clusters straddle them; this moves them.
        for i in range(REFINE_ITERS):
            done = steps.load(f"lloyd-{i}", centroids.shape) if steps else None
            if done is None:
                done = _lloyd_step(x, centroids)
                if steps:
                    steps.save(f"lloyd-{i}", done)
            centroids = done
            bar.update()
    return centroids


def _lloyd_step(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """One Lloyd iteration: each centroid moves to the (unnormalised) sum of its points; empty
    clusters keep theirs."""
    centroids = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    nearest = assign_centroids(x, centroids, index=centroid_index(centroids))
    order = np.argsort(nearest, kind="stable")
    used, starts = np.unique(nearest[order], return_index=True)
    centroids[used] = np.add.reduceat(x[order], starts, axis=0)
    return centroids


def centroid_index(centroids: np.ndarray):
    """An index over the centroids for nearest-centroid search (``index.search(x, 1)`` as in
    faiss). Up to ``FLAT_MAX_CENTROIDS`` a faiss flat inner-product index (blocked BLAS: at those
    counts it beats graph indexes, which were measured slower up to 8k centroids). Beyond, a
    :class:`CellIndex` over ``coarse_cells(k)`` cells probing ``ASSIGN_PROBES`` of them: a token
    whose true nearest centroid sits in an unprobed cell gets the nearest one found, a slightly
    larger residual, never a wrong vector."""
    import faiss  # noqa: PLC0415

    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if len(c) <= FLAT_MAX_CENTROIDS:
        index = faiss.IndexFlatIP(c.shape[1])
        index.add(c)
        return index
    return CellIndex(c, coarse_cells(len(c)), ASSIGN_PROBES)


class CellIndex:
    """Nearest centroid among the centroids of the ``nprobe`` cells nearest each vector.

    The same search as a faiss IVF-flat index, done cell by cell with one matrix product per
    (cell, batch of the vectors probing it) instead of a list scan per vector, the cells handed
    out in parts to ``threads`` threads, each product on one BLAS thread. ``python
    bench/assign.py`` (2 cores, random unit vectors, session 14): at 262,144 centroids 193k
    vectors/s against faiss IVF's 30k with the same cells and probes; with another process
    holding one core, 99k against 49k for the same cells in one loop on BLAS's own threads
    (which wait for each other at every product). The probed cells are picked by argmax passes
    (``_top_columns``), much cheaper than numpy's per-row argpartition for a few probes.
    """

    def __init__(self, centroids: np.ndarray, cells: int, nprobe: int, seed: int = 0, threads: int | None = None):
        c = np.ascontiguousarray(centroids, dtype=np.float32)
        coarse = _kmeans(c, min(cells, len(c)), niter=10, seed=seed, max_points_per_centroid=1 << 20)
        self.coarse = np.ascontiguousarray(coarse / np.maximum(np.linalg.norm(coarse, axis=1, keepdims=True), 1e-12))
        cell_of = np.argmax(c @ self.coarse.T, axis=1)
        order = np.argsort(cell_of, kind="stable")
        bounds = np.searchsorted(cell_of[order], np.arange(len(self.coarse) + 1))
        self.members = [order[bounds[i] : bounds[i + 1]] for i in range(len(self.coarse))]
        self.tables = [np.ascontiguousarray(c[m].T) for m in self.members]  # [dim, members] per cell
        self.nprobe = min(nprobe, len(self.coarse))
        self.ntotal = len(c)
        self.threads = threads if threads is not None else min(usable_cpus(), MAX_ASSIGN_THREADS)

    def search(self, x: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [n, 1], ids int64 [n, 1]) of the best centroid found for each row of
        ``x``; id -1 where the probed cells were all empty. Only ``k=1``."""
        if k != 1:
            raise InvalidArgumentError("CellIndex.search finds the nearest centroid only (k=1)")
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, p = len(x), self.nprobe
        scores = x @ self.coarse.T
        if p < scores.shape[1]:
            probed = _top_columns(scores, p)
        else:
            probed = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        flat = probed.ravel()
        row = np.repeat(np.arange(n), p)
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(len(self.coarse) + 1))
        cells = [int(c) for c in np.flatnonzero(np.diff(bounds)) if len(self.members[c])]

        def best_in(part: list[int]) -> tuple[np.ndarray, np.ndarray]:
            best = np.full(n, -np.inf, dtype=np.float32)
            best_id = np.full(n, -1, dtype=np.int64)
            for cell in part:
                rows = row[order[bounds[cell] : bounds[cell + 1]]]  # distinct: a row probes a cell once
                sims = x[rows] @ self.tables[cell]
                j = np.argmax(sims, axis=1)
                v = sims[np.arange(len(rows)), j]
                better = v > best[rows]
                best[rows[better]] = v[better]
                best_id[rows[better]] = self.members[cell][j[better]]
            return best, best_id

        if self.threads <= 1:
            found = [best_in(cells)]
        else:  # contiguous runs of cells, merged in order with a strict ">" below: ties go to the
            # lower cell whatever the thread count, as in one pass. One BLAS thread per product.
            n_parts = max(1, min(len(cells), self.threads * PARTS_PER_THREAD))
            parts = [a.tolist() for a in np.array_split(np.asarray(cells, dtype=np.int64), n_parts)]
            with single_threaded_blas():
                found = run_parts(best_in, parts, self.threads)
        best, best_id = found[0]
        for b, i in found[1:]:
            better = b > best
            best[better] = b[better]
            best_id[better] = i[better]
        return best[:, None], best_id[:, None]


def _top_columns(scores: np.ndarray, p: int) -> np.ndarray:
    """Column ids of the ``p`` largest values of each row, int64 [n, p] (``scores`` is overwritten).

    A few vectorised argmax passes, masking each pick: for the handful of probes taken from a
    few hundred cells this beats numpy's per-row argpartition (``python bench/assign.py``
    measures the search it serves)."""
    rows = np.arange(len(scores))
    picked = np.empty((len(scores), p), dtype=np.int64)
    for j in range(p):
        picked[:, j] = np.argmax(scores, axis=1)
        scores[rows, picked[:, j]] = -np.inf
    return picked


def assign_centroids(x: np.ndarray, centroids: np.ndarray, chunk: int = 65536, index=None) -> np.ndarray:
    """Nearest centroid (max inner product) for each row of ``x`` [n, dim]; returns int64 [n]."""
    index = index if index is not None else centroid_index(centroids)
    out = np.empty(len(x), dtype=np.int64)
    starts = range(0, len(x), chunk)
    for start in tqdm(
        starts, desc="nearest centroids", unit="chunk", leave=False, disable=len(x) < PROGRESS_MIN_VECTORS
    ):
        block = np.ascontiguousarray(x[start : start + chunk], dtype=np.float32)
        _, nearest = index.search(block, 1)
        found = nearest[:, 0]
        missed = found < 0  # an approximate index found nothing in the probed cells
        if missed.any():
            found[missed] = np.argmax(block[missed] @ np.asarray(centroids, dtype=np.float32).T, axis=1)
        out[start : start + chunk] = found
    return out
