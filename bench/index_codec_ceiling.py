"""The recall ceiling of residual coders: exact MaxSim over every decoded vector, vs brute force.

    python bench/index_codec_ceiling.py shared 8192 sq2,pq2,rpq2,sq4

Uses the cached vectors and ground truth of bench/index.py (run it first for the dataset).
One k-means (maxsim's, faiss) gives the centroids; each variant codes the residuals and we
report the residual MSE (summed over dimensions) and recall@10 of exact MaxSim over all
documents decoded as normalize(centroid + decoded residual):

  sqN   per-dimension buckets, quantile start + Lloyd-Max steps (what maxsim's codec does), N bits
  pqN   product quantisation (faiss), 8-bit codes over 8/N-dimensional sub-vectors: N bits/dim
  rpqN  a fixed random orthogonal rotation of the residuals, then pqN

A suffix stores the centroid table another way before the residuals are taken (tokens are
re-assigned to the stored table, as the index does): ``sq2@grid4`` maxsim's format-3 table (4-bit
grid, evenly spaced over each dimension's range), ``sq2@uniform4`` the same computed here,
``sq2@lloyd4`` a per-dimension Lloyd-Max 4-bit grid (what format 3 first used).
Without a suffix the table is float16 (format 2).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from maxsim.compression.kmeans import assign_centroids, train_centroids
from maxsim.compression.residual import grid_values, to_grid


def stored_table(c: np.ndarray, how: str) -> np.ndarray:
    if how == "grid4":  # maxsim's format-3 table (evenly spaced since the comparison below)
        return grid_values(*to_grid(c, 4))
    if how == "lloyd4":
        levels = np.quantile(c, (np.arange(16) + 0.5) / 16, axis=0)
        for _ in range(12):
            cuts = (levels[1:] + levels[:-1]) / 2
            lv = (c[:, None, :] > cuts[None]).sum(1)
            for b in range(16):
                hit = lv == b
                n = hit.sum(0)
                levels[b] = np.where(n > 0, np.where(hit, c, 0).sum(0) / np.maximum(n, 1), levels[b])
            levels.sort(0)
        cuts = (levels[1:] + levels[:-1]) / 2
        return levels[(c[:, None, :] > cuts[None]).sum(1), np.arange(c.shape[1])[None]].astype(np.float32)
    if how == "uniform4":
        lo, hi = c.min(0), c.max(0)
        step = np.where(hi > lo, (hi - lo) / 15, 1.0)
        return (lo + np.rint((c - lo) / step) * step).astype(np.float32)
    raise SystemExit(f"unknown table variant {how!r}")


def scalar_codec(fit: np.ndarray, x: np.ndarray, nbits: int, iters: int = 8) -> np.ndarray:
    buckets = 1 << nbits
    cut = np.quantile(fit, np.arange(1, buckets) / buckets, axis=0).T
    w = np.quantile(fit, (np.arange(buckets) + 0.5) / buckets, axis=0).T
    for _ in range(iters):
        codes = (fit[:, :, None] > cut[None]).sum(2)
        for b in range(buckets):
            hit = codes == b
            n = hit.sum(0)
            w[:, b] = np.where(n > 0, np.where(hit, fit, 0).sum(0) / np.maximum(n, 1), w[:, b])
        w.sort(1)
        cut = (w[:, 1:] + w[:, :-1]) / 2
    codes = (x[:, :, None] > cut[None]).sum(2)
    return w[np.arange(x.shape[1])[None], codes].astype(np.float32)


def product_codec(fit: np.ndarray, x: np.ndarray, nbits: int, rotate: bool) -> np.ndarray:
    import faiss

    dim = x.shape[1]
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(dim, dim)))[0].astype(np.float32) if rotate else None
    pq = faiss.ProductQuantizer(dim, dim * nbits // 8, 8)
    pq.cp.niter = 25
    pq.train(np.ascontiguousarray(fit @ rot if rotate else fit, dtype=np.float32))
    dec = pq.decode(pq.compute_codes(np.ascontiguousarray(x @ rot if rotate else x, dtype=np.float32)))
    return dec @ rot.T if rotate else dec


def main() -> None:
    dataset, k, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    data = Path(os.environ.get("MAXSIM_BENCH_CACHE", "/tmp/maxsim-bench-cache")) / dataset
    offsets = np.load(data / "offsets.npy")
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")
    x = np.asarray(np.load(data / "tokens.npy", mmap_mode="r"), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    starts = offsets[:-1]

    def recall(y: np.ndarray) -> float:
        hits = []
        for q, t in zip(queries, truth, strict=True):
            s = np.maximum.reduceat(q @ y.T, starts, axis=1).sum(0)
            hits.append(len(set(np.argsort(-s, kind="stable")[:10].tolist()) & set(t[:10].tolist())) / 10)
        return float(np.mean(hits))

    rng = np.random.default_rng(0)
    sample = x if len(x) <= 64 * k else x[rng.choice(len(x), 64 * k, replace=False)]
    t0 = time.time()
    raw = train_centroids(sample, k)
    c = raw.astype(np.float16).astype(np.float32)  # as stored (format 2)
    cid = assign_centroids(x, c)
    r = x - c[cid]
    print(f"k-means {time.time() - t0:.0f} s; residual RMS norm {np.sqrt((r ** 2).sum(1).mean()):.3f}", flush=True)
    pick = rng.choice(len(r), min(len(r), 200_000), replace=False)
    fit = r[pick]
    base = (c, cid, r, fit)
    for v in variants:
        v, _, table = v.partition("@")
        if table:
            c = stored_table(raw, table)
            cid = assign_centroids(x, c)
            r = x - c[cid]
            fit = r[pick]
            v = f"{v}@{table}"
        else:
            c, cid, r, fit = base
        nbits = int(v.split("@")[0].lstrip("rpsq"))
        rh = scalar_codec(fit, r, nbits) if v.startswith("sq") else product_codec(fit, r, nbits, v.startswith("r"))
        y = c[cid] + rh
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        print(f"{v}: residual MSE {((r - rh) ** 2).sum(1).mean():.4f}, recall@10 ceiling {recall(y):.3f}", flush=True)


if __name__ == "__main__":
    main()
