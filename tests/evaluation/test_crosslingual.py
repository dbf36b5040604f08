"""Cross-lingual collections, and evaluation reports that keep them apart from monolingual ones."""

from __future__ import annotations

import json

import pytest

from maxsim.evaluation.crosslingual import cross_lingual_collection, is_cross_lingual
from maxsim.evaluation.datasets import Collection, DatasetError, load_collection
from maxsim.evaluation.runner import EvalConfig, evaluate
from maxsim.train.run import write_beir

EN = Collection(
    "en",
    {"p1": "the cat sat", "p2": "dogs run"},
    {"q1": "where the cat", "q2": "who runs", "q3": "x"},
    {"q1": {"p1": 1}, "q2": {"p2": 1}, "q3": {"p2": 1}},
    ("en",),
)
ES = Collection(
    "es",
    {"e1": "el gato", "e2": "los perros"},
    {"q1": "donde el gato", "q2": "quien corre", "q4": "y"},
    {"q1": {"e1": 1}, "q2": {"e2": 1}, "q4": {"e1": 1}},
    ("es",),
)


def test_pairs_questions_and_passages_by_question_id(tmp_path):
    es_en = cross_lingual_collection(ES, EN, "es-en")
    assert es_en.queries == {"q1": "donde el gato", "q2": "quien corre"}  # only ids judged in both
    assert es_en.qrels == {"q1": {"p1": 1}, "q2": {"p2": 1}} and es_en.corpus == EN.corpus
    assert es_en.languages == ("en",) and is_cross_lingual(es_en) and not is_cross_lingual(EN)
    write_beir(es_en, tmp_path / "es-en")
    back = load_collection(tmp_path / "es-en")
    assert is_cross_lingual(back) and back.meta["query_language"] == "es"
    with pytest.raises(DatasetError, match="both en"):
        cross_lingual_collection(EN, EN)
    with pytest.raises(DatasetError, match="share no question id"):
        cross_lingual_collection(Collection("fr", {}, {"z": "?"}, {"z": {"p1": 1}}, ("fr",)), EN)
    with pytest.raises(DatasetError, match="single-language"):
        cross_lingual_collection(Collection("mix", {}, {}, {}, ("en", "es")), EN)


def test_report_keeps_monolingual_and_cross_lingual_apart(beir_root, tiny, tmp_path):
    """A cross-lingual set reusing a monolingual set's inputs: same states (not re-encoded), own half."""
    en = load_collection(beir_root / "toy-en")
    # the English questions relabelled as a translation: the set repeats toy-en's inputs exactly
    twin = Collection("toy-twin", {}, dict(en.queries), dict(en.qrels), ("xx",))
    write_beir(cross_lingual_collection(twin, en, "toy-xx-en"), beir_root / "toy-xx-en")
    encoded: list[int] = []
    run = tiny._run
    tiny._run = lambda items, **kw: encoded.append(len(items)) or run(items, **kw)
    config = EvalConfig(dims=(128, 64), show_progress=False)
    evaluate([beir_root / "toy-en", beir_root / "toy-zh"], tiny, config, log_fn=None)
    mono_only, encoded[:] = sum(encoded), []
    out = tmp_path / "report"
    data = evaluate([beir_root], tiny, config, out=out, log_fn=None)
    names = [c["name"] for c in data["collections"]]
    assert names == ["toy-en", "toy-xx-en", "toy-zh"]
    assert sum(encoded) == mono_only  # the cross-lingual set's inputs were all met before: nothing re-encoded
    by_name = {c["name"]: c for c in data["collections"]}
    for system in ("colbert-128", "colbert-64", "dense"):
        assert by_name["toy-xx-en"]["metrics"][system] == by_name["toy-en"]["metrics"][system]
    mono, cross = data["halves"]["monolingual"], data["halves"]["cross_lingual"]
    assert mono["collections"] == ["toy-en", "toy-zh"] and cross["collections"] == ["toy-xx-en"]
    for system, values in mono["average"].items():
        want = (by_name["toy-en"]["metrics"][system]["ndcg@10"] + by_name["toy-zh"]["metrics"][system]["ndcg@10"]) / 2
        assert values["ndcg@10"] == pytest.approx(want)
    assert cross["average"]["colbert-64"] == by_name["toy-xx-en"]["metrics"]["colbert-64"]
    assert "xx>en" in data["by_language"] and by_name["toy-xx-en"]["cross_lingual"]
    md = (out / "results.md").read_text()
    assert "monolingual and cross-lingual apart" in md and "| xx>en |" in md
    assert "**average, monolingual**" in md and "**average, cross-lingual**" in md
    assert "- cross-lingual: against 128 dims, 64:" in md
    assert json.loads((out / "results.json").read_text())["halves"] == data["halves"]
    assert (out / "ndcg_vs_dim.png").stat().st_size > 0
