"""Stanford ColBERT (colbert-ai, PLAID engine) runner for bench/index.py, on precomputed vectors.

colbert-ai encodes text with its own checkpoint; to index the benchmark's vectors instead, a
stand-in checkpoint returns them by passage id (the "passages" are the ids as strings). Run
with the benchmark-only venv that holds colbert-ai + faiss-cpu:

    .benchenv-colbert/bin/python bench/index_colbert.py DATA WORK THREADS OUT
"""

from __future__ import annotations

import json
import os
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the stand-in checkpoint needs no hub look-ups
TOKENS = OFFSETS = None


class VectorCheckpoint:
    """Stands in for colbert.modeling.checkpoint.Checkpoint: passages are ids into TOKENS."""

    def __init__(self, *args, **kwargs):
        pass

    def cuda(self):
        return self

    def docFromText(self, docs, bsize=None, keep_dims=True, showprogress=False, **kw):
        ids = [int(d) for d in docs]
        embs = [torch.from_numpy(np.asarray(TOKENS[OFFSETS[i] : OFFSETS[i + 1]], dtype=np.float32)) for i in ids]
        doclens = [len(e) for e in embs]
        return torch.cat(embs), doclens  # colbert-ai expects float32 on CPU


def main() -> None:
    global TOKENS, OFFSETS
    data, work, thr, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    import colbert.indexing.collection_indexer as ci
    import colbert.searcher as cs
    from colbert.data import Collection
    from colbert.infra import ColBERTConfig, Run, RunConfig

    ci.Checkpoint = VectorCheckpoint
    cs.Checkpoint = VectorCheckpoint
    threads = [int(t) for t in thr.split(",")]
    TOKENS, OFFSETS = load_docs(data)
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")
    n_docs = len(OFFSETS) - 1
    torch.set_num_threads(max(threads))
    build = load_build(work)
    doc_maxlen = int(np.diff(OFFSETS).max())
    config = ColBERTConfig(
        nbits=2,
        dim=128,
        doc_maxlen=doc_maxlen,
        kmeans_niters=4,
        checkpoint="vectors",
        root=str(work),
        index_root=str(work),
        experiment="bench",
        index_name="idx",
        avoid_fork_if_possible=True,
    )
    collection = Collection(data=[str(i) for i in range(n_docs)])
    index_path = work / "idx"
    if build is None:  # build (else re-time searches on the index kept by a previous run)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        config.configure(index_path=str(index_path))
        index_path.mkdir(parents=True)
        t0 = time.perf_counter()
        with Run().context(RunConfig(nranks=1, experiment="bench", root=str(work), avoid_fork_if_possible=True)):
            indexer = ci.CollectionIndexer(config=config, collection=collection, verbose=0)
            indexer.run([[None]])
        build = save_build(work, time.perf_counter() - t0, dir_bytes(index_path))
    result = {
        "system": "colbert",
        "build_s": round(build["build_s"], 2),
        "index_bytes": build["index_bytes"],
        "n_tokens": int(OFFSETS[-1]),
        "params": {"nbits": 2, "version": _version(), "reused_build": build.get("reused", False)},
        "runs": [],
    }
    from colbert.modeling.colbert import ColBERT

    ColBERT.try_load_torch_extensions(use_gpu=False)  # normally done by the checkpoint's model
    settings = {"default": {}, "wide": {"ncells": 4, "centroid_score_threshold": 0.4, "ndocs": 4096}}
    for name, kw in settings.items():
        with Run().context(RunConfig(nranks=1, experiment="bench", root=str(work))):
            searcher = cs.Searcher(
                index=str(index_path),
                index_root=str(work),
                collection=collection,
                config=ColBERTConfig(**kw) if kw else None,
                verbose=0,
            )
            for t in threads:
                torch.set_num_threads(t)

                def one(q):
                    pids, _, _ = searcher.dense_search(torch.from_numpy(q[None]), k=10)
                    return [int(p) for p in pids]

                found, times = time_queries(one, queries, f"colbert {name} t={t}")
                result["runs"].append(
                    {"setting": name, "threads": t, **summarize(times), "recall@10": recall_at_10(found, truth)}
                )
    out.write_text(json.dumps(result, indent=2))


def _version() -> str:
    from importlib.metadata import version

    return version("colbert-ai")


if __name__ == "__main__":
    main()
