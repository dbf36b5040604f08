"""``maxsim eval``: BEIR collections in, tables, JSON and plots out. Light to import."""

from __future__ import annotations

import argparse


def add_eval_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="measure nDCG@10 / MRR@10 / R@100 on BEIR collections against BM25 and dense baselines",
        description="Evaluate a late-interaction model on BEIR-layout collections (a collection folder, "
        "or a folder of them), with BM25 and dense baselines measured in the same run.",
    )
    p.add_argument("datasets", nargs="+", metavar="DATASET_DIR", help="a BEIR collection, or a folder of collections")
    p.add_argument("--model", default=None, help="model folder or hub id (default: the offline default model)")
    p.add_argument(
        "--head",
        default=None,
        help="an adapter from maxsim train (head.safetensors: the head, optionally LoRA factors) replacing the model's own",
    )
    p.add_argument(
        "--dims", type=int, nargs="+", default=[128, 96, 64], help="late-interaction dims (default 128 96 64)"
    )
    p.add_argument(
        "--baselines",
        nargs="*",
        default=["bm25", "dense"],
        choices=["bm25", "dense"],
        help="baselines (default bm25 dense; none: --baselines)",
    )
    p.add_argument("--no-colbert", action="store_true", help="baselines only")
    p.add_argument("--out", default="eval-results", help="output folder (results.json, results.md, PNG plots)")
    p.add_argument("--split", default="dev", help="qrels file qrels/SPLIT.tsv (default dev)")
    p.add_argument("--max-queries", type=int, default=None, help="sample at most N queries per collection")
    p.add_argument(
        "--max-docs", type=int, default=None, help="sample the corpus to at most N documents (judged ones always kept)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--cache-dir", default=None, help="keep backbone states here and reuse them across runs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "auto"],
        help="model precision (default float32; auto = bfloat16 on CPUs with native bf16, about 2-3x faster)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from maxsim.evaluation.runner import run_from_args

    return run_from_args(args)
