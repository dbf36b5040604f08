"""Index quality settings on synthetic collections of several shapes: token pooling's size,
latency and nDCG at pool factors 1, 2, 3; today's default settings against settings tuned by
``Index.tune`` for recall 0.95; 2-bit against 4-bit against two residual planes (2-bit resident
+ 2-bit refinement read for the short list: ``Index.create(refine_bits=2)``); and each one's
ceiling (exact MaxSim over every stored vector). Run through ``python bench/index.py --quality``
(or this file directly).

    python bench/index_quality.py                       # every shape, results cached per shape
    python bench/index_quality.py --shapes zipf4096 --force

Shapes (dim 128): token vectors drawn around ``clusters`` centres whose frequencies follow a
Zipf law (exponent ``zipf``), each document using 4-12 of them, with per-token noise ``spread``;
queries are 32 tokens picked from one document plus noise ``query_noise`` (that document is
the query's relevant one for nDCG@10). ``zipf4096`` is issue 17's collection: 10k documents,
about 1.38M tokens, 4,096 clusters. Every index answers the same held-out queries one at a time
on one thread; ``tune`` sees a separate set of sample queries. Recall@10 is against brute-force
MaxSim over the original vectors. Memory-resident bytes per token = what search keeps mapped
for stages 1-2 and the first residual plane: centroid ids + first-plane residuals + inverted
lists (as held in memory; small segments rebuild them on open) + document offsets + the stored
centroid table, per original token. The refinement plane (``refine_bytes_per_token``) stays on
disk and is read for the ``n_exact`` short-listed documents only (``refine_kb_read_per_query``,
from the mean stored document length). ``disk_bytes_per_token`` is the whole directory.
Latency: each setting is timed right after its index is built (``p50_ms``), and once more at the
end, all unpooled indexes and settings query by query in turn (``p50_ms_interleaved``), so a
machine whose load changes during the run weighs on all of them alike: compare those.
``MAXSIM_BENCH_REUSE=1`` keeps the built indexes and reuses them in the next run.
Stanford PLAID (colbert-ai, 2 bits, its default and a wide search) runs on the same vectors and
queries from its benchmark venv (``--colbert-python``, default ``.benchenv-colbert``; skipped
and said so when missing, ``--no-plaid`` to leave it out); ``vs_plaid`` says for each tuned
maxsim index whether it reaches PLAID's default recall@10 at no more than its p50.
Results: a table on stdout and bench/results/index-quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from index import (
    DIM,
    N_QUERY_TOKENS,
    RESULTS,
    TIMING_REPEATS,
    _unit,
    brute_force,
    maxsim_bytes,
    recall_at_10,
    summarize,
    time_queries,
)

SHAPES = {
    # issue 17's collection: 10k docs, ~1.38M tokens, 4096 Zipf-weighted clusters
    "zipf4096": {"docs": 10_000, "clusters": 4096, "zipf": 1.0, "spread": 0.5, "query_noise": 0.5, "pool": False},
    # smaller shapes (1k documents, ~138k tokens) that a busy 2-core machine can run in minutes
    "zipf1024-wide": {"docs": 1_000, "clusters": 1024, "zipf": 0.8, "spread": 0.8, "query_noise": 0.6, "pool": True},
    "zipf16k-noisy": {"docs": 1_000, "clusters": 16384, "zipf": 1.2, "spread": 0.4, "query_noise": 0.9, "pool": False},
}
N_EVAL_QUERIES = 60
N_TUNE_QUERIES = 30
TARGET_RECALL = 0.95


def make_shape(out: Path, shape: dict, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_docs, k = shape["docs"], shape["clusters"]
    centres = _unit(rng.normal(size=(k, DIM)))
    weights = 1.0 / np.arange(1, k + 1) ** shape["zipf"]
    weights /= weights.sum()
    lengths = rng.integers(30, 247, size=n_docs)  # mean 138 tokens: 1.38M for 10k documents
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.empty((int(offsets[-1]), DIM), dtype=np.float16)
    noise = shape["spread"] / np.sqrt(DIM)
    for d in tqdm(range(n_docs), desc="generate", mininterval=2):
        mine = rng.choice(k, size=int(rng.integers(4, 13)), replace=False, p=weights)
        n = int(lengths[d])
        x = centres[rng.choice(mine, size=n)] + noise * rng.normal(size=(n, DIM))
        tokens[offsets[d] : offsets[d + 1]] = _unit(x)
    np.save(out / "tokens.npy", tokens)
    np.save(out / "offsets.npy", offsets)
    n_q = N_EVAL_QUERIES + N_TUNE_QUERIES
    source = rng.choice(n_docs, size=n_q, replace=False)
    queries = np.empty((n_q, N_QUERY_TOKENS, DIM), dtype=np.float32)
    qnoise = shape["query_noise"] / np.sqrt(DIM)
    for i, d in enumerate(source):
        doc = tokens[offsets[d] : offsets[d + 1]].astype(np.float32)
        picked = doc[rng.choice(len(doc), size=N_QUERY_TOKENS)]
        queries[i] = _unit(picked + qnoise * rng.normal(size=picked.shape))
    np.save(out / "queries.npy", queries[:N_EVAL_QUERIES])
    np.save(out / "tune_queries.npy", queries[N_EVAL_QUERIES:])
    np.save(out / "source.npy", source[:N_EVAL_QUERIES])


def ndcg_at_10(found: list[list[int]], source: np.ndarray) -> float:
    """One relevant document per query (the one its tokens were drawn from)."""
    gains = [1.0 / np.log2(f[:10].index(int(s)) + 2) if int(s) in f[:10] else 0.0 for f, s in zip(found, source)]
    return float(np.mean(gains))


def build(work: Path, tokens: np.ndarray, offsets: np.ndarray, nbits: int, pool_factor: int = 1, refine_bits: int = 0):
    from maxsim.index import Index

    marker = work / "bench-quality-build.json"
    if os.environ.get("MAXSIM_BENCH_REUSE") == "1" and marker.exists():  # kept by an earlier run
        return Index.open(work), float(json.loads(marker.read_text())["build_s"])
    if work.exists():
        shutil.rmtree(work)
    t0 = time.perf_counter()
    index = Index.create(
        work, dim=DIM, nbits=nbits, auto_optimize=False, pool_factor=pool_factor, refine_bits=refine_bits
    )
    n_docs = len(offsets) - 1
    for s in tqdm(range(0, n_docs, 5000), desc=f"build {nbits}+{refine_bits}-bit pf{pool_factor}", leave=False):
        e = min(s + 5000, n_docs)
        block = np.asarray(tokens[offsets[s] : offsets[e]], dtype=np.float32)
        index.add_embeddings(np.split(block, offsets[s + 1 : e] - offsets[s]), ids=[str(i) for i in range(s, e)])
    build_s = time.perf_counter() - t0
    index.close()
    marker.write_text(json.dumps({"build_s": build_s}))
    return Index.open(work), build_s


def measure(index, queries, truth, source, config, label: str) -> dict:
    def one(q):
        return [int(h["id"]) for h in index.search_embeddings(q, k=10, config=config)[0]]

    found, times = time_queries(one, queries, label)
    return {
        **summarize(times),
        "recall@10": round(recall_at_10(found, truth), 4),
        "ndcg@10": round(ndcg_at_10(found, source), 4),
    }


def memory_figures(index, work: Path, n_tokens: int) -> dict:
    """Resident and on-disk bytes per original token (see the module docstring)."""
    snap = index._refresh()
    arrays = ("codes", "residuals", "offsets", "docnos", "ivf_offsets", "ivf_docs")
    segs = sum(int(np.asarray(getattr(s, a)).nbytes) for s in snap.segments for a in arrays)
    parts = maxsim_bytes(work)
    refine = parts["refine_plane"]
    stored = sum(s.n_tokens for s in snap.segments)
    return {
        "resident_bytes_per_token": round((segs + parts["centroid_table"]) / n_tokens, 3),
        "refine_bytes_per_token": round(refine / n_tokens, 3),
        "disk_bytes_per_token": round(sum(parts.values()) / n_tokens, 3),
        "mean_doc_tokens": round(stored / max(1, sum(s.n_docs for s in snap.segments)), 1),
    }


def refine_read_kb(row: dict, n_exact: int) -> float:
    """KB of refinement plane a query reads: n_exact documents of the mean stored length."""
    return round(n_exact * row["mean_doc_tokens"] * DIM * row["refine_bits"] / 8 / 1024, 1)


def run_shape(name: str, shape: dict, cache: Path, colbert_python: Path | None = None) -> dict:
    from maxsim.index import SearchConfig

    data = cache / name
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "source.npy").exists():
        make_shape(data, shape)
    if not (data / "truth.npy").exists():
        brute_force(data)
    tokens, offsets = np.load(data / "tokens.npy", mmap_mode="r"), np.load(data / "offsets.npy")
    queries, truth, source = np.load(data / "queries.npy"), np.load(data / "truth.npy"), np.load(data / "source.npy")
    tune_queries = np.load(data / "tune_queries.npy")
    n_tokens = int(offsets[-1])
    out: dict = {
        "shape": shape,
        "n_docs": len(offsets) - 1,
        "n_tokens": n_tokens,
        "n_queries": len(queries),
        "n_tune_queries": len(tune_queries),
        "runs": [],
    }
    pool_factors = (1, 2, 3) if shape["pool"] else (1,)
    # today's 2-bit and 4-bit, the two-plane index (2-bit resident + 2-bit refinement), then pooling
    systems = [(2, 0, 1), (4, 0, 1), (2, 2, 1), *((2, 0, f) for f in pool_factors if f > 1)]
    kept: list = []  # (index, work, {setting: (config, run row)}) of the unpooled indexes, timed together last
    for nbits, refine_bits, pf in systems:
        work = cache / "work" / f"{name}-{nbits}-{refine_bits}-{pf}"
        index, build_s = build(work, tokens, offsets, nbits, pf, refine_bits)
        row = {
            "nbits": nbits,
            "refine_bits": refine_bits,
            "pool_factor": pf,
            "build_s": round(build_s, 1),
            "stored_tokens": index.info()["tokens"],
            "n_tokens": n_tokens,
            **memory_figures(index, work, n_tokens),
        }
        n_exact_default = SearchConfig().resolved(10, index.info()["centroids"])[2]
        if refine_bits:
            row["refine_kb_read_per_query_default"] = refine_read_kb(row, n_exact_default)
        default = SearchConfig(exact=False)
        out["runs"].append({**row, "setting": "default", **measure(index, queries, truth, source, default, "default")})
        timed = {"default": (default, out["runs"][-1])}
        if refine_bits:  # the same index, its second plane left unread: what the first plane alone gives
            first = SearchConfig(exact=False, refine=False)
            out["runs"].append(
                {
                    **row,
                    "setting": "default, first plane only",
                    **measure(index, queries, truth, source, first, "first plane"),
                    "first_plane_equals_2bit_index": _same_residuals(work, cache / "work" / f"{name}-2-0-1"),
                }
            )
            timed["default, first plane only"] = (first, out["runs"][-1])
        if pf == 1:
            t0 = time.perf_counter()
            tuned = index.tune(list(tune_queries), target_recall=TARGET_RECALL, k=10)
            cfg = SearchConfig(
                exact=False,
                nprobe=tuned.nprobe,
                n_candidates=10 * tuned.candidates_per_k,
                n_exact=10 * tuned.exact_per_k,
            )
            tuned_row = {
                **row,
                "setting": "tuned",
                "tune_s": round(time.perf_counter() - t0, 1),
                "tuned": {
                    "nprobe": tuned.nprobe,
                    "n_candidates": cfg.n_candidates,
                    "n_exact": cfg.n_exact,
                    "recall_vs_stored_on_tune_queries": tuned.recall,
                    "reached": tuned.reached,
                },
                **measure(index, queries, truth, source, cfg, "tuned"),
            }
            if refine_bits:
                assert cfg.n_exact is not None
                tuned_row["refine_kb_read_per_query"] = refine_read_kb(row, cfg.n_exact)
            out["runs"].append(tuned_row)
            timed["tuned"] = (cfg, tuned_row)
            found, _ = time_queries(
                lambda q: [int(h["id"]) for h in index.search_embeddings(q, k=10, config=SearchConfig(exact=True))[0]],
                queries[:30],
                "exact",
                warmup=0,
                repeats=1,
            )
            out["runs"].append(
                {
                    **row,
                    "setting": "exact-over-stored (ceiling, 30 queries)",
                    "recall@10": round(recall_at_10(found, truth[:30]), 4),
                }
            )
        if pf == 1:
            kept.append((index, work, timed))
        else:
            index.close()
            shutil.rmtree(work, ignore_errors=True)
        (RESULTS / f"index-quality-{name}.partial.json").write_text(json.dumps(out, indent=1))
    out["interleaved_load_avg_1min"] = time_interleaved(kept, queries)
    if colbert_python is not None:
        out["peers"] = {"colbert": run_colbert(data, cache / "work" / f"{name}-colbert", colbert_python)}
        out["vs_plaid"] = against_plaid(out)
    for index, work, _ in kept:
        index.close()
        if os.environ.get("MAXSIM_BENCH_REUSE") != "1":
            shutil.rmtree(work, ignore_errors=True)
    return out


def run_colbert(data: Path, work: Path, python: Path) -> dict:
    """Stanford PLAID (colbert-ai, 2 bits) on the same vectors and queries, one thread, from its
    benchmark venv (bench/index_colbert.py); times and recall as for maxsim (time_queries)."""
    out = work.parent / f"{work.name}.json"
    if not python.exists():
        return {"skipped": f"no interpreter at {python} (create the benchmark venv first, see README)"}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    script = Path(__file__).resolve().parent / "index_colbert.py"
    proc = subprocess.run([str(python), str(script), str(data), str(work), "1", str(out)], env=env, check=False)
    if proc.returncode != 0 or not out.exists():
        return {"skipped": f"colbert-ai runner failed with exit code {proc.returncode}"}
    res = json.loads(out.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return res


def against_plaid(out: dict) -> dict:
    """Each maxsim tuned index against PLAID's default search: recall@10 at least PLAID's, at a
    p50 no higher than PLAID's (both timed one query at a time on one thread in this run)."""
    peer = out["peers"]["colbert"]
    if "skipped" in peer:
        return {"skipped": peer["skipped"]}
    plaid = next(r for r in peer["runs"] if r["setting"] == "default" and r["threads"] == 1)
    verdicts = {}
    for r in out["runs"]:
        if r["setting"] != "tuned" or r["pool_factor"] != 1:
            continue
        bits = f"{r['nbits']}+{r['refine_bits']}" if r["refine_bits"] else str(r["nbits"])
        verdicts[f"maxsim {bits}-bit tuned"] = {
            "recall@10": r["recall@10"],
            "p50_ms": r["p50_ms"],
            "recall_at_least_plaid": r["recall@10"] >= plaid["recall@10"],
            "p50_at_most_plaid": r["p50_ms"] <= plaid["p50_ms"],
        }
    return {"plaid_default": {"recall@10": round(plaid["recall@10"], 4), "p50_ms": plaid["p50_ms"]}, **verdicts}


def time_interleaved(kept: list, queries: np.ndarray) -> float:
    """Time every kept (index, setting) on each query in turn, so that the machine's load, which
    changes during a run, weighs on all of them alike; adds p50/p95_ms_interleaved to their rows.
    Returns the load average at the end."""
    runs = [(index, cfg, row) for index, _, timed in kept for cfg, row in timed.values()]
    times: list[list[float]] = [[] for _ in runs]
    for q in tqdm(queries, desc="interleaved timing", mininterval=2):
        for j, (index, cfg, _) in enumerate(runs):
            best = float("inf")
            for _ in range(max(1, TIMING_REPEATS)):
                t0 = time.perf_counter()
                index.search_embeddings(q, k=10, config=cfg)
                best = min(best, time.perf_counter() - t0)
            times[j].append(best)
    for (_, _, row), t in zip(runs, times, strict=True):
        ms = np.array(t) * 1000
        row["p50_ms_interleaved"] = round(float(np.percentile(ms, 50)), 3)
        row["p95_ms_interleaved"] = round(float(np.percentile(ms, 95)), 3)
    return round(os.getloadavg()[0], 2)


def _same_residuals(work: Path, work2: Path) -> bool:
    """Whether the two-plane index's first plane holds the same bytes as the 2-bit index's
    residuals (same vectors, same training sample and seed: the nested codec keeps the 2-bit one)."""

    def planes(p: Path) -> list[bytes]:
        segs = sorted(p.glob("seg-*"), key=lambda d: int(np.load(d / "docnos.npy")[0]))
        return [np.load(d / "residuals.npy").tobytes() for d in segs]

    return work2.exists() and planes(work) == planes(work2)


def table(results: dict) -> str:
    lines = [
        f"{'shape':<15}{'bits':>5}{'pool':>5} {'setting':<18}{'res B/t':>9}{'disk B/t':>9}{'stored tok':>11}"
        f"{'p50 ms':>8}{'p50 il':>8}{'R@10':>7}{'nDCG@10':>8}"
    ]
    for name, res in results.items():
        for r in res["runs"]:
            bits = f"{r['nbits']}+{r['refine_bits']}" if r.get("refine_bits") else str(r["nbits"])
            lines.append(
                f"{name:<15}{bits:>5}{r['pool_factor']:>5} {r['setting'][:17]:<18}"
                f"{r['resident_bytes_per_token']:>9.2f}{r.get('disk_bytes_per_token', float('nan')):>9.2f}"
                f"{r['stored_tokens']:>11}{r.get('p50_ms', float('nan')):>8.2f}"
                f"{r.get('p50_ms_interleaved', float('nan')):>8.2f}{r['recall@10']:>7.3f}"
                f"{r.get('ndcg@10', float('nan')):>8.3f}"
            )
        peer = res.get("peers", {}).get("colbert")
        if peer and "skipped" in peer:
            lines.append(f"{name:<15}PLAID (colbert-ai) skipped: {peer['skipped']}")
        elif peer:
            bpt = peer["index_bytes"] / peer["n_tokens"]
            for r in peer["runs"]:
                if r["threads"] == 1:
                    lines.append(
                        f"{name:<15}{'2':>5}{'1':>5} {'PLAID ' + r['setting']:<18}{'-':>9}{bpt:>9.2f}{'-':>11}"
                        f"{r['p50_ms']:>8.2f}{'-':>8}{r['recall@10']:>7.3f}{'-':>8}"
                    )
        for system, v in res.get("vs_plaid", {}).items():
            if isinstance(v, dict) and "recall_at_least_plaid" in v:
                ok = v["recall_at_least_plaid"] and v["p50_at_most_plaid"]
                lines.append(f"{name:<15}vs PLAID default: {system} {'meets' if ok else 'does NOT meet'} it")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--cache", default="/tmp/maxsim-bench-cache/quality")
    ap.add_argument("--force", action="store_true")
    ap.add_argument(
        "--colbert-python",
        type=Path,
        default=Path(__file__).resolve().parent.parent / ".benchenv-colbert" / "bin" / "python",
        help="colbert-ai's benchmark venv interpreter (Stanford PLAID on the same vectors)",
    )
    ap.add_argument("--no-plaid", action="store_true", help="do not run Stanford PLAID")
    args = ap.parse_args(argv)
    cache = Path(args.cache)
    path = RESULTS / "index-quality.json"
    combined = json.loads(path.read_text()) if path.exists() else {}
    for name in args.shapes.split(","):
        if name in combined and not args.force:
            continue
        combined[name] = run_shape(name, SHAPES[name], cache, None if args.no_plaid else args.colbert_python)
        path.write_text(json.dumps(combined, indent=1))
        (RESULTS / f"index-quality-{name}.partial.json").unlink(missing_ok=True)
    print(table({n: combined[n] for n in args.shapes.split(",") if n in combined}))


if __name__ == "__main__":
    main()
