"""The cross-lingual dev sets and translate-train pairs carved from the real shared kit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from maxsim.evaluation.datasets import load_collection
from maxsim.train.data import read_pairs

ROOT = Path(__file__).resolve().parents[2]
SQUAD = {"en": "squad-v1.1-en", "es": "squad-es", "it": "squad-it"}


@pytest.fixture(scope="module")
def split(shared_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("split")
    script = ROOT / "scripts" / "make_training_split.py"
    subprocess.run(
        [sys.executable, str(script), str(shared_dir / "data"), str(out)], check=True, capture_output=True, cwd=ROOT
    )
    return out


def _question_ids(collection) -> dict[tuple[str, str], set[str]]:
    """(question text, paragraph text) -> the question ids asking it on that paragraph."""
    out: dict[tuple[str, str], set[str]] = {}
    for q, rels in collection.qrels.items():
        for d in rels:
            out.setdefault((collection.queries[q], collection.corpus[d]), set()).add(q)
    return out


def test_cross_lingual_dev_sets_pair_translations_on_the_dev_side(split, shared_dir):
    kit = {lang: load_collection(shared_dir / "data" / name) for lang, name in SQUAD.items()}
    mono_dev = {lang: load_collection(split / "dev" / name) for lang, name in SQUAD.items()}
    for qlang in SQUAD:
        for dlang in SQUAD:
            if qlang == dlang:
                continue
            cross = load_collection(split / "dev" / f"squad-xl-{qlang}-{dlang}")
            assert cross.languages == (dlang,) and cross.meta["query_language"] == qlang
            assert len(cross.queries) > 1000
            # questions of the query language's dev side, on the document language's dev paragraphs
            assert set(cross.qrels) <= set(mono_dev[qlang].qrels) & set(mono_dev[dlang].qrels)
            assert cross.corpus == mono_dev[dlang].corpus
            for q, text in cross.queries.items():
                assert text == kit[qlang].queries[q]
                assert cross.qrels[q] == kit[dlang].qrels[q]


def test_nothing_trained_on_is_evaluated_in_any_language(split, shared_dir):
    kit = {lang: load_collection(shared_dir / "data" / name) for lang, name in SQUAD.items()}
    ids = {lang: _question_ids(col) for lang, col in kit.items()}
    text_to_ids = {lang: {} for lang in SQUAD}
    for lang, col in kit.items():
        for q, t in col.queries.items():
            text_to_ids[lang].setdefault(t, set()).add(q)
    para_to_ids = {lang: {} for lang in SQUAD}
    for lang, col in kit.items():
        for q, rels in col.qrels.items():
            for d in rels:
                para_to_ids[lang].setdefault(col.corpus[d], set()).add(q)
    trained: set[str] = set()  # SQuAD question ids met in training, in any language or pair of languages
    positives: set[str] = set()
    sources = sorted(p for p in (split / "train").iterdir() if (p / "train.jsonl").is_file())
    assert {f"squad-xl-{a}-{b}" for a in SQUAD for b in SQUAD if a != b} <= {p.name for p in sources}
    for folder in sources:
        pairs = read_pairs(folder / "train.jsonl")
        positives |= {p.positive for p in pairs}
        name = folder.name
        if name.startswith("squad-xl-"):
            qlang, dlang = name.split("-")[2:4]
            for p in pairs:
                found = text_to_ids[qlang][p.query] & para_to_ids[dlang][p.positive]
                assert found, f"{name}: a pair that is no translation pair of the kit"
                trained |= found
        for lang, kit_name in SQUAD.items():
            if name == f"{kit_name}-carved":
                for p in pairs:
                    trained |= ids[lang][(p.query, p.positive)]
    assert len(trained) > 2000
    for dev in sorted((split / "dev").iterdir()):
        col = load_collection(dev)
        assert not positives & set(col.corpus.values()), f"{dev.name}: a dev paragraph is a training positive"
        if dev.name.startswith("squad-"):
            assert not trained & set(col.qrels), f"{dev.name}: a dev question was trained on in some language"
