"""The main job end to end: encode a multilingual corpus, answer queries in several languages."""

from __future__ import annotations

import json
import time
from importlib import resources

import numpy as np

from maxsim.scoring.maxsim import maxsim_scores


def demo_corpus() -> dict:
    """Passages and queries written for the project: 13 languages, overlapping topics."""
    return json.loads(resources.files("maxsim").joinpath("resources/demo_corpus.json").read_text(encoding="utf-8"))


def run_demo(model_name: str | None = None, dim: int | None = None, top_k: int = 3) -> list[dict]:
    from maxsim.models.loading import load

    t0 = time.perf_counter()
    model = load(model_name)
    t_load = time.perf_counter() - t0
    dim = dim or model.dims[0]
    corpus = demo_corpus()
    passages = corpus["passages"]
    t0 = time.perf_counter()
    doc_vectors = model.encode_documents([p["text"] for p in passages], dim=dim)
    t_docs = time.perf_counter() - t0
    n_tokens = sum(len(v) for v in doc_vectors)
    languages = sorted({p["lang"] for p in passages})
    print(f"model {model.name} loaded in {t_load:.1f}s")
    print(
        f"encoded {len(passages)} passages in {len(languages)} languages ({', '.join(languages)}): "
        f"{n_tokens} token vectors of dim {dim} in {t_docs:.1f}s"
    )
    answers = []
    for q in corpus["queries"]:
        qv = model.encode_queries([q["text"]], dim=dim)[0]
        scores = maxsim_scores(qv, doc_vectors)
        top = np.argsort(-scores)[:top_k]
        print(f"\n[{q['lang']}] {q['text']}")
        hits = []
        for rank, i in enumerate(top, 1):
            p = passages[i]
            tag = "" if p["lang"] == q["lang"] else "  (cross-lingual)"
            print(f"  {rank}. {scores[i]:6.2f}  [{p['lang']}] {p['id']}: {p['text'][:70]}…{tag}")
            hits.append({"id": p["id"], "lang": p["lang"], "score": float(scores[i])})
        answers.append({"query": q["text"], "lang": q["lang"], "hits": hits})
    return answers
