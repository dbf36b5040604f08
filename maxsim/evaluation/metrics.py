"""Retrieval metrics through ``ranx`` (nDCG@10, MRR@10, Recall@100 by default)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from maxsim.errors import InvalidArgumentError

METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100")


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """Mean of each metric over the judged queries; a judged query missing from the run scores 0."""
    try:
        from ranx import Qrels, Run, evaluate
    except ImportError as exc:
        raise ImportError("evaluation metrics need ranx: pip install 'maxsim[eval]'") from exc
    if not qrels:
        raise InvalidArgumentError("no judged queries to evaluate")
    judged = {q: {d: int(s) for d, s in rels.items()} for q, rels in qrels.items()}
    # ranx drops queries absent from the run; give them an empty-ish run so they count as 0.
    scored = {q: dict(run.get(q) or {}) for q in judged}
    for q, docs in scored.items():
        if not docs:
            scored[q] = {"__no_result__": 0.0}
    values = evaluate(Qrels(judged), Run(scored), list(metrics), make_comparable=True)
    if isinstance(values, float):
        values = {metrics[0]: values}
    return {m: float(values[m]) for m in metrics}
