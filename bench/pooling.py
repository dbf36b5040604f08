"""Token pooling (``Index.create(pool_factor=...)``) on real collections: size, build time,
single-query latency and retrieval quality (nDCG@10, recall@100 against the qrels) at pool
factors 1, 2, 3, next to exact MaxSim over the unpooled float vectors (the quality ceiling).
bench/index_quality.py measures pooling on synthetic shapes, where nDCG@10 is trivially 1.0.

    python bench/pooling.py                               # every collection, steps cached
    python bench/pooling.py --collections drcd-zh --force

Each collection (BEIR layout under /work/shared/data) is encoded once by the default model
(``maxsim.load()``, dim 128; passage text "title text" as ``maxsim eval`` builds it), with at
most ``--queries`` judged queries sampled with a fixed seed (the whole corpus is kept); the
vectors are cached as float16 under ``--cache``. Every pool factor indexes those same vectors
(2 bits). Search uses the default SearchConfig with exact=False (as index_quality.py does, so
collections under 512 documents use the index rather than exact scoring); one thread, k=100.
Latency: all factors answer each query in turn (fastest of MAXSIM_BENCH_REPEATS), so the load
of this shared machine weighs on them alike; compare the ratios to factor 1, not across runs.
Bytes per token are the whole index directory over the original (unpooled) token count.
Results: a table on stdout, bench/results/index-pooling.json and index-pooling.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from index import DIM, RESULTS, SHARED, TIMING_REPEATS, maxsim_bytes

COLLECTIONS = ("squad-v1.1-en", "drcd-zh", "tydiqa-goldp-en", "tydiqa-goldp-ar")
POOL_FACTORS = (1, 2, 3)
K = 100
METRICS = ("ndcg@10", "recall@100")


def encode(name: str, out: Path, n_queries: int) -> None:
    """Corpus and sampled queries of one collection -> float16 vectors (resumable per part)."""
    import maxsim
    from maxsim.evaluation.datasets import load_collection, sample_collection

    col = sample_collection(load_collection(SHARED / name), max_queries=n_queries, seed=0)
    doc_ids, qids = list(col.corpus), list(col.queries)
    model = maxsim.load()
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "tokens.npy").exists():
        parts = out / "parts"
        parts.mkdir(exist_ok=True)
        texts, step = [col.corpus[d] for d in doc_ids], 64
        for s in tqdm(range(0, len(texts), step), desc=f"encode {name}"):
            f = parts / f"{s:07d}.npz"
            if not f.exists():
                vecs = model.encode_documents(texts[s : s + step], dim=DIM)
                np.savez(parts / "tmp.npz", tokens=np.concatenate(vecs).astype(np.float16), n=[len(v) for v in vecs])
                os.replace(parts / "tmp.npz", f)
        chunks = [np.load(f) for f in sorted(parts.glob("0*.npz"))]
        offsets = np.zeros(len(doc_ids) + 1, dtype=np.int64)
        np.cumsum(np.concatenate([c["n"] for c in chunks]), out=offsets[1:])
        np.save(out / "offsets.npy", offsets)
        np.save(out / "tokens.npy", np.concatenate([c["tokens"] for c in chunks]))
        shutil.rmtree(parts)
    q = model.encode_queries([col.queries[i] for i in qids], dim=DIM)
    np.save(out / "queries.npy", np.stack(q).astype(np.float16))
    (out / "meta.json").write_text(json.dumps({"doc_ids": doc_ids, "qids": qids, "qrels": col.qrels}))


def evaluate(qrels: dict, qids: list[str], found: list[dict[str, float]]) -> dict:
    from maxsim.evaluation.metrics import evaluate_run

    run = dict(zip(qids, found, strict=True))
    return {m: round(v, 4) for m, v in evaluate_run(qrels, run, METRICS).items()}


def run_collection(name: str, cache: Path, n_queries: int) -> dict:
    from maxsim.evaluation.runner import late_interaction_topk
    from maxsim.index import Index, SearchConfig

    data = cache / name
    if not (data / "meta.json").exists():
        encode(name, data, n_queries)
    meta = json.loads((data / "meta.json").read_text())
    doc_ids, qids, qrels = meta["doc_ids"], meta["qids"], meta["qrels"]
    tokens, offsets = np.load(data / "tokens.npy"), np.load(data / "offsets.npy")
    queries = np.load(data / "queries.npy").astype(np.float32)
    docs = np.split(tokens.astype(np.float32), offsets[1:-1])
    n_tokens = int(offsets[-1])
    out = {"n_docs": len(docs), "n_tokens": n_tokens, "n_queries": len(qids), "k": K, "runs": []}

    idx, vals = late_interaction_topk(list(queries), docs, K)  # exact MaxSim, unpooled float vectors
    exact = [{doc_ids[int(j)]: float(s) for j, s in zip(i, v)} for i, v in zip(idx, vals)]
    out["exact_float"] = evaluate(qrels, qids, exact)

    warm = cache / "work" / f"{name}-warmup"  # first-call costs (imports, kernel compilation) out of build_s
    shutil.rmtree(warm, ignore_errors=True)
    Index.create(warm, dim=DIM, nbits=2, auto_optimize=False, pool_factor=2).add_embeddings(docs[:64])
    indexes = []
    for pf in POOL_FACTORS:
        work = cache / "work" / f"{name}-pf{pf}"
        shutil.rmtree(work, ignore_errors=True)
        index = Index.create(work, dim=DIM, nbits=2, auto_optimize=False, pool_factor=pf)
        t0 = time.perf_counter()
        index.add_embeddings(docs, ids=doc_ids)
        build_s = time.perf_counter() - t0
        stored = index.info()["tokens"]
        index.close()
        disk = sum(maxsim_bytes(work).values())
        indexes.append(Index.open(work))
        out["runs"].append(
            {
                "pool_factor": pf,
                "build_s": round(build_s, 2),
                "stored_per_token": round(stored / n_tokens, 4),
                "disk_bytes_per_token": round(disk / n_tokens, 2),
            }
        )

    cfg = SearchConfig(exact=False)
    times: list[list[float]] = [[] for _ in indexes]
    found: list[list[dict]] = [[] for _ in indexes]
    for index in indexes:  # warm-up
        for q in queries[:5]:
            index.search_embeddings(q, k=K, config=cfg)
    for q in tqdm(queries, desc=f"search {name}", mininterval=2):
        for j, index in enumerate(indexes):  # factors interleaved query by query
            best = float("inf")
            for _ in range(max(1, TIMING_REPEATS)):
                t0 = time.perf_counter()
                hits = index.search_embeddings(q, k=K, config=cfg)[0]
                best = min(best, time.perf_counter() - t0)
            times[j].append(best)
            found[j].append({h["id"]: float(h["score"]) for h in hits})
    for row, t, f, index in zip(out["runs"], times, found, indexes, strict=True):
        ms = np.array(t) * 1000
        row["p50_ms"] = round(float(np.percentile(ms, 50)), 3)
        row["p95_ms"] = round(float(np.percentile(ms, 95)), 3)
        row.update(evaluate(qrels, qids, f))
        index.close()
    base = out["runs"][0]
    for row in out["runs"]:
        row["p50_ratio"] = round(row["p50_ms"] / base["p50_ms"], 3)
        row["p95_ratio"] = round(row["p95_ms"] / base["p95_ms"], 3)
        d = row["ndcg@10"] - base["ndcg@10"]
        row["ndcg_delta_points"] = round(100 * d, 2)
        row["ndcg_delta_pct"] = round(100 * d / base["ndcg@10"], 2)
    out["timing_repeats"] = TIMING_REPEATS
    out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    shutil.rmtree(cache / "work", ignore_errors=True)
    return out


def table(results: dict) -> str:
    lines = [
        f"{'collection':<17}{'pool':>5}{'vec/tok':>8}{'B/tok':>7}{'add s':>7}{'p50 ms':>8}{'p50 x':>7}"
        f"{'p95 x':>7}{'nDCG@10':>8}{'R@100':>7}{'dNDCG pt':>9}{'d %':>7}"
    ]
    for name, res in results.items():
        e = res["exact_float"]
        lines.append(f"{name:<17}{'exact':>5}{'':>51}{e['ndcg@10']:>8.4f}{e['recall@100']:>7.4f}")
        for r in res["runs"]:
            lines.append(
                f"{name:<17}{r['pool_factor']:>5}{r['stored_per_token']:>8.3f}{r['disk_bytes_per_token']:>7.1f}"
                f"{r['build_s']:>7.1f}{r['p50_ms']:>8.2f}{r['p50_ratio']:>7.2f}{r['p95_ratio']:>7.2f}"
                f"{r['ndcg@10']:>8.4f}{r['recall@100']:>7.4f}{r['ndcg_delta_points']:>9.2f}{r['ndcg_delta_pct']:>7.2f}"
            )
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, res in results.items():
        pf = [r["pool_factor"] for r in res["runs"]]
        line = a.plot(pf, [r["ndcg@10"] for r in res["runs"]], "o-", label=name)[0]
        a.axhline(res["exact_float"]["ndcg@10"], color=line.get_color(), ls=":", lw=1)
        b.plot(pf, [r["disk_bytes_per_token"] for r in res["runs"]], "o-", label=name)
    a.set(xlabel="pool factor", ylabel="nDCG@10 (dotted: exact MaxSim, unpooled)", xticks=POOL_FACTORS)
    b.set(xlabel="pool factor", ylabel="disk bytes per original token", xticks=POOL_FACTORS)
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collections", default=",".join(COLLECTIONS))
    ap.add_argument("--queries", type=int, default=500, help="judged queries sampled per collection")
    ap.add_argument("--cache", default="/work/bench-data/pooling")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    names = args.collections.split(",")
    path = RESULTS / "index-pooling.json"
    combined = json.loads(path.read_text()) if path.exists() else {}
    for name in names:
        if name in combined and not args.force:
            continue
        t0 = time.perf_counter()
        combined[name] = run_collection(name, Path(args.cache), args.queries)
        combined[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(combined, indent=1))
    print(table({n: combined[n] for n in names if n in combined}))
    plot(combined, RESULTS / "index-pooling.png")


if __name__ == "__main__":
    main()
