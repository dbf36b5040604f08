"""The recall ceiling of residual coders: exact MaxSim over every decoded vector, vs brute force.

    python bench/index_codec_ceiling.py shared 8192 sq2,pq2,rpq2,sq4

Uses the cached vectors and ground truth of bench/index.py (run it first for the dataset).
One k-means (maxsim's, faiss) gives the centroids; each variant codes the residuals and we
report the residual MSE (summed over dimensions) and recall@10 of exact MaxSim over all
documents decoded as normalize(centroid + decoded residual):

  sqN   per-dimension buckets, quantile start + Lloyd-Max steps (what maxsim's codec does), N bits
  pqN   product quantisation (faiss), 8-bit codes over 8/N-dimensional sub-vectors: N bits/dim
  rpqN  a fixed random orthogonal rotation of the residuals, then pqN

  wfN   a learned rotation (PCA of the training residuals), then per rotated dimension 0, 1, 2
        or 4 bits (reverse water-filling on that dimension's measured Lloyd-Max error, in
        byte-friendly groups: dims by decreasing variance get 4, then 2, then 1, then 0 bits),
        N * dim bits in all; searching in the rotated space needs one rotation per query
  pcaN  the same rotation, N bits on every dimension (the rotation alone)
A ``+a`` after the coder (``sq2+a``) encodes each token for the angle, not the residual: the
coder's input is alpha * x - centroid for the alpha in 0.80..1.25 whose decoded vector has the
largest cosine to x (normalisation makes every alpha equally valid; the stored format is
unchanged). ``+cd`` instead refines the codes by coordinate descent on that cosine (2 sweeps).

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
    """maxsim's codec: per-dimension buckets trained on ``fit``, applied to ``x`` (decoded)."""
    return apply_scalar(*train_scalar(fit, nbits, iters), x)


def train_scalar(fit: np.ndarray, nbits: int, iters: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension cutoffs [dim, B-1] and bucket values [dim, B]; 0 bits: one value (the mean)."""
    if nbits == 0:
        return np.zeros((fit.shape[1], 0)), fit.mean(0)[:, None]
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
    return cut, w


def apply_scalar(cut: np.ndarray, w: np.ndarray, x: np.ndarray, chunk: int = 200_000) -> np.ndarray:
    out = np.empty(x.shape, dtype=np.float32)
    cols = np.arange(x.shape[1])[None]
    for s in range(0, len(x), chunk):
        codes = (x[s : s + chunk, :, None] > cut[None]).sum(2)
        out[s : s + chunk] = w[cols, codes]
    return out


class Coder:
    """A per-dimension scalar coder, optionally after a rotation and with uneven bits."""

    def __init__(self, fit: np.ndarray, nbits: int, kind: str):
        dim = fit.shape[1]
        self.rot = None
        if kind in ("wf", "pca"):
            cov = fit.T.astype(np.float64) @ fit / len(fit)
            lam, vec = np.linalg.eigh(cov)
            order = np.argsort(-lam)
            self.rot = vec[:, order].astype(np.float32)
            self.lam = lam[order]
            fit = fit @ self.rot
        if kind == "wf":
            err = {}  # measured Lloyd-Max error per rotated dim and bit count
            for b in (0, 1, 2, 4):
                cut, w = train_scalar(fit, b)
                err[b] = ((apply_scalar(cut, w, fit) - fit) ** 2).mean(0)
            cum = {b: np.concatenate([[0], np.cumsum(err[b])]) for b in err}
            best = None
            total = nbits * dim
            for n4 in range(0, min(dim, total // 4) + 1, 2):
                for n2 in range(0, min(dim - n4, (total - 4 * n4) // 2) + 1, 4):
                    n1 = total - 4 * n4 - 2 * n2
                    if n1 % 8 or n4 + n2 + n1 > dim:
                        continue
                    a, b_, c_ = n4, n4 + n2, n4 + n2 + n1
                    mse = cum[4][a] + cum[2][b_] - cum[2][a] + cum[1][c_] - cum[1][b_] + cum[0][dim] - cum[0][c_]
                    if best is None or mse < best[0]:
                        best = (mse, n4, n2, n1)
            _, n4, n2, n1 = best
            self.bits = np.array([4] * n4 + [2] * n2 + [1] * n1 + [0] * (dim - n4 - n2 - n1))
            print(
                f"  wf{nbits}: {n4} dims x 4 bits, {n2} x 2, {n1} x 1, {dim - n4 - n2 - n1} x 0; "
                f"variance share of the 0-bit dims {self.lam[n4 + n2 + n1 :].sum() / self.lam.sum():.3f}",
                flush=True,
            )
        else:
            self.bits = np.full(dim, nbits)
        self.groups = []
        for b in sorted(set(self.bits.tolist())):
            sel = np.flatnonzero(self.bits == b)
            self.groups.append((sel, *train_scalar(fit[:, sel], b)))

    def fwd(self, r: np.ndarray) -> np.ndarray:
        return r @ self.rot if self.rot is not None else r

    def back(self, z: np.ndarray) -> np.ndarray:
        return z @ self.rot.T if self.rot is not None else z

    def code(self, r: np.ndarray) -> np.ndarray:
        z = self.fwd(r)
        out = np.empty_like(z)
        for sel, cut, w in self.groups:
            out[:, sel] = apply_scalar(cut, w, z[:, sel]) if w.shape[1] > 1 else w[:, 0][None]
        return self.back(out)


def angle_code(coder: Coder, x: np.ndarray, c: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """Per token, the alpha in 0.80..1.25 whose coded alpha * x - c decodes closest in angle to x."""
    alphas = np.linspace(0.8, 1.25, 10)
    out = np.empty_like(x)
    for s in range(0, len(x), chunk):
        xs, cs = x[s : s + chunk], c[s : s + chunk]
        best, best_cos = None, None
        for a in alphas:
            rh = coder.code(a * xs - cs)
            y = cs + rh
            cos = (y * xs).sum(1) / np.linalg.norm(y, axis=1)
            if best is None:
                best, best_cos = rh, cos
            else:
                take = cos > best_cos
                best[take], best_cos[take] = rh[take], cos[take]
        out[s : s + chunk] = best
    return out


def cd_code(
    cut: np.ndarray, w: np.ndarray, x: np.ndarray, c: np.ndarray, sweeps: int = 2, chunk: int = 100_000
) -> np.ndarray:
    """Unrotated scalar codes refined by coordinate descent on cos(c + w[code], x)."""
    out = np.empty_like(x)
    dim, buckets = w.shape
    for s in range(0, len(x), chunk):
        xs, cs = x[s : s + chunk], c[s : s + chunk]
        codes = ((xs - cs)[:, :, None] > cut[None]).sum(2)
        y = cs + w[np.arange(dim)[None], codes]
        dot = (y * xs).sum(1)
        nn = (y * y).sum(1)
        for _ in range(sweeps):
            for d in range(dim):
                old = y[:, d].copy()
                base_dot = dot - old * xs[:, d]
                base_nn = nn - old * old
                cand = cs[:, d][:, None] + w[d][None, :]  # [n, B]
                cos = (base_dot[:, None] + cand * xs[:, d][:, None]) / np.sqrt(base_nn[:, None] + cand * cand)
                b = cos.argmax(1)
                codes[:, d] = b
                y[:, d] = cand[np.arange(len(b)), b]
                dot = base_dot + y[:, d] * xs[:, d]
                nn = base_nn + y[:, d] ** 2
        out[s : s + chunk] = y - cs
    return out


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
    print(f"k-means {time.time() - t0:.0f} s; residual RMS norm {np.sqrt((r**2).sum(1).mean()):.3f}", flush=True)
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
        coder_name, _, how = v.split("@")[0].partition("+")
        kind = coder_name.rstrip("0123456789")
        nbits = int(coder_name[len(kind) :])
        t1 = time.time()
        if kind in ("pq", "rpq"):
            rh = product_codec(fit, r, nbits, kind == "rpq")
        elif kind == "sq" and not how:
            rh = scalar_codec(fit, r, nbits)
        else:
            coder = Coder(fit, nbits, kind)
            if how == "a":
                rh = angle_code(coder, x, c[cid])
            elif how == "cd":
                if coder.rot is not None:
                    raise SystemExit("+cd is for unrotated sqN")
                ((sel, cut, w),) = coder.groups
                rh = cd_code(cut, w, x, c[cid])
            else:
                rh = coder.code(r)
        print(f"  ({time.time() - t1:.0f} s to code)", flush=True)
        y = c[cid] + rh
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        print(f"{v}: residual MSE {((r - rh) ** 2).sum(1).mean():.4f}, recall@10 ceiling {recall(y):.3f}", flush=True)


if __name__ == "__main__":
    main()
