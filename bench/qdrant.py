"""Benchmark: two-stage Qdrant search (MUVERA or pooled prefetch + MaxSim rerank) vs a full scan.

Encodes a shared retrieval collection with the default maxsim model, loads it into a Qdrant
collection (Qdrant Edge by default: the Rust engine in-process), then for each method measures
recall@10 against maxsim's exact MaxSim top 10 (computed in numpy on the same vectors) and the
latency of one ``query_points`` request per query. All methods run in the same process, on the
same collection, one after the other.

    .venv/bin/python bench/qdrant.py                       # squad-v1.1-en, 300 queries
    .venv/bin/python bench/qdrant.py --data ../shared/data/tydiqa-goldp-en --queries 200

Prints a table and writes ``bench/results/qdrant-<collection>-<engine>.json``.
Encodings are cached (``--cache-dir``) so reruns skip the model.
"""

from __future__ import annotations

import argparse
import json
import os

# Small per-query matmuls (MUVERA encoding) stall when a multi-threaded BLAS competes with Qdrant's
# own search threads on a small machine: keep numpy's BLAS single-threaded unless told otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from maxsim.integrations.qdrant import QdrantSettings, QdrantStore  # noqa: E402
from maxsim.postprocess.muvera import MuveraConfig  # noqa: E402
from maxsim.scoring.maxsim import maxsim_scores  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "squad-v1.1-en"


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_data(folder: Path, n_queries: int, seed: int) -> tuple[list[dict], list[dict], dict[str, str]]:
    corpus = read_jsonl(folder / "corpus.jsonl")
    queries = read_jsonl(folder / "queries.jsonl")
    qrels: dict[str, str] = {}
    with open(folder / "qrels" / "dev.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, _ = line.rstrip("\n").split("\t")
            qrels[qid] = did
    rng = np.random.default_rng(seed)
    if n_queries < len(queries):
        queries = [queries[i] for i in sorted(rng.choice(len(queries), n_queries, replace=False))]
    return corpus, queries, qrels


def encode(model, texts: list[str], *, kind: str, dim: int, cache: Path, batch: int = 32) -> list[np.ndarray]:
    if cache.exists():
        data = np.load(cache)
        flat, lengths = data["flat"], data["lengths"]
        if len(lengths) == len(texts) and flat.shape[1] == dim:
            return np.split(flat, np.cumsum(lengths)[:-1])
    fn = model.encode_documents if kind == "documents" else model.encode_queries
    out: list[np.ndarray] = []
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        out.extend(fn(texts[i : i + batch], dim=dim))
        print(f"  encoded {len(out)}/{len(texts)} {kind} ({time.perf_counter() - t0:.0f}s)", end="\r", flush=True)
    print()
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, flat=np.concatenate(out), lengths=np.array([len(x) for x in out]))
    return out


def run_methods(
    store: QdrantStore,
    queries: list[np.ndarray],
    exact_top: list[list[str]],
    gold: list[str | None],
    plan: list[tuple[str, int]],
    *,
    k: int,
    warmup: int,
    repeats: int,
) -> list[dict]:
    """Time every method on every query, interleaved (query by query, in a rotating order) so
    that load from other processes falls on all methods alike. Each query's latency is the best
    of ``repeats`` runs, which filters out time spent waiting for a CPU on a shared machine."""
    for first_stage, limit in plan:
        for q in queries[:warmup]:
            store.search_embeddings(q, k, first_stage=first_stage, prefetch_limit=limit)
    lat = [[] for _ in plan]
    recall = [[] for _ in plan]
    gold_hits = [0 for _ in plan]
    for qi, (q, ref, g) in enumerate(zip(queries, exact_top, gold, strict=True)):
        for step in range(len(plan)):
            m = (qi + step) % len(plan)
            first_stage, limit = plan[m]
            best_ms = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                [hits] = store.search_embeddings(q, k, first_stage=first_stage, prefetch_limit=limit)
                best_ms = min(best_ms, (time.perf_counter() - t0) * 1000)
            lat[m].append(best_ms)
            got = [h["id"] for h in hits]
            recall[m].append(len(set(got) & set(ref)) / len(ref))
            gold_hits[m] += int(g is not None and g in got)
    rows = []
    for m, (first_stage, limit) in enumerate(plan):
        ms = sorted(lat[m])
        rows.append(
            {
                "method": "full-scan" if first_stage == "none" else f"{first_stage}+rerank",
                "first_stage": first_stage,
                "prefetch_limit": None if first_stage == "none" else limit,
                "recall_at_10": float(np.mean(recall[m])),
                "gold_at_10": gold_hits[m] / len(queries),
                "latency_ms_mean": statistics.fmean(ms),
                "latency_ms_p50": ms[len(ms) // 2],
                "latency_ms_p95": ms[min(len(ms) - 1, int(len(ms) * 0.95))],
                "qps": 1000.0 / statistics.fmean(ms),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="BEIR-layout folder (corpus/queries/qrels)")
    ap.add_argument("--queries", type=int, default=300, help="queries sampled (seeded) from the collection")
    ap.add_argument("--dim", type=int, default=128, choices=(128, 96, 64))
    ap.add_argument(
        "--engine",
        default="edge",
        choices=("edge", "local"),
        help="edge = Qdrant Edge (Rust, in-process); local = qdrant-client local mode (pure Python)",
    )
    ap.add_argument("--prefetch", default="50,100,150,200,400", help="MUVERA prefetch limits to try")
    ap.add_argument("--pooled-prefetch", default="100,200,400", help="pooled-dense prefetch limits to try")
    ap.add_argument("--k-sim", type=int, default=2)
    ap.add_argument("--dim-proj", type=int, default=64)
    ap.add_argument("--repetitions", type=int, default=20)
    ap.add_argument("--final-dim", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="runs per query and method; latency is the best run")
    ap.add_argument("--batch", type=int, default=32, help="queries per batched request (throughput column)")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "maxsim-bench-cache")
    ap.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = ap.parse_args(argv)
    k = 10

    corpus, queries, qrels = load_data(args.data, args.queries, args.seed)
    name = args.data.name
    print(f"{name}: {len(corpus)} docs, {len(queries)} queries, dim {args.dim}, engine {args.engine}")

    import maxsim

    model = maxsim.load()
    t0 = time.perf_counter()
    doc_texts = [(d.get("title", "") + " " + d["text"]).strip() for d in corpus]
    doc_vecs = encode(
        model,
        doc_texts,
        kind="documents",
        dim=args.dim,
        cache=args.cache_dir / f"{name}-{model.name}-docs-{args.dim}.npz",
    )
    q_vecs = encode(
        model,
        [q["text"] for q in queries],
        kind="queries",
        dim=args.dim,
        cache=args.cache_dir / f"{name}-{model.name}-q{len(queries)}s{args.seed}-{args.dim}.npz",
    )
    encode_s = time.perf_counter() - t0
    ids = [d["_id"] for d in corpus]
    n_tokens = [len(v) for v in doc_vecs]
    print(f"encoded in {encode_s:.0f}s; doc tokens mean {np.mean(n_tokens):.0f}, max {max(n_tokens)}")

    # exact reference: MaxSim over every document with one BLAS matmul per query, checked
    # against maxsim.scoring.maxsim_scores (the library's reference) on the first queries
    t0 = time.perf_counter()
    all_tokens = np.concatenate(doc_vecs)
    starts = np.concatenate([[0], np.cumsum(n_tokens)[:-1]])
    exact_top = []
    for qi, q in enumerate(q_vecs):
        s = np.maximum.reduceat(q @ all_tokens.T, starts, axis=1).sum(axis=0)
        if qi < 3:
            np.testing.assert_allclose(s, maxsim_scores(q, doc_vecs), rtol=1e-4, atol=1e-4)
        exact_top.append([ids[i] for i in np.argsort(-s, kind="stable")[:k]])
    numpy_ms = (time.perf_counter() - t0) * 1000 / len(q_vecs)
    gold = [qrels.get(q["_id"]) for q in queries]

    muvera = MuveraConfig(
        k_sim=args.k_sim, dim_proj=args.dim_proj, repetitions=args.repetitions, final_dim=args.final_dim, seed=args.seed
    )
    settings = QdrantSettings(muvera=muvera, pooled=True)
    tmp = tempfile.mkdtemp(prefix="maxsim-bench-qdrant-")
    location = f"edge:{tmp}" if args.engine == "edge" else tmp
    store = QdrantStore.create(location, "bench", dim=args.dim, model=model.name, settings=settings, batch_size=128)
    t0 = time.perf_counter()
    store.add_embeddings(doc_vecs, ids, texts=doc_texts)
    store.optimize()
    ingest_s = time.perf_counter() - t0
    print(f"ingested in {ingest_s:.1f}s (MUVERA dim {muvera.output_dim})")

    plan = [("none", 0)]
    plan += [("muvera", int(x)) for x in args.prefetch.split(",") if x]
    plan += [("pooled", int(x)) for x in args.pooled_prefetch.split(",") if x]
    rows = run_methods(store, q_vecs, exact_top, gold, plan, k=k, warmup=args.warmup, repeats=args.repeats)
    for row, (first_stage, limit) in zip(rows, plan, strict=True):  # throughput with batched requests
        t0 = time.perf_counter()
        for i in range(0, len(q_vecs), args.batch):
            store.search_embeddings(q_vecs[i : i + args.batch], k, first_stage=first_stage, prefetch_limit=limit)
        row["batched_qps"] = len(q_vecs) / (time.perf_counter() - t0)
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        load_avg = os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        load_avg = None

    full = next(r for r in rows if r["first_stage"] == "none")
    for r in rows:
        r["speedup_vs_full_scan"] = full["latency_ms_mean"] / r["latency_ms_mean"]
    meets = [
        r for r in rows if r["first_stage"] != "none" and r["recall_at_10"] >= 0.95 and r["speedup_vs_full_scan"] >= 5.0
    ]

    print()
    print("| method | prefetch | recall@10 vs exact | gold@10 | mean ms | p50 ms | p95 ms | speedup | batched qps |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['prefetch_limit'] or '-'} | {r['recall_at_10']:.3f} | {r['gold_at_10']:.3f} | "
            f"{r['latency_ms_mean']:.1f} | {r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | "
            f"{r['speedup_vs_full_scan']:.1f}x | {r['batched_qps']:.0f} |"
        )
    print(f"\nexact numpy MaxSim (reference, not Qdrant): {numpy_ms:.1f} ms/query; load average {load_avg}")
    verdict = (
        f"target met: {meets[0]['method']} at prefetch {meets[0]['prefetch_limit']}"
        if meets
        else "target NOT met (recall@10 >= 0.95 at >= 5x faster than the full scan)"
    )
    print(verdict)

    result = {
        "benchmark": "qdrant-two-stage",
        "collection": name,
        "n_docs": len(corpus),
        "n_queries": len(queries),
        "query_sample_seed": args.seed,
        "dim": args.dim,
        "engine": args.engine,
        "model": model.name,
        "doc_tokens_mean": float(np.mean(n_tokens)),
        "muvera": muvera.to_dict() | {"output_dim": muvera.output_dim},
        "muvera_hnsw_m": settings.muvera_hnsw_m,
        "ingest_seconds": ingest_s,
        "numpy_exact_ms_per_query": numpy_ms,
        "rows": rows,
        "target": {"recall_at_10": 0.95, "speedup": 5.0, "met_by": meets},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_after": load_avg,
        },
        "timing": "latency: one query_points request per query and method, methods interleaved per query, "
        "best of --repeats runs per query; "
        "batched_qps: search_embeddings with --batch queries per call",
        "batch": args.batch,
        "repeats": args.repeats,
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    out = args.out or REPO / "bench" / "results" / f"qdrant-{name}-{args.engine}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
