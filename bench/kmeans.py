"""k-means for the index's centroids: flat against two-level training, exact against IVF assignment.

    python bench/kmeans.py [--sample 600000] [--k 4096 32768] [--flat-up-to 4096]

Uses the cached synthetic-10k tokens of bench/index.py (run it first). For each k, trains the
centroids on a sample of token vectors, two-level (what maxsim does above
``FLAT_MAX_CENTROIDS``) and, for k up to ``--flat-up-to``, flat (one faiss k-means; larger flat
runs take too long here). It then reports, on 50,000 held-out tokens: the residual MSE (squared
distance to the nearest centroid); for each IVF probe count, the share of tokens that get their
exact nearest centroid and the MSE they get; and the assignment times. Prints a table and writes
bench/results/kmeans.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from maxsim.compression import kmeans  # noqa: E402


def mse(x: np.ndarray, c: np.ndarray, nearest: np.ndarray) -> float:
    r = x - c[nearest]
    return float((r * r).sum(1).mean())


@contextmanager
def kmeans_settings(**values):
    """Set module constants of maxsim.compression.kmeans for one measurement, then restore them."""
    saved = {name: getattr(kmeans, name) for name in values}
    for name, value in values.items():
        setattr(kmeans, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(kmeans, name, value)


def exact_nearest(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, float]:
    with kmeans_settings(FLAT_MAX_CENTROIDS=1 << 30):
        t = time.perf_counter()
        return kmeans.assign_centroids(x, c), time.perf_counter() - t


def ivf_nearest(x: np.ndarray, c: np.ndarray, probes: int) -> tuple[np.ndarray, float]:
    with kmeans_settings(FLAT_MAX_CENTROIDS=1, ASSIGN_PROBES=probes):
        index = kmeans.centroid_index(c)
        t = time.perf_counter()
        return kmeans.assign_centroids(x, c, index=index), time.perf_counter() - t


def train(x: np.ndarray, k: int, two_level: bool) -> tuple[np.ndarray, float]:
    with kmeans_settings(FLAT_MAX_CENTROIDS=1 if two_level else 1 << 30):
        t = time.perf_counter()
        return kmeans.train_centroids(x, k, niter=10), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=600_000)
    ap.add_argument("--k", type=int, nargs="+", default=[4096, 32768])
    ap.add_argument("--flat-up-to", type=int, default=4096)
    ap.add_argument("--probes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--cache", default=os.environ.get("MAXSIM_BENCH_CACHE", "/tmp/maxsim-bench-cache"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kmeans.json")
    args = ap.parse_args()
    tokens = np.load(Path(args.cache) / "synthetic-10k" / "tokens.npy", mmap_mode="r")
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(tokens))
    x = np.asarray(tokens[np.sort(pick[: args.sample])], dtype=np.float32)
    held = np.asarray(tokens[np.sort(pick[args.sample : args.sample + 50_000])], dtype=np.float32)
    rows = []
    for k in args.k:
        for two_level in (False, True):
            if not two_level and k > args.flat_up_to:
                continue
            c, train_s = train(x, k, two_level)
            exact, exact_s = exact_nearest(held, c)
            row = {
                "k": k,
                "training": "two-level" if two_level else "flat",
                "train_s": round(train_s, 1),
                "mse_exact_assignment": round(mse(held, c, exact), 4),
                "exact_assign_s_per_50k": round(exact_s, 2),
                "ivf": [],
            }
            for probes in args.probes:
                approx, ivf_s = ivf_nearest(held, c, probes)
                row["ivf"].append(
                    {
                        "probes": probes,
                        "cells": kmeans.coarse_cells(k),
                        "same_centroid_share": round(float(np.mean(approx == exact)), 4),
                        "mse": round(mse(held, c, approx), 4),
                        "assign_s_per_50k": round(ivf_s, 2),
                    }
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'k':>6} {'training':<10} {'train s':>8} {'MSE':>7} {'exact s':>8}  IVF probes: same / MSE / s")
    for r in rows:
        ivf = "  ".join(
            f"{v['probes']}: {v['same_centroid_share']:.3f} / {v['mse']:.4f} / {v['assign_s_per_50k']:.2f}"
            for v in r["ivf"]
        )
        print(
            f"{r['k']:>6} {r['training']:<10} {r['train_s']:>8.1f} {r['mse_exact_assignment']:>7.4f} "
            f"{r['exact_assign_s_per_50k']:>8.2f}  {ivf}"
        )
    args.out.write_text(
        json.dumps(
            {
                "bench": "kmeans",
                "sample": args.sample,
                "held_out": len(held),
                "data": "synthetic-10k tokens",
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
