"""fast-plaid runner for bench/index.py; run with the benchmark-only venv's python
(.benchenv-fastplaid: fast-plaid's wheels pin torch 2.11).

    .benchenv-fastplaid/bin/python bench/index_fastplaid.py DATA WORK THREADS OUT
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index import (
    dir_bytes,
    load_build,
    load_docs,
    recall_at_10,
    save_build,
    summarize,
    time_queries,
)

KMEANS_DOCS = int(__import__("os").environ.get("FASTPLAID_KMEANS_DOCS", "2000"))


def main() -> None:
    data, work, thr, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    from fast_plaid import search

    threads = [int(t) for t in thr.split(",")]
    tokens, offsets = load_docs(data)
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")
    torch.set_num_threads(max(threads))
    build = load_build(work)
    if build is None:  # build (else re-time searches on the index kept by a previous run)
        docs = [
            torch.from_numpy(np.asarray(tokens[offsets[i] : offsets[i + 1]], dtype=np.float32))
            for i in range(len(offsets) - 1)
        ]
        if work.exists():
            shutil.rmtree(work)
        t0 = time.perf_counter()
        index = search.FastPlaid(index=str(work), device="cpu")
        n_docs = len(docs)
        # its k-means runs in float16 on CPU, which is slow: cap the documents sampled for it
        index.create(documents_embeddings=docs, nbits=2, n_samples_kmeans=min(n_docs, KMEANS_DOCS))
        build = save_build(work, time.perf_counter() - t0, dir_bytes(work))
        del docs
    else:
        index = search.FastPlaid(index=str(work), device="cpu")
    build_s = build["build_s"]
    result = {
        "system": "fast-plaid",
        "build_s": round(build_s, 2),
        "index_bytes": build["index_bytes"],
        "n_tokens": int(offsets[-1]),
        "params": {
            "nbits": 2,
            "version": _version(),
            "kmeans_docs": KMEANS_DOCS,
            "reused_build": build.get("reused", False),
        },
        "runs": [],
    }
    settings = {"default": {"n_ivf_probe": 8, "n_full_scores": 4096}, "fast": {"n_ivf_probe": 4, "n_full_scores": 1024}}
    for name, kw in settings.items():
        for t in threads:
            torch.set_num_threads(t)

            def one(q, kw=kw):
                res = index.search(queries_embeddings=torch.from_numpy(q[None]), top_k=10, show_progress=False, **kw)
                return [int(d) for d, _ in res[0]]

            found, times = time_queries(one, queries, f"fast-plaid {name} t={t}")
            result["runs"].append(
                {"setting": name, "threads": t, **summarize(times), "recall@10": recall_at_10(found, truth)}
            )
    out.write_text(json.dumps(result, indent=2))


def _version() -> str:
    from importlib.metadata import version

    return version("fast-plaid")


if __name__ == "__main__":
    main()
