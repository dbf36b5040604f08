from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCS_EN = {
    "d1": "the cat sat on the mat",
    "d2": "dogs run in the park",
    "d3": "stock markets fell sharply today",
    "d4": "the recipe needs flour and sugar",
}
QUERIES_EN = {"q1": "where did the cat sit", "q2": "running dogs park", "q3": "markets fell"}
QRELS_EN = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}
DOCS_ZH = {"z1": "東京都是日本的首都", "z2": "北京是中国的首都", "z3": "今天天气很好"}
QUERIES_ZH = {"y1": "日本的首都", "y2": "中国首都"}
QRELS_ZH = {"y1": {"z1": 1}, "y2": {"z2": 1}}


def write_beir(folder: Path, docs: dict, queries: dict, qrels: dict, lang: str) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": "", "text": v}, ensure_ascii=False) + "\n" for k, v in docs.items())
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in queries.items())
    )
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, r in qrels.items() for d, s in r.items()]
    (folder / "qrels" / "dev.tsv").write_text("\n".join(lines) + "\n")
    (folder / "meta.json").write_text(json.dumps({"languages": [lang]}))
    return folder


@pytest.fixture
def beir_root(tmp_path) -> Path:
    root = tmp_path / "data"
    write_beir(root / "toy-en", DOCS_EN, QUERIES_EN, QRELS_EN, "en")
    write_beir(root / "toy-zh", DOCS_ZH, QUERIES_ZH, QRELS_ZH, "zh")
    (root / "train-only").mkdir()
    (root / "train-only" / "train.jsonl").write_text("{}\n")
    return root


@pytest.fixture
def tiny():
    from maxsim.train.tiny import tiny_model

    words = " ".join(list(DOCS_EN.values()) + list(QUERIES_EN.values())).split()
    return tiny_model(words, seed=0)
