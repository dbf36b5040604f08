"""Package a trained head: copy it with metadata and write its model card (data, licences, recipe, results)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from maxsim.errors import InvalidArgumentError


def licences(data_root: Path, sources: list[str]) -> list[tuple[str, str, str]]:
    """(source, licence as stated, note) for each training source with a meta.json."""
    out = []
    for s in sources:
        meta_path = data_root / s / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        note = meta.get("train_source_split") or meta.get("train_note") or ""
        out.append((s, meta.get("license", "unknown"), str(note)))
    return out


def package_head(run_dir: Path, target: Path, data_root: Path, eval_before: Path, eval_after: Path) -> Path:
    """Copy ``run_dir/head.safetensors`` to ``target`` with metadata; write ``target`` with .md as its card."""
    from maxsim.evaluation.report import language_table, markdown_table

    train = json.loads((run_dir / "train_args.json").read_text())
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())["state"]
    with safe_open(str(run_dir / "head.safetensors"), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = dict(fh.metadata() or {})
    sources = sorted(train["train_pairs_by_source"])
    meta.update(
        {
            "format": "maxsim-head-1",
            "base": "maxsim-e5-small-colbert whitened-PCA head (warm start)",
            "trained_on": ",".join(sources),
            "recipe": "docs/training.md; train_args in the model card",
        }
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata=meta)
    before, after = json.loads(eval_before.read_text()), json.loads(eval_after.read_text())
    merged = {**after, "collections": [], "average": {}}
    for cb, ca in zip(before["collections"], after["collections"]):
        if cb["name"] != ca["name"] or cb["n_queries"] != ca["n_queries"] or cb["n_docs"] != ca["n_docs"]:
            raise InvalidArgumentError(
                f"the two evaluations differ at {cb['name']} / {ca['name']}: compare runs on the same sample"
            )
        metrics = {s: v for s, v in ca["metrics"].items() if s in ("bm25", "dense")}
        metrics.update({f"pca-{s.split('-')[1]}": v for s, v in cb["metrics"].items() if s.startswith("colbert-")})
        metrics.update({f"trained-{s.split('-')[1]}": v for s, v in ca["metrics"].items() if s.startswith("colbert-")})
        merged["collections"].append({**ca, "metrics": metrics})
    from maxsim.evaluation.runner import CollectionResult, average, by_language

    results = [
        CollectionResult(c["name"], c["language"], c["n_queries"], c["n_docs"], c["metrics"])
        for c in merged["collections"]
    ]
    merged["average"] = average(results, ("ndcg@10", "mrr@10", "recall@100"))
    merged["by_language"] = by_language(results, ("ndcg@10", "mrr@10", "recall@100"))
    rows = "\n".join(
        f"| {s} | {n} | {lic} |"
        for (s, lic, _), n in zip(licences(data_root, sources), [train["train_pairs_by_source"][s] for s in sources])
    )
    sample = after.get("sample") or {}
    card = f"""# {target.name}: trained projection head for maxsim-e5-small-colbert

A 384→128 linear head (weight [128, 384], bias [128]) on the frozen multilingual-e5-small
backbone, trained with `maxsim train --trainable head` (contrastive loss with in-batch and one
BM25-mined hard negative per pair, Matryoshka over 128/96/64), warm-started from the shipped
whitened-PCA head. Best step by dev nDCG@10 on held-out training pairs: {state.get("best_step")}
of {state.get("step")}.

## Training data (the shared kit's train pairs; none from the evaluated dev splits)

| source | pairs used | licence as stated by the source |
|---|---|---|
{rows}

DRCD and JSQuAD training pairs come from those datasets' official **test** splits (their train
files could not be obtained); their test splits are never used for evaluation here. CC BY-SA
sources require attribution; whether share-alike reaches trained weights is a question for the
project's licence review.

## Recipe

```json
{json.dumps(train["args"], indent=1)}
```

## Evaluation (dev splits of ../shared/data, sampled: {sample.get("max_queries")} queries / {sample.get("max_docs")} docs per collection, seed {sample.get("seed")})

nDCG@10 x100; `pca-*` = the shipped whitened-PCA head, `trained-*` = this head; BM25 and dense
come from the trained head's run; both runs use the same sample and the same cached backbone states.

{markdown_table(merged, "ndcg@10")}

### By language

{language_table(merged, "ndcg@10")}
"""
    target.with_suffix(".md").write_text(card, encoding="utf-8")
    return target
