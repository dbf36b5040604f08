"""``maxsim train``: fine-tune a late-interaction model from pairs/triplets. Light to import."""

from __future__ import annotations

import argparse


def add_train_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="fine-tune a late-interaction model (contrastive + Matryoshka, head / LoRA / top layers)",
        description="Train from JSONL pairs/triplets ({query, positive, [negative(s)], [scores], [lang]}), folders "
        "holding train.jsonl, or BEIR collections with qrels/train.tsv. Re-running with the same --out resumes.",
    )
    p.add_argument(
        "data",
        nargs="+",
        metavar="DATA",
        help="train.jsonl files, folders with train.jsonl (searched one level down), or BEIR folders",
    )
    p.add_argument("--out", required=True, help="output folder: checkpoint/, head.safetensors, train_args.json")
    p.add_argument("--model", default=None, help="model folder or hub id (default: the offline default model)")
    p.add_argument("--trainable", default="head", choices=["head", "lora", "top-layers"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument(
        "--max-seconds", type=float, default=None, help="save and stop after this much time; run again to resume"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--dims", type=int, nargs="+", default=[128, 96, 64])
    p.add_argument("--dim-weights", type=float, nargs="+", default=None, help="loss weight of each dim (default all 1)")
    p.add_argument("--hard-negatives", type=int, default=1, help="hard negatives per pair in each batch")
    p.add_argument(
        "--mine", default="bm25", choices=["bm25", "model", "none"], help="how to mine hard negatives (default bm25)"
    )
    p.add_argument(
        "--distill-weight", type=float, default=0.0, help="weight of the KL loss on rows with teacher 'scores'"
    )
    p.add_argument("--per-source", type=int, default=None, help="use at most N pairs from each source")
    p.add_argument(
        "--dev-fraction", type=float, default=0.05, help="paragraph-disjoint share of pairs kept for dev evaluation"
    )
    p.add_argument(
        "--carve",
        nargs="*",
        default=[],
        metavar="BEIR_DIR",
        help="dev collections to carve training pairs from, by article",
    )
    p.add_argument("--carve-fraction", type=float, default=0.3)
    p.add_argument(
        "--carve-out", default=None, help="write the remaining dev part of carved collections here (BEIR layout)"
    )
    p.add_argument("--doc-maxlen", type=int, default=180)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast for the encoder (faster on CPUs with AVX512-BF16/AMX)"
    )
    p.add_argument(
        "--lora-layers",
        type=int,
        default=None,
        help="LoRA in the top N layers only; the frozen lower layers run once per text (much faster on CPU)",
    )
    p.add_argument("--top-layers", type=int, default=2)
    p.add_argument("--eval-steps", type=int, default=200)
    p.add_argument("--save-steps", type=int, default=200)
    p.add_argument(
        "--init-adapter",
        default=None,
        metavar="FILE",
        help="warm start: the head and the LoRA factors of the layers it adapts from this adapter file "
        "(e.g. the shipped one); further adapted layers start fresh. With --trainable head its LoRA "
        "factors stay frozen (merged into the backbone) and are kept in the result beside the new head",
    )
    p.add_argument("--cache-dir", default=None, help="cache frozen-backbone states here (trainable=head)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--device",
        default="auto",
        metavar="{auto,cpu,cuda,mps}",
        help="where to train: auto (cuda, else mps, else cpu; the default), cpu, cuda, cuda:N or mps; "
        "an unavailable device is an error",
    )
    p.add_argument("--no-resume", action="store_true", help="start over even if --out has a checkpoint")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from maxsim.train.run import run_from_args

    return run_from_args(args)
