"""The ``maxsim`` command: embed, rerank, demo, and the index / serve / qdrant families."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from maxsim.types import SUPPORTED_DIMS

from maxsim.cli.eval import add_eval_commands
from maxsim.cli.index import add_index_commands
from maxsim.cli.qdrant import add_qdrant_commands
from maxsim.cli.serve import add_serve_commands
from maxsim.cli.train import add_train_commands

# Command families that live in their own modules; each exposes add_<name>_commands(subparsers).
_FAMILIES = (add_index_commands, add_serve_commands, add_eval_commands, add_train_commands, add_qdrant_commands)


def _read_texts(args: argparse.Namespace) -> list[str]:
    if args.texts:
        return list(args.texts)
    if args.input:
        with open(args.input, encoding="utf-8") as fh:
            return _texts_from_lines(fh.read().splitlines())
    return _texts_from_lines(sys.stdin.read().splitlines())


def _texts_from_lines(lines: list[str]) -> list[str]:
    """One text per line; a line that is a JSON object takes its "text" field."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                out.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError) as exc:
                raise SystemExit(f"line {n}: a JSON line needs a \"text\" field ({exc})") from None
        else:
            out.append(line)
    return out


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder or hub id (default: the offline default model)")
    p.add_argument("--dim", type=int, default=None, choices=SUPPORTED_DIMS,
                   help="output size (default: the largest the model serves, 128 for most)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "auto"],
                   help="compute dtype (default float32; auto: bfloat16 where the CPU has native bf16)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _load(args: argparse.Namespace):
    from maxsim.models.loading import load

    return load(args.model, dtype=args.dtype, num_threads=args.threads)


def cmd_embed(args: argparse.Namespace) -> int:
    model = _load(args)
    texts = _read_texts(args)
    encode = model.encode_queries if args.query else model.encode_documents
    vectors = encode(texts, dim=args.dim)
    kind = "query" if args.query else "document"
    for i, (text, v) in enumerate(zip(texts, vectors)):
        row = {"index": i, "input_type": kind, "n_vectors": int(v.shape[0]), "dim": int(v.shape[1])}
        if args.tokens:
            row["tokens"] = model.query_tokens(text) if args.query else model.document_tokens(text)
        row["embeddings"] = [[round(float(x), args.decimals) for x in r] for r in v]
        print(json.dumps(row, ensure_ascii=False))
    return 0


def cmd_rerank(args: argparse.Namespace) -> int:
    model = _load(args)
    documents = _read_texts(args)
    results = model.rerank(args.query, documents, top_n=args.top_n, dim=args.dim)
    print(json.dumps({"model": model.name, "results": results}, ensure_ascii=False, indent=1))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from maxsim.demo import run_demo

    run_demo(model_name=args.model, dim=args.dim, top_k=args.top_k)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maxsim", description="Multilingual late-interaction retrieval.")
    parser.add_argument("--version", action="version", version=f"maxsim {__import__('maxsim').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("embed", help="texts in, token vectors out (one JSON line per text)")
    _add_model_args(p)
    p.add_argument("texts", nargs="*", help="texts (default: one per line from --input or stdin)")
    p.add_argument("--input", help="file with one text per line (or JSONL with a text field)")
    p.add_argument("--query", action="store_true", help="encode as queries (32 vectors, mask expansion)")
    p.add_argument("--tokens", action="store_true", help="also print the token of each vector")
    p.add_argument("--decimals", type=int, default=6)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("rerank", help="rank documents against a query by MaxSim")
    _add_model_args(p)
    p.add_argument("query")
    p.add_argument("texts", nargs="*", help="documents (default: one per line from --input or stdin)")
    p.add_argument("--input", help="file with one document per line (or JSONL with a text field)")
    p.add_argument("--top-n", type=int, default=None)
    p.set_defaults(func=cmd_rerank)

    p = sub.add_parser("demo", help="encode a multilingual demo corpus and answer queries in several languages")
    p.add_argument("--model", default=None)
    p.add_argument("--dim", type=int, default=None, choices=SUPPORTED_DIMS)
    p.add_argument("--top-k", type=int, default=3)
    p.set_defaults(func=cmd_demo)

    for add_commands in _FAMILIES:
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from maxsim.errors import MaxsimError

    try:
        return int(args.func(args) or 0)
    except MaxsimError as exc:
        print(f"maxsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
