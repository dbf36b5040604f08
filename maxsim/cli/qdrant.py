"""``maxsim qdrant create | add | search``: the Qdrant store from the command line.

Registered on the main parser by :func:`add_qdrant_commands`. Each command takes a
``--location`` (``:memory:`` is useless across commands; use a directory for qdrant-client's
local mode, ``edge:<dir>`` for Qdrant Edge, or an ``http(s)://`` URL for a server or cluster,
with ``--api-key`` or the ``QDRANT_API_KEY`` environment variable).

Input of ``add`` is JSONL, one document per line: ``{"id": str, "text": str, "metadata": {...}}``
(``metadata`` optional; without ``id`` a document gets ``"sha1:<hex of its text>"``). ``add``
upserts: a stored id is replaced (a line without ``metadata`` keeps the stored metadata), so
re-adding a file stays idempotent; it prints ``{"added", "updated", "documents"}``. ``search``
prints one JSON line per query: ``{"query": str, "hits": [{"id", "score", "text", "metadata"}, ...]}``.

Errors are one line on stderr naming the problem (and the flag to change), exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Any

from maxsim.cli.common import CliError, load_model_named, parse_json_object, read_lines, require_file, utf8_errors
from maxsim.documents import read_documents
from maxsim.errors import MaxsimError


def add_qdrant_commands(subparsers: Any) -> None:
    """Register ``qdrant create|add|search`` on an ``argparse`` subparsers object."""
    qdrant = subparsers.add_parser(
        "qdrant", help="store and search maxsim vectors in Qdrant", description=__doc__.split("\n\n")[0]
    )
    sub = qdrant.add_subparsers(dest="qdrant_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--location",
            required=True,
            help="directory (embedded local mode), edge:<dir> (Qdrant Edge), or http(s)://host:port",
        )
        p.add_argument("--collection", default="maxsim", help="collection name (default: maxsim)")
        p.add_argument("--api-key", default=None, help="server API key (default: $QDRANT_API_KEY)")
        p.add_argument("--timeout", type=int, default=None, help="server request timeout, seconds")

    p = sub.add_parser("create", help="create a collection for a model and dim")
    common(p)
    p.add_argument("--model", default=None, help="model name or path (default: the offline default model)")
    p.add_argument("--dim", type=int, default=128, choices=(128, 96, 64))
    p.add_argument("--storage", default="float32", choices=("float32", "float16", "uint8"))
    p.add_argument("--no-muvera", action="store_true", help="store no MUVERA vectors (pooled first stage only)")
    p.add_argument("--no-pooled", action="store_true", help="store no pooled dense vectors")
    p.add_argument("--k-sim", type=int, default=2, help="MUVERA SimHash bits (2**k partitions)")
    p.add_argument("--dim-proj", type=int, default=64, help="MUVERA per-partition projection dim")
    p.add_argument("--repetitions", type=int, default=20, help="MUVERA repetitions")
    p.add_argument("--no-fill-empty", action="store_true", help="MUVERA: leave empty document partitions at zero")
    p.add_argument("--final-dim", type=int, default=None, help="MUVERA final projection size")
    p.add_argument("--seed", type=int, default=42, help="MUVERA random seed")
    p.add_argument("--muvera-hnsw-m", type=int, default=16, help="HNSW m on the MUVERA vector (0 = exact scan)")
    p.add_argument(
        "--long-docs",
        default="split",
        choices=("split", "pool"),
        help="documents over Qdrant's multivector cap: split into parts or pool tokens",
    )
    p.add_argument("--max-tokens", type=int, default=None, help="token cap per stored multivector")
    p.add_argument("--shard-number", type=int, default=None, help="shards (server/cluster only)")
    p.add_argument("--replication-factor", type=int, default=None, help="replicas (server/cluster only)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--exist-ok", action="store_true", help="succeed if the same collection exists")
    group.add_argument("--recreate", action="store_true", help="drop an existing collection first")
    p.set_defaults(qdrant_func=_cmd_create)

    p = sub.add_parser("add", help="encode JSONL documents and upsert them (stored ids are replaced)")
    common(p)
    p.add_argument("input", help="JSONL file of {id, text, metadata?}, or - for stdin")
    p.add_argument("--model", default=None, help="model name or path (default: the collection's model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(qdrant_func=_cmd_add)

    p = sub.add_parser("search", help="two-stage search: first stage prefetch, MaxSim rerank")
    common(p)
    p.add_argument("queries", nargs="*", help="query texts (or use --queries-file)")
    p.add_argument("--queries-file", default=None, help="file with one query per line, or - for stdin")
    p.add_argument("--model", default=None, help="model name or path (default: the collection's model)")
    p.add_argument("-k", "--top-k", type=int, default=10)
    p.add_argument("--first-stage", default="muvera", choices=("muvera", "pooled", "none"))
    p.add_argument("--prefetch-limit", type=int, default=200)
    p.add_argument("--filter", default=None, help='metadata filter as JSON, e.g. \'{"lang": "en"}\'')
    p.set_defaults(qdrant_func=_cmd_search)

    qdrant.set_defaults(func=run_qdrant_command)


def run_qdrant_command(args: argparse.Namespace) -> int:
    """Run a parsed ``maxsim qdrant ...`` command; user errors print one line and return 2."""
    from maxsim.integrations.qdrant.errors import QdrantServerError

    # qdrant-client checks the server version in a thread and warns when it cannot: the command
    # itself then fails with one line that says why
    warnings.filterwarnings("ignore", message="Failed to obtain server version")
    try:
        return int(args.qdrant_func(args) or 0)
    except QdrantServerError as exc:
        flags = "--api-key (or $QDRANT_API_KEY)" if "API key" in str(exc) else "--location (and --timeout)"
        print(f"maxsim qdrant {args.qdrant_command}: error: {exc}; check {flags}", file=sys.stderr)
        return 2
    except (MaxsimError, ValueError, TypeError, ImportError) as exc:
        print(f"maxsim qdrant {args.qdrant_command}: error: {exc}", file=sys.stderr)
        return 2


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key is not None:
        return args.api_key
    if args.location.startswith(("http://", "https://")):
        return os.environ.get("QDRANT_API_KEY")
    return None


def _check_location(location: str) -> None:
    if location == ":memory:":
        raise CliError("':memory:' does not outlive one command; use a directory, edge:<dir> or a URL")


def _cmd_create(args: argparse.Namespace) -> int:
    from maxsim.integrations.qdrant import QdrantSettings, QdrantStore
    from maxsim.models.default_model import DEFAULT_MODEL_NAME
    from maxsim.postprocess.muvera import MuveraConfig

    _check_location(args.location)
    muvera = (
        None
        if args.no_muvera
        else MuveraConfig(
            k_sim=args.k_sim,
            dim_proj=args.dim_proj,
            repetitions=args.repetitions,
            fill_empty_partitions=not args.no_fill_empty,
            final_dim=args.final_dim,
            seed=args.seed,
        )
    )
    settings = QdrantSettings(
        storage=args.storage,
        muvera=muvera,
        pooled=not args.no_pooled,
        muvera_hnsw_m=args.muvera_hnsw_m,
        long_docs=args.long_docs,
        max_tokens=args.max_tokens,
        shard_number=args.shard_number,
        replication_factor=args.replication_factor,
    )
    # the collection records the model's name; the default model's is known without loading it
    model_name = args.model if args.model not in (None, "", "default") else DEFAULT_MODEL_NAME
    store = QdrantStore.create(
        args.location,
        args.collection,
        dim=args.dim,
        model=model_name,
        settings=settings,
        api_key=_api_key(args),
        timeout=args.timeout,
        exist_ok=args.exist_ok,
        recreate=args.recreate,
    )
    print(
        json.dumps(
            {
                "collection": args.collection,
                "engine": store.engine,
                "model": model_name,
                "dim": args.dim,
                "settings": settings.to_dict(),
            }
        )
    )
    store.close()
    return 0


def _open(args: argparse.Namespace) -> Any:
    from maxsim.integrations.qdrant import QdrantStore

    _check_location(args.location)
    store = QdrantStore.open(
        args.location,
        args.collection,
        api_key=_api_key(args),
        timeout=args.timeout,
        batch_size=getattr(args, "batch_size", 64),
    )
    try:
        model = load_model_named(args.model if args.model is not None else store.model_name)
        if args.model is None and store.model_name and model.name != store.model_name:
            raise CliError(f"the collection's model {store.model_name!r} loaded as {model.name!r}; pass --model")
    except Exception:
        store.close()
        raise
    store.model = model
    return store


def _cmd_add(args: argparse.Namespace) -> int:
    require_file(args.input, "input")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be a positive integer, got {args.batch_size}")
    store = _open(args)
    try:
        before = store.count()
        if args.input == "-":
            n = _upsert_documents(store, read_documents(sys.stdin, "<stdin>", content_ids=True), args.batch_size)
        else:
            with utf8_errors(args.input, "input"), open(args.input, encoding="utf-8") as f:
                n = _upsert_documents(store, read_documents(f, args.input, content_ids=True), args.batch_size)
        after = store.count()
        print(json.dumps({"added": after - before, "updated": n - (after - before), "documents": after}))
    finally:
        store.close()
    return 0


def _upsert_documents(store: Any, documents: Any, batch_size: int) -> int:
    """Upsert ``{"id", "text", "metadata"}`` records in batches; returns how many were written."""
    n = 0
    batch: list[dict] = []
    for doc in documents:
        batch.append(doc)
        if len(batch) == batch_size:
            n += len(store.upsert([d["text"] for d in batch], [d["id"] for d in batch], [d["metadata"] for d in batch]))
            batch = []
    if batch:
        n += len(store.upsert([d["text"] for d in batch], [d["id"] for d in batch], [d["metadata"] for d in batch]))
    return n


def _cmd_search(args: argparse.Namespace) -> int:
    queries = list(args.queries)
    if args.queries_file is not None:
        queries += read_lines(args.queries_file, "--queries-file")
    if not queries:
        raise CliError("give at least one query (positional or --queries-file)")
    if args.top_k < 1:
        raise CliError(f"-k/--top-k must be a positive integer, got {args.top_k}")
    if args.first_stage != "none" and args.prefetch_limit < args.top_k:
        raise CliError(f"--prefetch-limit ({args.prefetch_limit}) must be at least -k/--top-k ({args.top_k})")
    flt = None
    if args.filter is not None:
        flt = parse_json_object(args.filter, "--filter")
        from maxsim.integrations.qdrant import parse_filter

        try:
            parse_filter(flt)
        except MaxsimError as exc:
            raise CliError(f"--filter: {exc}") from None
    store = _open(args)
    try:
        results = store.search(
            queries, args.top_k, flt, first_stage=args.first_stage, prefetch_limit=args.prefetch_limit
        )
        for q, hits in zip(queries, results, strict=True):
            print(json.dumps({"query": q, "hits": hits}, ensure_ascii=False))
    finally:
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m maxsim.cli.qdrant qdrant ...``)."""
    parser = argparse.ArgumentParser(prog="maxsim")
    add_qdrant_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
