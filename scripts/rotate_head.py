"""Rotate an adapter's head so its Matryoshka cuts (96, 64 dims) keep the most they can.

    python scripts/rotate_head.py ADAPTER TRAINING_DATA... --out ROTATED [--per-source 150]
    # the shipped default, rotated in place on training pairs only (never the dev split):
    python scripts/rotate_head.py maxsim/resources/maxsim-e5-small-colbert/adapter.safetensors \
        runs/split/train --out maxsim/resources/maxsim-e5-small-colbert/adapter.safetensors

Encodes a sample of the training pairs' queries and passages with the adapter's model, finds the
principal axes of their 128-d token vectors (maxsim.models.head_rotation) and writes the adapter
back with its head rotated onto them. 128-d scores do not change; the LoRA factors and metadata
are kept, with the rotation's provenance added.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from maxsim.evaluation.runner import plain_backbone_model
from maxsim.models.adapter import apply_adapter, read_adapter, save_adapter
from maxsim.models.head_rotation import prefix_energy, principal_rotation, rotate_head
from maxsim.models.loading import load
from maxsim.train.run import gather_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("adapter", type=Path)
    ap.add_argument("data", nargs="+", help="training pairs (as maxsim train reads them)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-source", type=int, default=150, help="pairs sampled from each source")
    ap.add_argument("--model", default=None, help="model folder or hub id (default: the offline default model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    head, lora, scale, meta = read_adapter(args.adapter)
    model = load(args.model, num_threads=args.threads)
    if model.info.get("adapter"):
        model = plain_backbone_model(model)  # the file replaces the model's own adapter
    apply_adapter(model, args.adapter)

    by_source: dict[str, list] = {}
    for pair in gather_pairs(args.data):
        by_source.setdefault(pair.source or "", []).append(pair)
    rng = random.Random(args.seed)
    sample = [p for pairs in by_source.values() for p in rng.sample(pairs, min(args.per_source, len(pairs)))]
    dim = head.out_features
    queries = model.encode_queries([p.query for p in sample], dim=dim, show_progress=True)
    documents = model.encode_documents(sorted({p.positive for p in sample}), dim=dim, show_progress=True)
    rotation = principal_rotation(queries, documents)
    for cut in (d for d in model.dims if d < dim):
        before, after = prefix_energy(queries + documents, cut), prefix_energy(queries + documents, cut, rotation)
        print(f"energy in the first {cut} of {dim} coordinates: {before:.3f} -> {after:.3f}")
    meta["head_rotation"] = (
        f"principal axes of {sum(len(q) for q in queries)} query and {sum(len(d) for d in documents)} document "
        f"token vectors from {len(sample)} training pairs ({len(by_source)} sources, {args.per_source} each, "
        f"seed {args.seed})"
    )
    save_adapter(args.out, rotate_head(head, rotation), lora, scale if lora else None, meta)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
