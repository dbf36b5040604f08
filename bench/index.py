"""Benchmark of the maxsim index against the PLAID engines on identical vectors.

    python bench/index.py                                   # synthetic-10k and shared, all systems
    python bench/index.py --datasets synthetic-100k --systems maxsim,fast-plaid
    python bench/index.py --force                           # recompute cached results

Datasets (dim 128):
  synthetic-10k / synthetic-100k  clustered token vectors, 30-300 tokens per document, queries of 32
                                  tokens drawn near a random document's tokens
  shared                          /work/shared/data/squad-v1.1-en encoded by the default model
Systems: maxsim (this package), fast-plaid (its wheels pin torch 2.11: run from a separate
benchmark-only venv, --fastplaid-python), colbert (Stanford colbert-ai + faiss-cpu, from its own
venv, --colbert-python). Peers are never package dependencies.

Every system builds an index over the same vectors and answers the same queries one at a time;
we report build time, index bytes per token, single-query latency p50/p95 at 1 and 2 threads,
and recall@10 against brute-force MaxSim on the original vectors. Vectors, ground truth and
each (dataset, system) result are cached, so an interrupted run resumes where it stopped.
Results: a table on stdout and bench/results/index.json.

    python bench/index.py --quality [--shapes ...]          # bench/index_quality.py: token pooling at
                                                            # factors 1-3, tuned vs default settings,
                                                            # 2 vs 4 bits vs two residual planes
                                                            # (2+2), on synthetic shapes
    python bench/pooling.py [--collections ...]             # token pooling at factors 1-3 on real
                                                            # shared collections: size, latency,
                                                            # nDCG@10 and recall@100 vs the qrels
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

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data"
DIM = 128
N_QUERY_TOKENS = 32


# ------------------------------------------------------------------------------------------
# data


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def make_synthetic(out: Path, n_docs: int, n_queries: int, seed: int = 0) -> None:
    """Clustered vectors: each document mixes 3-6 of n_docs/4 topic directions plus noise."""
    rng = np.random.default_rng(seed)
    n_topics = max(64, n_docs // 4)
    topics = _unit(rng.normal(size=(n_topics, DIM)))
    lengths = rng.integers(30, 301, size=n_docs)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.lib.format.open_memmap(
        out / "tokens.tmp.npy", mode="w+", dtype=np.float16, shape=(int(offsets[-1]), DIM)
    )
    noise = 0.6 / np.sqrt(DIM)
    for d in tqdm(range(n_docs), desc=f"generate {n_docs} docs", mininterval=2):
        mine = rng.choice(n_topics, size=int(rng.integers(3, 7)), replace=False)
        n = int(lengths[d])
        x = topics[rng.choice(mine, size=n)] + noise * rng.normal(size=(n, DIM)).astype(np.float32)
        tokens[offsets[d] : offsets[d + 1]] = _unit(x)
    tokens.flush()
    del tokens
    os.replace(out / "tokens.tmp.npy", out / "tokens.npy")
    np.save(out / "offsets.npy", offsets)
    tok = np.load(out / "tokens.npy", mmap_mode="r")
    queries = np.empty((n_queries, N_QUERY_TOKENS, DIM), dtype=np.float32)
    for i, d in enumerate(rng.integers(0, n_docs, size=n_queries)):
        doc = np.asarray(tok[offsets[d] : offsets[d + 1]], dtype=np.float32)
        picked = doc[rng.choice(len(doc), size=N_QUERY_TOKENS)]
        queries[i] = _unit(picked + noise * rng.normal(size=picked.shape))
    np.save(out / "queries.npy", queries)


def make_shared(out: Path, n_queries: int, collection: str = "squad-v1.1-en") -> None:
    """Encode a shared collection with the default model (checkpointed every 128 documents)."""
    import maxsim

    src = SHARED / collection
    if not src.is_dir():
        raise SystemExit(f"shared collection not found: {src}")
    docs = [json.loads(line)["text"] for line in open(src / "corpus.jsonl", encoding="utf-8")]
    queries = [json.loads(line)["text"] for line in open(src / "queries.jsonl", encoding="utf-8")]
    rng = np.random.default_rng(0)
    queries = [queries[i] for i in sorted(rng.choice(len(queries), size=min(n_queries, len(queries)), replace=False))]
    model = maxsim.load()
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    step = 128
    for start in tqdm(range(0, len(docs), step), desc=f"encode {collection}"):
        f = parts / f"{start:07d}.npz"
        if f.exists():
            continue
        vecs = model.encode_documents(docs[start : start + step], dim=DIM)
        np.savez(parts / "tmp.npz", tokens=np.concatenate(vecs).astype(np.float16), lengths=[len(v) for v in vecs])
        os.replace(parts / "tmp.npz", f)
    chunks = [np.load(f) for f in sorted(parts.glob("0*.npz"))]
    lengths = np.concatenate([c["lengths"] for c in chunks])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.save(out / "tokens.npy", np.concatenate([c["tokens"] for c in chunks]))
    np.save(out / "offsets.npy", offsets)
    q = model.encode_queries(queries, dim=DIM)
    np.save(out / "queries.npy", np.stack(q).astype(np.float32))
    shutil.rmtree(parts)


#: Queries scored together by brute_force (memory grows with it: 0.6 GB per 25 queries).
QUERY_STEP = 25


def brute_force(out: Path, k: int = 10) -> None:
    """Exact top-k MaxSim of every query over the original (float16-stored) vectors."""
    tokens = np.load(out / "tokens.npy", mmap_mode="r")
    offsets = np.load(out / "offsets.npy")
    queries = np.load(out / "queries.npy")
    nq = len(queries)
    qflat = queries.reshape(-1, DIM)
    scores = np.zeros((nq, len(offsets) - 1), dtype=np.float32)
    doc_step = max(1, int(200_000 / max(1.0, offsets[-1] / (len(offsets) - 1))))
    for d0 in tqdm(range(0, len(offsets) - 1, doc_step), desc="brute-force MaxSim", mininterval=2):
        d1 = min(d0 + doc_step, len(offsets) - 1)
        block = np.asarray(tokens[offsets[d0] : offsets[d1]], dtype=np.float32)
        starts = offsets[d0:d1] - offsets[d0]
        for q0 in range(0, nq, QUERY_STEP):  # [25 * 32, 200k] floats at a time, not all queries'
            q1 = min(q0 + QUERY_STEP, nq)
            sims = qflat[q0 * N_QUERY_TOKENS : q1 * N_QUERY_TOKENS] @ block.T
            best = np.maximum.reduceat(sims, starts, axis=1)  # [queries * 32, docs]
            scores[q0:q1, d0:d1] = best.reshape(q1 - q0, N_QUERY_TOKENS, -1).sum(axis=1)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.save(out / "truth.npy", top.astype(np.int64))


def prepare(dataset: str, cache: Path, n_queries: int) -> Path:
    out = cache / dataset
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "queries.npy").exists():
        if dataset.startswith("synthetic-"):
            n = int(dataset.split("-")[1].replace("k", "000"))
            make_synthetic(out, n, n_queries)
        elif dataset == "shared":
            make_shared(out, n_queries)
        else:
            raise SystemExit(f"unknown dataset {dataset!r}")
    if not (out / "truth.npy").exists():
        brute_force(out)
    return out


# ------------------------------------------------------------------------------------------
# shared by the runners (this file is also imported by the peer runners)


def load_docs(data: Path) -> tuple[np.memmap, np.ndarray]:
    return np.load(data / "tokens.npy", mmap_mode="r"), np.load(data / "offsets.npy")


def recall_at_10(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10].tolist())) / 10 for f, t in zip(found, truth, strict=True)]))


#: Each query is timed this many times and its fastest time kept, for every system alike: on a
#: machine shared with other jobs, one timing per query mostly measures the scheduler.
TIMING_REPEATS = int(os.environ.get("MAXSIM_BENCH_REPEATS", "2"))


def time_queries(
    search_one, queries: np.ndarray, desc: str, warmup: int = 5, repeats: int | None = None
) -> tuple[list[list[int]], list[float]]:
    repeats = TIMING_REPEATS if repeats is None else repeats
    for q in queries[:warmup]:
        search_one(q)
    found, times = [], []
    for q in tqdm(queries, desc=desc, mininterval=2, leave=False):
        best = float("inf")
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            ids = search_one(q)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
        found.append(ids)
    return found, times


def summarize(times: list[float]) -> dict:
    ms = np.array(times) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "timing_repeats": TIMING_REPEATS,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


BUILD_JSON = "bench-build.json"


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and f.name != BUILD_JSON)


def save_build(work: Path, build_s: float, index_bytes: int) -> dict:
    """Record a peer's build next to its index, so a later run can re-time searches only."""
    build = {"build_s": build_s, "index_bytes": index_bytes}
    (Path(work) / BUILD_JSON).write_text(json.dumps(build))
    return build


def load_build(work: Path) -> dict | None:
    """The build recorded by save_build when MAXSIM_BENCH_REUSE=1 and the index is still there."""
    f = Path(work) / BUILD_JSON
    if os.environ.get("MAXSIM_BENCH_REUSE") != "1" or not f.exists():
        return None
    return {**json.loads(f.read_text()), "reused": True}


# ------------------------------------------------------------------------------------------
# maxsim runner


def maxsim_bytes(path: Path) -> dict:
    """Bytes of a closed maxsim index directory, by part (SQLite's WAL is merged on close)."""
    parts = {
        "residuals": 0,
        "refine_plane": 0,
        "centroid_ids": 0,
        "inverted_lists": 0,
        "doc_offsets": 0,
        "centroid_table": 0,
        "codec_other": 0,
        "catalog_sqlite": 0,
        "other": 0,
    }
    for f in Path(path).rglob("*"):
        if not f.is_file() or f.name == BUILD_JSON:
            continue
        size = f.stat().st_size
        if f.parent.name.startswith("seg-"):
            key = {
                "residuals.npy": "residuals",
                "residuals_refine.npy": "refine_plane",
                "codes.npy": "centroid_ids",
                "ivf_docs.npy": "inverted_lists",
                "ivf_offsets.npy": "inverted_lists",
                "offsets.npy": "doc_offsets",
                "docnos.npy": "doc_offsets",
            }.get(f.name, "other")
        elif f.parent.name.startswith("codec-"):
            key = (
                "centroid_table"
                if f.name in ("centroids.npy", "centroid_levels.npy", "centroid_grid.npy")
                else "codec_other"
            )
        elif f.name.startswith("catalog.sqlite"):
            key = "catalog_sqlite"
        else:
            key = "other"
        parts[key] += size
    return parts


#: maxsim search settings measured (SearchConfig fields); "default" is SearchConfig().
MAXSIM_SETTINGS = {
    "default": {},
    "fast": {"nprobe": 2, "n_candidates": 200, "n_exact": 30},
    "recall": {"nprobe": 8, "n_candidates": 1000, "n_exact": 150},
}


def run_maxsim(data: Path, work: Path, threads: list[int], out: Path, nbits: int = 2) -> None:
    from maxsim.index import Index, SearchConfig

    tokens, offsets = load_docs(data)
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")
    build = load_build(work)
    if build is None:  # build (else re-time searches on the index kept by a previous run)
        if work.exists():
            shutil.rmtree(work)
        t0 = time.perf_counter()
        index = Index.create(work, dim=DIM, nbits=nbits, auto_optimize=False)  # codec trained on the first add
        step = 25_000  # documents per durable add
        n_docs = len(offsets) - 1
        for s in tqdm(range(0, n_docs, step), desc="maxsim build", leave=False):
            e = min(s + step, n_docs)
            block = np.asarray(tokens[offsets[s] : offsets[e]], dtype=np.float32)
            docs = np.split(block, offsets[s + 1 : e] - offsets[s])
            index.add_embeddings(docs, ids=[str(i) for i in range(s, e)])
        build_s = time.perf_counter() - t0
        index.close()
    else:
        build_s = build["build_s"]
    index = Index.open(work, readonly=True)
    info = index.info()
    index.close()
    parts = maxsim_bytes(work)
    closed_bytes = dir_bytes(work)  # before a reader reopens it (SQLite adds a 32 KB -shm file per open index)
    n_tokens = int(offsets[-1])
    payload = sum(parts[k] for k in ("residuals", "centroid_ids", "inverted_lists", "doc_offsets"))
    if build is None:
        save_build(work, build_s, dir_bytes(work))
    index = Index.open(work, readonly=True)
    result = {
        "system": "maxsim" if nbits == 2 else f"maxsim-{nbits}bit",
        "build_s": round(build_s, 2),
        "index_bytes": closed_bytes,
        "bytes_by_part": parts,
        "payload_bytes_per_token": round(payload / n_tokens, 3),
        "arrays_bytes_per_token": round((payload + parts["centroid_table"] + parts["codec_other"]) / n_tokens, 3),
        "n_tokens": n_tokens,
        "params": {
            "nbits": nbits,
            "centroids": info["centroids"],
            "segments": info["segments"],
            "format_version": info["format_version"],
            "reused_build": build is not None,
        },
        "runs": [],
    }
    for name, kw in MAXSIM_SETTINGS.items():
        for t in threads:
            cfg = SearchConfig(exact=False, threads=t, **kw)

            def one(q, cfg=cfg):
                return [int(h["id"]) for h in index.search_embeddings([q], k=10, config=cfg)[0]]

            found, times = time_queries(one, queries, f"maxsim {name} t={t}")
            result["runs"].append(
                {"setting": name, "threads": t, **summarize(times), "recall@10": recall_at_10(found, truth)}
            )
    # the ceiling: exact MaxSim over every stored (decompressed) document
    found, _ = time_queries(
        lambda q: [int(h["id"]) for h in index.search_embeddings([q], k=10, config=SearchConfig(exact=True))[0]],
        queries[:50],
        "maxsim exact",
        warmup=0,
        repeats=1,
    )
    result["recall@10_exact_over_stored"] = recall_at_10(found, truth[:50])
    result["recall@10_exact_queries"] = 50
    out.write_text(json.dumps(result, indent=2))


# ------------------------------------------------------------------------------------------
# orchestration

PEER_SCRIPTS = {"fast-plaid": "index_fastplaid.py", "colbert": "index_colbert.py"}


def run_system(system: str, data: Path, work_root: Path, threads: list[int], args: argparse.Namespace) -> dict:
    out = RESULTS / f"index-{data.name}-{system}.json"
    if out.exists() and not args.force:
        return json.loads(out.read_text())
    work = work_root / f"{data.name}-{system}"
    thr = ",".join(map(str, threads))
    if system.startswith("maxsim"):
        nbits = "2" if system == "maxsim" else system.removeprefix("maxsim-").removesuffix("bit")
        cmd = [sys.executable, str(Path(__file__)), "run-maxsim", str(data), str(work), thr, str(out), nbits]
    else:
        python = Path(args.fastplaid_python if system == "fast-plaid" else args.colbert_python)
        if not python.exists():
            return {"system": system, "skipped": f"no interpreter at {python} (create the benchmark venv first)"}
        cmd = [str(python), str(Path(__file__).parent / PEER_SCRIPTS[system]), str(data), str(work), thr, str(out)]
    print(f"[{data.name}] running {system} ...", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, env=env, timeout=args.timeout)
    if proc.returncode != 0 or not out.exists():
        return {"system": system, "skipped": f"runner failed with exit code {proc.returncode}"}
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(out.read_text())


def table(all_results: dict) -> str:
    head = (
        f"{'dataset':<16}{'system':<13}{'setting':<9}{'thr':>4}{'build s':>9}{'B/tok':>7}{'arr B/t':>8}{'pay B/t':>8}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'R@10':>7}"
    )
    lines = [head]
    for dataset, results in all_results.items():
        for r in results:
            if "skipped" in r:
                lines.append(f"{dataset:<16}{r['system']:<13}skipped: {r['skipped']}")
                continue
            bpt = r["index_bytes"] / r["n_tokens"]
            pay = f"{r['payload_bytes_per_token']:>8.2f}" if "payload_bytes_per_token" in r else f"{'-':>8}"
            arr = f"{r['arrays_bytes_per_token']:>8.2f}" if "arrays_bytes_per_token" in r else f"{'-':>8}"
            for run in r["runs"]:
                lines.append(
                    f"{dataset:<16}{r['system']:<13}{run['setting']:<9}{run['threads']:>4}{r['build_s']:>9.1f}"
                    f"{bpt:>7.2f}{arr}{pay}{run['p50_ms']:>9.2f}{run['p95_ms']:>9.2f}{run['recall@10']:>7.3f}"
                )
            if "recall@10_exact_over_stored" in r:
                lines.append(
                    f"{dataset:<16}{r['system']:<13}exact over stored vectors (ceiling), "
                    f"{r['recall@10_exact_queries']} queries: R@10 {r['recall@10_exact_over_stored']:.3f}"
                )
    lines.append(
        "B/tok: the whole index directory (maxsim: arrays + centroid table + SQLite catalog with ids; "
        "no texts here) per token. arr B/t: maxsim's vector index alone (every array, centroid table "
        "included; without the SQLite catalog of ids, texts and metadata). pay B/t: maxsim's per-token "
        "arrays only (residuals, centroid ids, stored inverted lists, document offsets)."
    )
    return "\n".join(lines)


def ratios(results: list[dict]) -> dict:
    """For each peer setting (1 thread): the fastest maxsim (2-bit) setting with equal or better
    recall@10, and the latency, size and build-time ratios against it."""
    mine = next((r for r in results if r.get("system") == "maxsim" and "runs" in r), None)
    peers = [r for r in results if not r.get("system", "").startswith("maxsim") and "runs" in r]
    if mine is None or not peers:
        return {}
    own = [x for x in mine["runs"] if x["threads"] == 1]
    out = {}
    for p in peers:
        for run in (x for x in p["runs"] if x["threads"] == 1):
            match = [x for x in own if x["recall@10"] >= run["recall@10"] - 1e-9]
            key = f"{p['system']}/{run['setting']}"
            if not match:
                out[key] = {
                    "peer_p50_ms": run["p50_ms"],
                    "peer_recall": run["recall@10"],
                    "maxsim": "no setting reaches this recall",
                }
                continue
            m = min(match, key=lambda x: x["p50_ms"])
            out[key] = {
                "peer_p50_ms": run["p50_ms"],
                "peer_recall": run["recall@10"],
                "maxsim_setting": m["setting"],
                "maxsim_p50_ms": m["p50_ms"],
                "maxsim_recall": m["recall@10"],
                "p50_ratio_maxsim_over_peer": round(m["p50_ms"] / run["p50_ms"], 3),
                "bytes_per_token_ratio": round(
                    (mine["index_bytes"] / mine["n_tokens"]) / (p["index_bytes"] / p["n_tokens"]), 3
                ),
                "build_ratio": round(mine["build_s"] / p["build_s"], 3),
            }
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "run-maxsim":
        _, _, data, work, thr, out, nbits = sys.argv
        run_maxsim(Path(data), Path(work), [int(t) for t in thr.split(",")], Path(out), int(nbits))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--quality":  # pooling, tuned settings, 2 vs 4 bits: index_quality.py
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import index_quality

        index_quality.main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="synthetic-10k,shared")
    ap.add_argument(
        "--systems",
        default="maxsim,maxsim-4bit,fast-plaid,colbert",
        help="maxsim (2 bits), maxsim-1bit, maxsim-4bit, fast-plaid, colbert",
    )
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cache", default=os.environ.get("MAXSIM_BENCH_CACHE", "/tmp/maxsim-bench-cache"))
    ap.add_argument("--fastplaid-python", default=str(ROOT / ".benchenv-fastplaid" / "bin" / "python"))
    ap.add_argument("--colbert-python", default=str(ROOT / ".benchenv-colbert" / "bin" / "python"))
    ap.add_argument("--timeout", type=int, default=6 * 3600, help="seconds per system run")
    ap.add_argument("--force", action="store_true", help="ignore cached results")
    ap.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the indexes built; with MAXSIM_BENCH_REUSE=1 a later run re-times the peers' "
        "searches on them without rebuilding (their recorded build time is reported)",
    )
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache)
    threads = [int(t) for t in args.threads.split(",")]
    combined_path = RESULTS / "index.json"
    combined = json.loads(combined_path.read_text()) if combined_path.exists() else {}
    all_results = {}
    for dataset in args.datasets.split(","):
        data = prepare(dataset, cache, args.queries)
        results = [run_system(s, data, cache / "work", threads, args) for s in args.systems.split(",")]
        all_results[dataset] = results
        combined[dataset] = {
            "results": results,
            "ratios": ratios(results),
            "n_docs": int(len(np.load(data / "offsets.npy")) - 1),
            "n_tokens": int(np.load(data / "offsets.npy")[-1]),
            "n_queries": int(len(np.load(data / "truth.npy"))),
        }
        combined_path.write_text(json.dumps(combined, indent=2))
    print(table(all_results))
    for dataset in all_results:
        print(dataset, json.dumps(combined[dataset]["ratios"]))


if __name__ == "__main__":
    main()
