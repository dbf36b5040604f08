"""Nearest-centroid search of a build (every token vector of the collection goes through it).

    python bench/assign.py [--k 65536 262144] [--vectors 131072] [--repeats 3]

For each centroid count, on random unit centroids and vectors (dim 128), vectors/s of:

* ``cells, BLAS threads``  :class:`maxsim.compression.kmeans.CellIndex` with ``threads=1``: one
  loop over the probed cells, each product on BLAS's own thread pool (the code before cells were
  spread over threads);
* ``cells over threads``   ``CellIndex`` as it runs now: cells handed out one part at a time to
  the machine's cores, each product on one BLAS thread;
* ``faiss IVF``            ``faiss.IndexIVFFlat`` over the same coarse cells and probe count.

Each is timed on a quiet machine and again while another process keeps one core busy with BLAS
products (what a build meets on a shared machine, or beside an encoder), best of ``--repeats``,
in one run. Prints a table and writes bench/results/assign.json; ratios are against the first row.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from maxsim.compression.kmeans import ASSIGN_PROBES, CellIndex, coarse_cells  # noqa: E402


def _busy(stop) -> None:  # pragma: no cover - child process
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    a = np.random.default_rng(1).standard_normal((512, 512), dtype=np.float32)
    while not stop.is_set():
        a = np.tanh(a @ a.T * 1e-3)


def faiss_ivf(cells: CellIndex, centroids: np.ndarray):
    import faiss

    dim = centroids.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(cells.coarse)
    ivf = faiss.IndexIVFFlat(quantizer, dim, len(cells.coarse), faiss.METRIC_INNER_PRODUCT)
    ivf.is_trained = True
    ivf.add(centroids)
    ivf.nprobe = cells.nprobe
    return ivf


def best_rate(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[65536, 262144])
    ap.add_argument("--vectors", type=int, default=131072)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "assign.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.vectors, 128), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    results: dict = {"vectors": args.vectors, "cores": os.cpu_count(), "probes": ASSIGN_PROBES, "k": {}}
    for k in args.k:
        c = rng.standard_normal((k, 128), dtype=np.float32)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        cells = CellIndex(c, coarse_cells(k), ASSIGN_PROBES)
        before = CellIndex.__new__(CellIndex)  # the same cells, searched as before: one loop
        before.__dict__.update(cells.__dict__, threads=1)
        ivf = faiss_ivf(cells, c)
        ref = cells.search(x)[1]
        assert np.array_equal(before.search(x)[1], ref), "threads changed the nearest centroids"
        systems = {
            "cells, BLAS threads": lambda: before.search(x),
            "cells over threads": lambda: cells.search(x),
            "faiss IVF": lambda: ivf.search(x, 1),
        }
        rows: dict = {}
        for load in ("quiet", "one core busy"):
            stop = mp.get_context("spawn").Event()
            child = None
            if load != "quiet":
                child = mp.get_context("spawn").Process(target=_busy, args=(stop,), daemon=True)
                child.start()
                time.sleep(2.0)
            try:
                for name, fn in systems.items():
                    rows.setdefault(name, {})[load] = best_rate(fn, len(x), args.repeats)
            finally:
                if child is not None:
                    stop.set()
                    child.join(10)
        results["k"][str(k)] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'k':>7} {'system':<20} {'quiet vec/s':>12} {'x':>5} {'busy vec/s':>11} {'x':>5}")
    for k, rows in results["k"].items():
        base = next(iter(rows.values()))
        for name, r in rows.items():
            q, b = r["quiet"], r["one core busy"]
            print(
                f"{k:>7} {name:<20} {q:>12.0f} {q / base['quiet']:>5.2f} {b:>11.0f} {b / base['one core busy']:>5.2f}"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
