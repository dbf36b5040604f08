"""Build the evaluation folder the default model is measured on: every dev collection of the shared
kit, with the five that training carved pairs from replaced by what stayed dev.

    python scripts/make_dev_split.py ../shared/data runs/dev-eval

The carve is the one `maxsim train --carve ... --carve-fraction 0.3 --seed 0` makes (whole blocks
of consecutive paragraphs go to training, their neighbour blocks are dropped), so nothing
evaluated here was trained on. Other collections are linked, not copied.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from maxsim.evaluation.datasets import find_collections, load_collection
from maxsim.train.data import carve_by_article
from maxsim.train.run import write_beir

#: Dev collections the shipped adapter carved training pairs from (Apache-2.0 TyDi QA sets).
CARVED = ("tydiqa-goldp-ar", "tydiqa-goldp-fi", "tydiqa-goldp-id", "tydiqa-goldp-ru", "tydiqa-goldp-te")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for folder in find_collections([args.data]):
        target = args.out / folder.name
        if folder.name in CARVED:
            _, dev = carve_by_article(load_collection(folder), args.fraction, seed=args.seed)
            write_beir(dev, target)
            print(f"{folder.name}: {len(dev.queries)} queries / {len(dev.corpus)} docs stay dev")
        elif not target.exists():
            target.symlink_to(folder.resolve(), target_is_directory=True)
            print(f"{folder.name}: linked")


if __name__ == "__main__":
    main()
