"""Fusion of a lexical and a late-interaction ranked list."""

from __future__ import annotations

import pytest

from maxsim.scoring.fusion import fuse, rank_fusion, score_fusion


def test_score_fusion_normalises_each_list():
    lexical = {"a": 12.0, "b": 2.0, "c": 7.0}  # BM25 scale
    late = {"b": 30.0, "c": 29.0, "d": 10.0}  # MaxSim scale
    fused = score_fusion([lexical, late], [0.3, 0.7])
    assert fused["a"] == pytest.approx(0.3)  # top of BM25, absent from late interaction
    assert fused["b"] == pytest.approx(0.7)  # bottom of BM25 (0), top of late interaction
    assert fused["c"] == pytest.approx(0.3 * 0.5 + 0.7 * 19 / 20)
    assert fused["d"] == pytest.approx(0.0)
    assert [k for k, _ in fuse(lexical, late, 0.3)] == ["c", "b", "a", "d"]


def test_rank_fusion_uses_ranks_only():
    fused = rank_fusion([{"a": 100.0, "b": 1.0}, {"b": 0.9, "a": 0.1}], [0.5, 0.5], c=60)
    assert fused["a"] == pytest.approx(fused["b"])
    assert fuse({"x": 5.0}, {"y": 9.0, "x": 1.0}, 0.5, "rank")[0][0] == "x"  # in both lists
    with pytest.raises(ValueError, match="fusion"):
        fuse({}, {}, 0.5, "max")
    with pytest.raises(ValueError, match="weight"):
        fuse({}, {}, 1.5)
