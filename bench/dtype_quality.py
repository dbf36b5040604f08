"""Retrieval quality of the default model in float32 and bfloat16 on one shared collection.

Exact MaxSim over the whole collection, MRR@10 at dims 128 and 64, both dtypes in the same run.
Prints a table and writes bench/results/dtype_quality.json.

    python bench/dtype_quality.py [--collection tydiqa-goldp-en] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import maxsim
from maxsim.scoring.maxsim import maxsim_scores

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"


def _read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def mrr_at_10(queries: list[np.ndarray], docs: list[np.ndarray], doc_ids: list[str], relevant: list[set]) -> float:
    total = 0.0
    for q, rel in zip(queries, relevant):
        top = np.argsort(-maxsim_scores(q, docs))[:10]
        total += next((1.0 / (r + 1) for r, j in enumerate(top) if doc_ids[j] in rel), 0.0)
    return total / len(queries)


def _prefix(vectors: list[np.ndarray], dim: int) -> list[np.ndarray]:
    return [v[:, :dim] / np.linalg.norm(v[:, :dim], axis=1, keepdims=True) for v in vectors]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", default="tydiqa-goldp-en")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dtype_quality.json"))
    args = ap.parse_args()
    ds = SHARED / args.collection
    corpus = _read(ds / "corpus.jsonl")
    texts = {q["_id"]: q["text"] for q in _read(ds / "queries.jsonl")}
    qrels: dict[str, set] = {}
    for line in (ds / "qrels" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, _ = line.split("\t")
        qrels.setdefault(qid, set()).add(did)
    qids = [q for q in texts if q in qrels][: args.queries]
    doc_ids = [d["_id"] for d in corpus]
    rows = []
    for dtype in ("float32", "bfloat16"):
        model = maxsim.load(dtype=dtype)
        docs = model.encode_documents([d["text"] for d in corpus], dim=128, show_progress=True)
        queries = model.encode_queries([texts[q] for q in qids], dim=128)
        for dim in (128, 64):
            mrr = mrr_at_10(_prefix(queries, dim), _prefix(docs, dim), doc_ids, [qrels[q] for q in qids])
            rows.append({"dtype": dtype, "dim": dim, "mrr@10": mrr})
            print(f"{dtype:9s} dim {dim:3d}  MRR@10 {mrr:.4f}", flush=True)
    report = {"collection": args.collection, "queries": len(qids), "docs": len(corpus), "rows": rows}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
