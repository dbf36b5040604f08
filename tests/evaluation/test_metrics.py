"""Metrics (through ranx) on a hand-made case whose values are worked out by hand."""

from __future__ import annotations

import math

import pytest

from maxsim.evaluation.metrics import evaluate_run


def test_known_values():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}, "q3": {"z": 1}}
    run = {
        "q1": {"x": 3.0, "a": 2.0, "y": 1.0},  # hit at rank 2
        "q2": {"b": 5.0, "x": 4.0, "c": 3.0},  # hits at ranks 1 and 3
        # q3 is missing from the run: it counts as 0
    }
    m = evaluate_run(qrels, run)
    ndcg_q1 = 1 / math.log2(3)
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2 + 0) / 3, abs=1e-6)
    assert m["mrr@10"] == pytest.approx((0.5 + 1.0 + 0) / 3, abs=1e-6)
    assert m["recall@100"] == pytest.approx((1 + 1 + 0) / 3, abs=1e-6)


def test_cutoff_matters():
    qrels = {"q": {"d10": 1}}
    run = {"q": {f"d{i}": 100.0 - i for i in range(12)}}  # relevant document at rank 11
    m = evaluate_run(qrels, run, ("ndcg@10", "mrr@10", "recall@100"))
    assert m["ndcg@10"] == 0.0 and m["mrr@10"] == 0.0 and m["recall@100"] == 1.0


def test_empty_qrels_rejected():
    with pytest.raises(ValueError, match="no judged"):
        evaluate_run({}, {})
