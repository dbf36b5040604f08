"""``maxsim index create | add | delete | search | info | optimize``: the on-disk index from the shell.

Registered on the main parser by :func:`add_index_commands`. ``add`` reads JSONL, one document
per line: ``{"id": str, "text": str, "metadata": {...}}`` (``metadata`` optional; ``id``
optional too, a random one is made). ``search`` prints one JSON line per query:
``{"query": str, "hits": [{"id", "score", "text", "metadata"}, ...]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from maxsim.documents import read_documents


class IndexCliError(ValueError):
    """Bad command-line input: printed as one line, without a traceback."""


def add_index_commands(subparsers: Any) -> None:
    """Register ``index create|add|delete|search|info|optimize`` on an argparse subparsers object."""
    index = subparsers.add_parser("index", help="a compressed, updatable on-disk index",
                                  description=__doc__.split("\n\n")[0])
    sub = index.add_subparsers(dest="index_command", required=True)

    p = sub.add_parser("create", help="create an empty index")
    p.add_argument("path", help="index directory")
    p.add_argument("--model", default=None, help="model name or path (default: the default model)")
    p.add_argument("--dim", type=int, default=128, help="vector width (default 128)")
    p.add_argument("--nbits", type=int, default=2, choices=(1, 2, 4), help="bits per residual dimension (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    p.add_argument("--pool-factor", type=int, default=1, help="store about n/F vectors per document (token pooling; default 1)")
    p.set_defaults(index_func=_cmd_create)

    p = sub.add_parser("add", help="encode JSONL documents and add them")
    p.add_argument("path")
    p.add_argument("input", help="JSONL file of {id, text, metadata?}, or - for stdin")
    p.add_argument("--batch-size", type=int, default=256, help="documents per durable add (default 256)")
    p.set_defaults(index_func=_cmd_add)

    p = sub.add_parser("delete", help="delete documents by id")
    p.add_argument("path")
    p.add_argument("ids", nargs="*", help="ids to delete")
    p.add_argument("--ids-file", default=None, help="file with one id per line, or - for stdin")
    p.set_defaults(index_func=_cmd_delete)

    p = sub.add_parser("search", help="search with text queries")
    p.add_argument("path")
    p.add_argument("queries", nargs="*", help="query texts (or --queries-file)")
    p.add_argument("--queries-file", default=None, help="file with one query per line, or - for stdin")
    p.add_argument("-k", "--top-k", type=int, default=10)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--filter", default=None, help='metadata key/value filter as JSON, e.g. \'{"lang": "en"}\'')
    group.add_argument("--where", default=None,
                       help="SQL WHERE over docs(id, text, metadata), e.g. \"json_extract(metadata, '$.year') > 2020\"")
    p.add_argument("--exact", action="store_true", help="score every document exactly (slow on large indexes)")
    p.add_argument("--hybrid", nargs="?", type=float, const=-1.0, default=None, metavar="WEIGHT",
                   help="fuse BM25 over the stored texts with late interaction (optional BM25 weight in [0, 1])")
    p.set_defaults(index_func=_cmd_search)

    p = sub.add_parser("info", help="print the index's settings and sizes as JSON")
    p.add_argument("path")
    p.add_argument("--verify", action="store_true", help="also checksum every file (reads the whole index)")
    p.set_defaults(index_func=_cmd_info)

    p = sub.add_parser("optimize", help="re-train centroids and compact")
    p.add_argument("path")
    p.set_defaults(index_func=_cmd_optimize)

    index.set_defaults(func=run_index_command)


def run_index_command(args: argparse.Namespace) -> int:
    """Run a parsed ``maxsim index ...`` command; user errors print one line and return 2."""
    from maxsim.index.errors import IndexError_

    try:
        return int(args.index_func(args) or 0)
    except (IndexError_, IndexCliError, ValueError, TypeError, KeyError, OSError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"maxsim index {args.index_command}: error: {msg}", file=sys.stderr)
        return 2


def _lines(path: str) -> list[str]:
    if path == "-":
        return [ln.strip() for ln in sys.stdin if ln.strip()]
    if not Path(path).is_file():
        raise IndexCliError(f"file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return [ln.strip() for ln in f if ln.strip()]


def _cmd_create(args: argparse.Namespace) -> int:
    from maxsim.collection import Index

    model = None
    if args.model is not None:
        import maxsim

        model = maxsim.load(args.model)
    with Index.create(args.path, model=model, dim=args.dim, nbits=args.nbits, overwrite=args.overwrite,
                      pool_factor=args.pool_factor) as index:
        print(json.dumps(index.info()))
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    from maxsim.collection import Index

    if args.batch_size < 1:
        raise IndexCliError("--batch-size must be >= 1")
    if args.input != "-" and not Path(args.input).is_file():
        raise IndexCliError(f"input file not found: {args.input}")
    stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    added = 0
    try:
        with Index.open(args.path) as index:
            batch: list[dict] = []
            for doc in read_documents(stream, "<stdin>" if args.input == "-" else args.input):
                batch.append(doc)
                if len(batch) >= args.batch_size:
                    added += _add_batch(index, batch)
                    batch = []
            if batch:
                added += _add_batch(index, batch)
            print(json.dumps({"added": added, "documents": len(index)}))
    finally:
        if stream is not sys.stdin:
            stream.close()
    return 0


def _add_batch(index: Any, batch: list[dict]) -> int:
    import uuid

    ids = [d["id"] or uuid.uuid4().hex for d in batch]
    index.add([d["text"] for d in batch], ids=ids, metadata=[d["metadata"] for d in batch])
    return len(batch)


def _cmd_delete(args: argparse.Namespace) -> int:
    from maxsim.collection import Index

    ids = list(args.ids) + (_lines(args.ids_file) if args.ids_file else [])
    if not ids:
        raise IndexCliError("give ids to delete, or --ids-file")
    with Index.open(args.path) as index:
        n = index.delete(ids)
        print(json.dumps({"deleted": n, "documents": len(index)}))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from maxsim.collection import Index
    from maxsim.index import SearchConfig

    queries = list(args.queries) + (_lines(args.queries_file) if args.queries_file else [])
    if not queries:
        raise IndexCliError("give query texts, or --queries-file")
    if args.top_k < 1:
        raise IndexCliError("--top-k must be >= 1")
    flt: Any = None
    if args.filter is not None:
        try:
            flt = json.loads(args.filter)
        except json.JSONDecodeError as e:
            raise IndexCliError(f"--filter is not valid JSON ({e.msg})") from None
        if not isinstance(flt, dict):
            raise IndexCliError("--filter must be a JSON object of metadata key/values")
    elif args.where is not None:
        flt = args.where
    config = SearchConfig(exact=True) if args.exact else None
    with Index.open(args.path, readonly=True) as index:
        hybrid = None if args.hybrid is None else (True if args.hybrid == -1.0 else args.hybrid)
        results = index.search(queries, k=args.top_k, filter=flt, config=config, hybrid=hybrid)
    for query, hits in zip(queries, results, strict=True):
        print(json.dumps({"query": query, "hits": hits}, ensure_ascii=False))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from maxsim.collection import Index

    with Index.open(args.path, readonly=True) as index:
        if args.verify:
            index.verify()
        print(json.dumps(index.info()))
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    from maxsim.collection import Index

    with Index.open(args.path) as index:
        index.optimize()
        print(json.dumps(index.info()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``maxsim index ...`` on its own: ``python -m maxsim.cli.index create ...``."""
    parser = argparse.ArgumentParser(prog="maxsim")
    add_index_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["index", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
