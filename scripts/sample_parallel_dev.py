"""A smaller copy of the SQuAD-family dev sets that samples the SAME questions in every language.

    python scripts/sample_parallel_dev.py runs/split/dev runs/split/dev-squad-sample --paragraphs 150

Draws ``--paragraphs`` English dev paragraphs (seeded), keeps every dev question asked on them, and
writes each SQuAD-family set (monolingual en/es/it and the cross-lingual ``squad-xl-*``) with
those questions and the paragraphs they are judged on. Because every set keeps the same question
ids and each language's corpus is the same sample, a cross-lingual set's inputs are those of two
monolingual sets, so ``maxsim eval`` encodes them once (a quick check when the CPU is short; the
full dev split remains the reference).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from maxsim.evaluation.datasets import Collection, load_collection
from maxsim.train.run import write_beir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dev", type=Path, help="the dev folder of make_training_split.py")
    ap.add_argument("out", type=Path)
    ap.add_argument("--paragraphs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    en = load_collection(args.dev / "squad-v1.1-en")
    docs = sorted(en.corpus)
    chosen = set(random.Random(args.seed).sample(docs, min(args.paragraphs, len(docs))))
    questions = {q for q, rels in en.qrels.items() if set(rels) <= chosen}
    folders = sorted(p for p in args.dev.iterdir() if p.name.startswith("squad-"))
    # each language's corpus: its paragraphs of the chosen questions, the same in every set in that language
    corpus_of: dict[str, set[str]] = {}
    for folder in folders:
        col = load_collection(folder)
        if "query_language" not in col.meta:
            corpus_of[col.languages[0]] = {d for q in col.qrels if q in questions for d in col.qrels[q]}
    for folder in folders:
        col = load_collection(folder)
        keep = [q for q in col.qrels if q in questions]
        judged = corpus_of[col.languages[0]]
        sample = Collection(
            col.name,
            {d: t for d, t in col.corpus.items() if d in judged},
            {q: col.queries[q] for q in keep},
            {q: col.qrels[q] for q in keep},
            col.languages,
            {**col.meta, "parallel_sample": {"paragraphs": args.paragraphs, "seed": args.seed}},
        )
        write_beir(sample, args.out / col.name)
        print(f"{col.name}: {len(sample.queries)} queries, {len(sample.corpus)} docs")


if __name__ == "__main__":
    main()
