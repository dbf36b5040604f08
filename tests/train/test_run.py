from __future__ import annotations

import json

import pytest

from maxsim.evaluation.datasets import Collection, load_collection
from maxsim.train.data import TrainDataError, carve_by_article
from maxsim.train.run import gather_pairs, write_beir


def test_gather_pairs_from_a_folder_of_sources(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.jsonl").write_text(json.dumps({"query": f"q {name}", "positive": f"p {name}"}) + "\n")
    (tmp_path / "no-train").mkdir()
    pairs = gather_pairs([str(tmp_path)])
    assert [(p.source, p.query) for p in pairs] == [("a", "q a"), ("b", "q b")]
    assert gather_pairs([str(tmp_path / "a" / "train.jsonl")])[0].positive == "p a"
    with pytest.raises(TrainDataError, match="not a JSONL file"):
        gather_pairs([str(tmp_path / "no-train")])


def test_carved_dev_part_round_trips_as_beir(tmp_path):
    corpus = {f"p{i:03d}": f"doc {i}" for i in range(120)}
    col = Collection(
        "c",
        corpus,
        {f"q{i}": f"question {i}" for i in range(120)},
        {f"q{i}": {f"p{i:03d}": 1} for i in range(120)},
        ("en",),
    )
    train, dev = carve_by_article(col, 0.3, block=10)
    write_beir(dev, tmp_path / "c")
    back = load_collection(tmp_path / "c")
    assert back.qrels == dev.qrels and back.corpus == dev.corpus and back.languages == ("en",)
    assert not {p.positive for p in train} & set(back.corpus.values())
