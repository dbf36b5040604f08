"""What ``maxsim train`` does: gather pairs, mine negatives, train, write the artefacts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from maxsim.train.data import (
    Pair,
    TrainDataError,
    carve_by_article,
    mine_bm25_negatives,
    mine_model_negatives,
    pairs_from_beir,
    read_pairs,
    sample_pairs,
    split_by_document,
)


def gather_pairs(paths: list[str]) -> list[Pair]:
    """Pairs from JSONL files, folders holding train.jsonl (or sub-folders that do), or BEIR qrels/train.tsv."""
    pairs: list[Pair] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_file():
            pairs.extend(read_pairs(p))
        elif (p / "train.jsonl").is_file():
            pairs.extend(read_pairs(p / "train.jsonl", source=p.name))
        elif (p / "qrels" / "train.tsv").is_file():
            pairs.extend(pairs_from_beir(p, "train"))
        elif p.is_dir() and any((c / "train.jsonl").is_file() for c in p.iterdir()):
            for c in sorted(p.iterdir()):
                if (c / "train.jsonl").is_file():
                    pairs.extend(read_pairs(c / "train.jsonl", source=c.name))
        else:
            raise TrainDataError(
                f"{p}: not a JSONL file, a folder with train.jsonl, or a BEIR folder with qrels/train.tsv"
            )
    if not pairs:
        raise TrainDataError(f"no training pairs in {paths}")
    return pairs


def write_beir(collection, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for d, t in collection.corpus.items():
            fh.write(json.dumps({"_id": d, "title": "", "text": t}, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for q, t in collection.queries.items():
            fh.write(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    with (folder / "qrels" / "dev.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for q, rels in collection.qrels.items():
            for d, s in rels.items():
                fh.write(f"{q}\t{d}\t{s}\n")
    (folder / "meta.json").write_text(
        json.dumps({**collection.meta, "languages": list(collection.languages)}, indent=1, ensure_ascii=False)
    )


def run_from_args(args) -> int:
    import logging

    from maxsim.errors import MaxsimError
    from maxsim.models.default_model import DEFAULT_MODEL_NAME
    from maxsim.models.loading import load
    from maxsim.train.trainer import Trainer, TrainingArguments, TrainingError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        # settings first: a bad or unavailable --device fails before data, model or negatives
        targs = TrainingArguments(
            output_dir=args.out,
            trainable=args.trainable,
            epochs=args.epochs,
            max_steps=args.max_steps,
            max_seconds=args.max_seconds,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            temperature=args.temperature,
            dims=tuple(args.dims),
            dim_weights=tuple(args.dim_weights) if args.dim_weights else None,
            hard_negatives=args.hard_negatives,
            distill_weight=args.distill_weight,
            doc_maxlen=args.doc_maxlen,
            lora_r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_layers=args.lora_layers,
            bf16=args.bf16,
            top_layers=args.top_layers,
            seed=args.seed,
            save_steps=args.save_steps,
            eval_steps=args.eval_steps,
            cache_dir=args.cache_dir,
            device=getattr(args, "device", "auto"),
            init_adapter=getattr(args, "init_adapter", None),
        )
        pairs = gather_pairs(args.data)
        for folder in args.carve:
            from maxsim.evaluation.datasets import load_collection

            col = load_collection(folder)
            carved, dev = carve_by_article(col, args.carve_fraction, seed=args.seed)
            pairs.extend(carved)
            print(
                f"carved {len(carved)} pairs from {col.name}; {len(dev.queries)} queries / {len(dev.corpus)} docs stay dev"
            )
            if args.carve_out:
                write_beir(dev, Path(args.carve_out) / col.name)
        pairs = sample_pairs(pairs, args.per_source, args.seed)
        train, dev_pairs = split_by_document(pairs, args.dev_fraction, args.seed) if args.dev_fraction else (pairs, [])
        model = load(args.model, num_threads=args.threads)
        if model.info.get("adapter") and args.model in (None, DEFAULT_MODEL_NAME):
            # the result is a complete adapter that replaces the shipped one: start from the plain backbone
            from maxsim.models.default_model import load_default_model

            model = load_default_model(adapter=False, num_threads=args.threads)
        if args.mine == "bm25":
            train = mine_bm25_negatives(train, n=max(1, args.hard_negatives), seed=args.seed)
        elif args.mine == "model":
            train = mine_model_negatives(model, train, n=max(1, args.hard_negatives), seed=args.seed)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        sources: dict[str, int] = {}
        for p in train:
            sources[str(p.source)] = sources.get(str(p.source), 0) + 1
        (out / "train_args.json").write_text(
            json.dumps(
                {
                    "args": asdict(targs),
                    "data": list(args.data),
                    "carved_from": list(args.carve),
                    "train_pairs_by_source": sources,
                    "dev_pairs": len(dev_pairs),
                },
                indent=1,
            )
        )
        print(f"{len(train)} training pairs from {len(sources)} sources, {len(dev_pairs)} dev pairs")
        trainer = Trainer(model, targs, train, dev_pairs)
        print(f"training on {trainer.device}")
        state = trainer.train(resume=not args.no_resume)
    except (TrainDataError, TrainingError, ValueError) as exc:
        raise MaxsimError(str(exc)) from None
    done = state.step >= trainer.total_steps
    print(
        f"{'finished' if done else 'stopped'} at step {state.step}/{trainer.total_steps}; best dev step {state.best_step} ({state.best_metric})"
    )
    if not done:
        print(f"resume with the same command (checkpoint: {trainer.checkpoint_dir})")
    else:
        print(f"evaluate: maxsim eval DATASET_DIR --head {out / 'head.safetensors'}")
    return 0
