"""Carve training pairs from the shared dev collections by article; keep the rest as the evaluation folder.

    python scripts/make_training_split.py ../shared/data runs/split
    # runs/split/train/<name>/train.jsonl   carved pairs (and links to the kit's own train.jsonl sets)
    # runs/split/dev/<name>/                 every dev collection minus what went to training
    # runs/split/dev/squad-xl-<q>-<d>/        cross-lingual dev sets: questions in <q>, paragraphs in <d>
    # runs/split/train/squad-xl-<q>-<d>/      cross-lingual training pairs (translate-train)

What is carved (fraction 0.3, seed 0):

- ``squad-v1.1-en`` by blocks of consecutive paragraphs (its articles run one after another; the
  block after a training block is dropped), and ``squad-es`` / ``squad-it`` exactly like it: these
  translations keep SQuAD's question ids, so a paragraph trained on in one language is never
  evaluated in another (`carve_like`).
- ``drcd-zh`` by article (its question ids name the article: ``1147-5-1``).
- ``tydiqa-goldp-{ar,fi,id,ru,te}`` by blocks, as before (TyDi has no train pairs for them).

Cross-lingual (``--no-cross-lingual`` skips them): SQuAD en, es and it share question ids, so each
ordered pair of languages gives a dev set (questions of one language, the paragraphs and
judgements of the other, `cross_lingual_collection`) built from the two *dev* sides, and training
pairs built from the two *training* sides: a question and its paragraphs are on the same side of
the carve in every language, so no cross-lingual dev question or paragraph was trained on.

Not carved: collections that have their own train split in the kit (their dev stays whole) and
``persianqa-fa`` (GPL-3.0: evaluation only). Nothing here is copied into the repository.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from maxsim.evaluation.crosslingual import cross_lingual_collection, restrict_to_queries
from maxsim.evaluation.datasets import find_collections, load_collection
from maxsim.train.data import Pair, carve_by_article, carve_like
from maxsim.train.run import write_beir

BLOCK_CARVED = (
    "squad-v1.1-en",
    "tydiqa-goldp-ar",
    "tydiqa-goldp-fi",
    "tydiqa-goldp-id",
    "tydiqa-goldp-ru",
    "tydiqa-goldp-te",
)
#: translation -> the collection whose carve it follows (same question ids)
TRANSLATIONS = {"squad-es": "squad-v1.1-en", "squad-it": "squad-v1.1-en"}
#: collection -> how a query id names its article
ARTICLE_FROM_QUERY_ID = {"drcd-zh": lambda qid: qid.split("-")[0]}
#: train sets of the kit that are not used (licence)
EXCLUDED_TRAIN = ("persianqa-fa",)
#: parallel sets (same question ids), by language, paired both ways for cross-lingual sets
PARALLEL = {"en": "squad-v1.1-en", "es": "squad-es", "it": "squad-it"}


def _write_pairs(pairs, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train.jsonl").open("w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps({"query": p.query, "positive": p.positive, "lang": p.lang}, ensure_ascii=False) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cross-lingual", action="store_true", help="skip the cross-lingual dev sets and pairs")
    args = ap.parse_args()
    train_root, dev_root = args.out / "train", args.out / "dev"
    train_root.mkdir(parents=True, exist_ok=True)
    dev_root.mkdir(parents=True, exist_ok=True)
    folders = {f.name: f for f in find_collections([args.data])}
    reference_split: dict[str, tuple[set[str], set[str]]] = {}
    order = sorted(folders, key=lambda n: n in TRANSLATIONS)  # references before their translations
    sides: dict[str, tuple] = {}  # name -> (collection restricted to trained queries, dev collection)
    for name in order:
        col = load_collection(folders[name])
        if name in BLOCK_CARVED:
            pairs, dev = carve_by_article(col, args.fraction, seed=args.seed)
        elif name in TRANSLATIONS:
            train_q, dev_q = reference_split[TRANSLATIONS[name]]
            pairs, dev = carve_like(col, train_q, dev_q, TRANSLATIONS[name])
        elif name in ARTICLE_FROM_QUERY_ID:
            article_of_query = ARTICLE_FROM_QUERY_ID[name]
            article_of_doc = {d: article_of_query(q) for q, rels in col.qrels.items() for d in rels}
            pairs, dev = carve_by_article(col, args.fraction, article_of=article_of_doc.__getitem__, seed=args.seed)
        else:
            link = dev_root / name
            if not link.exists():
                link.symlink_to(folders[name].resolve(), target_is_directory=True)
            print(f"{name}: dev linked whole ({len(col.queries)} queries)")
            continue
        reference_split[name] = (_trained_queries(col, pairs), set(dev.qrels))
        sides[name] = (restrict_to_queries(col, reference_split[name][0]), dev)
        write_beir(dev, dev_root / name)
        _write_pairs(pairs, train_root / f"{name}-carved")
        print(f"{name}: {len(pairs)} pairs carved; {len(dev.queries)} queries / {len(dev.corpus)} docs stay dev")
    if not args.no_cross_lingual:
        write_cross_lingual(sides, train_root, dev_root)
    for source in sorted(args.data.glob("*/train.jsonl")):
        name = source.parent.name
        if name in EXCLUDED_TRAIN:
            continue
        link = train_root / name
        if not link.exists():
            link.mkdir()
            (link / "train.jsonl").symlink_to(source.resolve())
        print(f"{name}: kit train pairs linked")


def write_cross_lingual(sides: dict[str, tuple], train_root: Path, dev_root: Path) -> None:
    """Dev sets and translate-train pairs for every ordered pair of parallel languages."""
    for qlang, qname in PARALLEL.items():
        for dlang, dname in PARALLEL.items():
            if qlang == dlang or qname not in sides or dname not in sides:
                continue
            name = f"squad-xl-{qlang}-{dlang}"
            (q_train, q_dev), (d_train, d_dev) = sides[qname], sides[dname]
            dev = cross_lingual_collection(q_dev, d_dev, name)
            write_beir(dev, dev_root / name)
            train = cross_lingual_collection(q_train, d_train, name)
            pairs = [
                Pair(train.queries[q], train.corpus[d], lang=f"{qlang}>{dlang}")
                for q, rels in train.qrels.items()
                for d, r in rels.items()
                if r > 0
            ]
            _write_pairs(pairs, train_root / name)
            print(f"{name}: {len(pairs)} cross-lingual pairs; {len(dev.queries)} queries / {len(dev.corpus)} docs dev")


def _trained_queries(col, pairs) -> set[str]:
    """Ids of the queries whose relevant paragraphs all went to training (paragraph texts are unique)."""
    trained_texts = {p.positive for p in pairs}
    return {q for q, rels in col.qrels.items() if all(col.corpus[d] in trained_texts for d, r in rels.items() if r > 0)}


if __name__ == "__main__":
    main()
