"""``maxsim index create | add | delete | search | info | optimize``: the on-disk index from the shell.

Registered on the main parser by :func:`add_index_commands`. ``add`` reads JSONL, one document
per line: ``{"id": str, "text": str, "metadata": {...}}`` (``metadata`` and ``id`` optional), or
the rows of a BEIR ``corpus.jsonl`` (``{"_id", "title", "text"}``; the title goes before the text).
A document without an id gets ``"sha1:<hex of its text>"``, so adding a file twice adds nothing.
``search`` prints one JSON line per query: ``{"query": str, "hits": [{"id", "score", "text",
"metadata"}, ...]}``.

``add`` reads and checks the whole input before it loads the model or writes anything; an id
already in the index is skipped when its text and metadata are unchanged, is an error when they
differ, and is replaced with ``--upsert``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from maxsim.cli.common import (
    STDIN,
    CliError,
    load_model_named,
    parse_json_object,
    positive_int,
    read_lines,
    read_text_file,
    require_file,
    utf8_errors,
    warn,
)
from maxsim.documents import read_documents
from maxsim.types import SUPPORTED_DIMS

REFINE_HELP = (
    "a second residual plane of this many bits (equal to --nbits: 1, 2 or 4), read only to re-rank the "
    "final short list: 4-bit recall at 2-bit resident memory, or 8-bit at 4-bit (default 0: none)"
)


def add_index_commands(subparsers: Any) -> None:
    """Register ``index create|add|delete|search|info|optimize`` on an argparse subparsers object."""
    index = subparsers.add_parser(
        "index", help="a compressed, updatable on-disk index", description=__doc__.split("\n\n")[0]
    )
    sub = index.add_subparsers(dest="index_command", required=True, metavar="COMMAND")

    p = sub.add_parser("create", help="create an empty index")
    p.add_argument("path", help="index directory")
    p.add_argument("--model", default=None, help="model name or path (default: the default model)")
    p.add_argument("--dim", type=int, default=128, choices=SUPPORTED_DIMS, help="vector width (default 128)")
    p.add_argument("--nbits", type=int, default=2, choices=(1, 2, 4), help="bits per residual dimension (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    p.add_argument("--refine-bits", type=int, default=0, choices=(0, 1, 2, 4), help=REFINE_HELP)
    p.add_argument(
        "--pool-factor",
        type=positive_int,
        default=1,
        help="store about n/F vectors per document (token pooling; default 1)",
    )
    p.set_defaults(func=_cmd_create)

    p = sub.add_parser("add", help="encode JSONL documents (maxsim or BEIR corpus rows) and add them")
    p.add_argument("path")
    p.add_argument("input", help="JSONL of {id?, text, metadata?} or BEIR {_id, title, text}; - for stdin")
    p.add_argument("--batch-size", type=positive_int, default=256, help="documents per durable add (default 256)")
    p.add_argument(
        "--upsert",
        action="store_true",
        help="replace documents whose id is already in the index (default: skip unchanged ones, refuse changed ones)",
    )
    p.set_defaults(func=_cmd_add)

    p = sub.add_parser(
        "build",
        help="build an index from a large input in bounded memory (resumable), or on a Ray cluster with --ray-address",
    )
    p.add_argument("path", help="index directory (a new one, or an interrupted build to resume)")
    p.add_argument("input", help="JSONL file of {id, text, metadata?}, Parquet file, or BEIR folder (corpus.jsonl)")
    p.add_argument("--model", default=None, help="model name or path (default: the default model)")
    p.add_argument("--dim", type=int, default=128, help="vector width (default 128)")
    p.add_argument("--nbits", type=int, default=2, choices=(1, 2, 4), help="bits per residual dimension (default 2)")
    p.add_argument("--refine-bits", type=int, default=0, choices=(0, 1, 2, 4), help=REFINE_HELP)
    p.add_argument("--sample-docs", type=int, default=4096, help="documents encoded to train the centroids")
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to build on (auto, host:6379, ray://host:10001): a sharded index",
    )
    p.add_argument("--shards", type=int, default=None, help="shards of a distributed build (default 2)")
    p.add_argument("--workers", type=int, default=None, help="encoder actors (default: the cluster's GPUs or CPUs)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where encoder actors run")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("delete", help="delete documents by id")
    p.add_argument("path")
    p.add_argument("ids", nargs="*", help="ids to delete")
    p.add_argument("--ids-file", default=None, help="file with one id per line, or - for stdin")
    p.set_defaults(func=_cmd_delete)

    p = sub.add_parser("search", help="search with text queries")
    p.add_argument("path")
    p.add_argument("queries", nargs="*", help="query texts (or --queries-file)")
    p.add_argument("--queries-file", default=None, help="file with one query per line, or - for stdin")
    p.add_argument("-k", "--top-k", type=positive_int, default=10, help="hits per query (default 10)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--filter", default=None, help='metadata key/value filter as JSON, e.g. \'{"lang": "en"}\'')
    group.add_argument(
        "--where",
        default=None,
        help="SQL WHERE over docs(id, text, metadata), e.g. \"json_extract(metadata, '$.year') > 2020\"",
    )
    p.add_argument("--exact", action="store_true", help="score every document exactly (slow on large indexes)")
    p.add_argument(
        "--hybrid",
        nargs="?",
        type=float,
        const=-1.0,
        default=None,
        metavar="WEIGHT",
        help="fuse BM25 over the stored texts with late interaction (optional BM25 weight in [0, 1])",
    )
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("info", help="print the index's settings and sizes as JSON")
    p.add_argument("path")
    p.add_argument(
        "--verify",
        action="store_true",
        help="also checksum every file and check the catalog; says whether the check passed",
    )
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("optimize", help="re-train centroids and compact")
    p.add_argument("path")
    p.set_defaults(func=_cmd_optimize)


# ----------------------------------------------------------------------------------- opening
def _open(path: str, *, readonly: bool = False, with_model: bool = False) -> Any:
    """Open the index; with ``with_model``, attach the model it was built with (loaded once)."""
    from maxsim.index import Index

    index = Index.open(path, readonly=readonly)
    if with_model:
        try:
            model = load_model_named(index.model_name or None)
        except BaseException:
            index.close()
            raise
        index.model = model
    return index


def _cmd_create(args: argparse.Namespace) -> int:
    _check_refine_bits(args)
    from maxsim.index import Index
    from maxsim.index.errors import IndexExistsError

    model = load_model_named(args.model) if args.model is not None else None
    try:
        index = Index.create(
            args.path,
            model=model,
            dim=args.dim,
            nbits=args.nbits,
            refine_bits=args.refine_bits,
            overwrite=args.overwrite,
            pool_factor=args.pool_factor,
        )
    except IndexExistsError as exc:  # the library names its keyword; the user typed a flag
        raise CliError(str(exc).replace("overwrite=True", "--overwrite")) from None
    with index:
        print(json.dumps(index.info()))
    return 0


# ----------------------------------------------------------------------------------- add
@dataclass
class _AddPlan:
    """What ``index add`` will do, decided before the model loads: which lines to skip or replace."""

    documents: int = 0  # non-blank lines
    skip_lines: set[int] = field(default_factory=set)  # duplicates in the input, unchanged stored documents
    replace_ids: set[str] = field(default_factory=set)  # stored and changed (with --upsert)
    unchanged: int = 0
    duplicates: int = 0


def _fingerprint(text: str, metadata: dict | None) -> tuple[str, str | None]:
    meta = json.dumps(metadata, sort_keys=True, ensure_ascii=False) if metadata else None
    return hashlib.sha1(text.encode("utf-8")).hexdigest(), meta


def _documents(source: str, data: str | None) -> Iterator[dict[str, Any]]:
    """Documents of the input with their line numbers; ``data`` holds stdin, read once."""
    name = "<stdin>" if source == STDIN else source
    if data is not None:
        yield from read_documents(io.StringIO(data), name, content_ids=True, line_numbers=True)
        return
    with utf8_errors(source, "input"), open(source, encoding="utf-8") as f:
        yield from read_documents(f, name, content_ids=True, line_numbers=True)


def _stored(index: Any, ids: list[str]) -> dict[str, dict]:
    """The stored documents among ``ids`` (get() is strict, so ask which are there first)."""
    known = [doc_id for doc_id in ids if doc_id in index]
    return {d["id"]: d for d in index.get(known)} if known else {}


def _plan_add(index: Any, source: str, data: str | None, upsert: bool) -> _AddPlan:
    """Read the whole input once (every line checked) and compare its ids with the index."""
    plan = _AddPlan()
    first: dict[str, tuple[int, tuple[str, str | None]]] = {}
    for doc in _documents(source, data):
        plan.documents += 1
        fp = _fingerprint(doc["text"], doc["metadata"])
        seen = first.get(doc["id"])
        if seen is None:
            first[doc["id"]] = (doc["line"], fp)
        elif seen[1] == fp:
            plan.skip_lines.add(doc["line"])
            plan.duplicates += 1
        else:
            raise CliError(
                f"{source}: id {doc['id']!r} is on lines {seen[0]} and {doc['line']} with different "
                "text or metadata; keep one"
            )
    ids = list(first)
    for start in range(0, len(ids), 500):
        stored = _stored(index, ids[start : start + 500])
        for doc_id, doc in stored.items():
            line, (text_hash, meta) = first[doc_id]
            same_text = hashlib.sha1((doc["text"] or "").encode("utf-8")).hexdigest() == text_hash
            same_meta = meta is None or _fingerprint("", doc["metadata"])[1] == meta
            if same_text and same_meta:
                plan.skip_lines.add(line)
                plan.unchanged += 1
            elif upsert:
                plan.replace_ids.add(doc_id)
            else:
                raise CliError(
                    f"{source}:{line}: id {doc_id!r} is already in the index with other text or "
                    "metadata; pass --upsert to replace it"
                )
    return plan


def _cmd_add(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    # Every input byte is read and checked before the model loads or anything is written.
    data = read_text_file(STDIN, "input") if args.input == STDIN else None
    if data is None:
        require_file(args.input, "input")
    with _open(args.path) as index:
        plan = _plan_add(index, args.input, data, args.upsert)
        if plan.documents == 0:
            warn(f"input {args.input}: no documents in it (blank or empty)")
        to_write = plan.documents - len(plan.skip_lines)
        added = replaced = 0
        if to_write:
            index.model = load_model_named(index.model_name or None)
            bar = tqdm(total=to_write, unit="doc", desc="adding", file=sys.stderr, disable=None)
            batch: list[dict] = []

            def flush() -> None:
                nonlocal added, replaced
                new = [d for d in batch if d["id"] not in plan.replace_ids]
                old = [d for d in batch if d["id"] in plan.replace_ids]
                if new:
                    index.add(
                        [d["text"] for d in new], ids=[d["id"] for d in new], metadata=[d["metadata"] for d in new]
                    )
                if old:
                    index.update(
                        [d["id"] for d in old], texts=[d["text"] for d in old], metadata=[d["metadata"] for d in old]
                    )
                added, replaced = added + len(new), replaced + len(old)
                bar.update(len(batch))
                batch.clear()

            try:
                for doc in _documents(args.input, data):
                    if doc["line"] not in plan.skip_lines:
                        batch.append(doc)
                        if len(batch) >= args.batch_size:
                            flush()
                if batch:
                    flush()
            finally:
                bar.close()
        print(
            json.dumps(
                {
                    "added": added,
                    "replaced": replaced,
                    "unchanged": plan.unchanged + plan.duplicates,
                    "documents": len(index),
                }
            )
        )
    return 0


def _check_refine_bits(args: argparse.Namespace) -> None:
    if args.refine_bits and args.refine_bits != args.nbits:
        raise CliError(
            f"--refine-bits must be 0 or equal to --nbits (1, 2 or 4); got {args.refine_bits} with --nbits {args.nbits}"
        )


def _cmd_build(args: argparse.Namespace) -> int:
    _check_refine_bits(args)
    if args.sample_docs < 1:
        raise CliError("--sample-docs must be >= 1")
    if args.ray_address is None and (args.shards is not None or args.workers is not None or args.device != "cpu"):
        raise CliError("--shards, --workers and --device need --ray-address (a distributed build)")
    if args.ray_address is not None:
        from maxsim.distributed import build_distributed

        with build_distributed(
            args.path,
            args.input,
            ray_address=args.ray_address,
            n_shards=args.shards or 2,
            device=args.device,
            model=args.model,
            dim=args.dim,
            nbits=args.nbits,
            refine_bits=args.refine_bits,
            workers=args.workers,
            sample_docs=args.sample_docs,
        ) as index:
            print(json.dumps(index.info()))
        return 0
    from maxsim.build import build

    with build(
        args.path,
        args.input,
        model=args.model,
        dim=args.dim,
        nbits=args.nbits,
        refine_bits=args.refine_bits,
        sample_docs=args.sample_docs,
    ) as index:
        print(json.dumps(index.info()))
    return 0


# ----------------------------------------------------------------------------------- the rest
def _cmd_delete(args: argparse.Namespace) -> int:
    ids = list(args.ids) + (read_lines(args.ids_file, "--ids-file") if args.ids_file else [])
    if not ids:
        raise CliError("give ids to delete, or --ids-file")
    with _open(args.path) as index:
        n = index.delete(ids)
        print(json.dumps({"deleted": n, "documents": len(index)}))
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from maxsim.index import SearchConfig

    queries = list(args.queries) + (read_lines(args.queries_file, "--queries-file") if args.queries_file else [])
    if not queries:
        raise CliError("give query texts, or --queries-file")
    flt: Any = parse_json_object(args.filter, "--filter") if args.filter is not None else args.where
    config = SearchConfig(exact=True) if args.exact else None
    with _open(args.path, readonly=True, with_model=True) as index:
        if len(index) == 0:
            warn(f"the index at {args.path} holds no documents: every search is empty")
        hybrid = None if args.hybrid is None else (True if args.hybrid == -1.0 else args.hybrid)
        results = index.search(queries, k=args.top_k, filter=flt, config=config, hybrid=hybrid)
    for query, hits in zip(queries, results, strict=True):
        print(json.dumps({"query": query, "hits": hits}, ensure_ascii=False))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from maxsim.index.errors import IndexCorruptedError

    with _open(args.path, readonly=True) as index:
        info = index.info()
        if not args.verify:
            print(json.dumps(info))
            return 0
        try:
            index.verify()
        except IndexCorruptedError as exc:
            print(json.dumps({**info, "verified": False, "problem": str(exc)}))
            raise CliError(f"--verify: the check FAILED: {exc}") from None
        print(json.dumps({**info, "verified": True}))
        print(
            "maxsim index info: --verify: the check passed (every file matches its checksum, the catalog is intact)",
            file=sys.stderr,
        )
    return 0


def _cmd_optimize(args: argparse.Namespace) -> int:
    with _open(args.path) as index:
        index.optimize()
        print(json.dumps(index.info()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m maxsim.cli.index info PATH``: the ``maxsim index`` family on its own."""
    from maxsim.cli.main import main as maxsim_main

    return maxsim_main(["index", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
