"""``maxsim embed`` (alias ``encode``), ``maxsim rerank`` and ``maxsim demo``: a model from the shell.

Texts come from the command line, or one per line from ``--input`` or stdin; a line that is a
JSON object with a ``"text"`` field gives that field (any other line is plain text, even one that
starts with ``{``). Every input is read before the model loads.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from maxsim.cli.common import add_model_args, load_model, non_negative_int, positive_int, read_texts
from maxsim.types import SUPPORTED_DIMS


def add_encode_commands(subparsers: Any) -> None:
    """Register ``embed`` (alias ``encode``), ``rerank`` and ``demo``."""
    p = subparsers.add_parser(
        "embed",
        aliases=["encode"],
        help="texts in, token vectors out (one JSON line per text)",
        description="Encode texts into token vectors; prints one JSON line per text.",
    )
    add_model_args(p)
    p.add_argument("texts", nargs="*", help="texts (default: one per line from --input or stdin)")
    p.add_argument("--input", help="file with one text per line (or JSONL with a text field); - for stdin")
    p.add_argument("--query", action="store_true", help="encode as queries (32 vectors, mask expansion)")
    p.add_argument("--tokens", action="store_true", help="also print the token of each vector")
    p.add_argument("--decimals", type=non_negative_int, default=6, help="digits kept per value (default 6)")
    p.set_defaults(func=cmd_embed)

    p = subparsers.add_parser(
        "rerank",
        help="rank documents against a query by MaxSim",
        description="Rank documents against a query by MaxSim; prints the Jina rerank shape.",
    )
    add_model_args(p)
    p.add_argument("query")
    p.add_argument("texts", nargs="*", help="documents (default: one per line from --input or stdin)")
    p.add_argument("--input", help="file with one document per line (or JSONL with a text field); - for stdin")
    p.add_argument("--top-n", type=positive_int, default=None, help="keep the N best (default: all)")
    p.set_defaults(func=cmd_rerank)

    p = subparsers.add_parser("demo", help="encode a multilingual demo corpus and answer queries in several languages")
    p.add_argument("--model", default=None, help="model folder or hub id (default: the offline default model)")
    p.add_argument("--dim", type=int, default=None, choices=SUPPORTED_DIMS)
    p.add_argument("--top-k", type=positive_int, default=3, help="hits shown per query (default 3)")
    p.set_defaults(func=cmd_demo)


def cmd_embed(args: argparse.Namespace) -> int:
    texts = read_texts(args.texts, args.input)  # before the model: a bad path costs no load
    if not texts:
        return 0
    model = load_model(args)
    encode = model.encode_queries if args.query else model.encode_documents
    vectors = encode(texts, dim=args.dim)
    kind = "query" if args.query else "document"
    for i, (text, v) in enumerate(zip(texts, vectors, strict=True)):
        row: dict[str, Any] = {"index": i, "input_type": kind, "n_vectors": int(v.shape[0]), "dim": int(v.shape[1])}
        if args.tokens:
            row["tokens"] = model.query_tokens(text) if args.query else model.document_tokens(text)
        row["embeddings"] = [[round(float(x), args.decimals) for x in r] for r in v]
        print(json.dumps(row, ensure_ascii=False))
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    documents = read_texts(args.texts, args.input, what="documents")
    model = load_model(args)
    results = model.rerank(args.query, documents, top_n=args.top_n, dim=args.dim) if documents else []
    print(json.dumps({"model": model.name, "results": results}, ensure_ascii=False, indent=1))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from maxsim.demo import run_demo

    run_demo(model_name=args.model, dim=args.dim, top_k=args.top_k)
    return 0
