"""``maxsim serve``: run the HTTP service with uvicorn. Light to import (no torch, no FastAPI)."""

from __future__ import annotations

import argparse
import sys

from maxsim.api.settings import (
    DEFAULT_MODEL_ALIASES,
    DENSE_MODEL_ALIASES,
    RERANK_SCORE_SCALES,
    RERANKER_ALIASES,
    BatchSettings,
    Limits,
    Settings,
    SettingsError,
    parse_index_arg,
    read_api_keys_file,
)

_LIMIT_HELP = {
    "max_body_bytes": "largest request body in bytes (413 above)",
    "body_timeout_s": "seconds a request body may take to arrive once its headers are in (408 above)",
    "max_inputs_per_request": "most texts (inputs, documents, ids) in one request (422 above)",
    "max_tokens_per_request": "most tokens in one request after truncation (422 above)",
    "max_k": "largest k of an index search (422 above)",
    "requests_per_minute": "requests per minute per API key or client address; 0 = no limit (429 above)",
    "tokens_per_minute": "tokens per minute per API key or client address; 0 = no limit (429 above)",
    "request_timeout_s": "seconds a request may wait for the model (504 above)",
    "max_queue": "encode jobs waiting for the model (503 above)",
}


def add_serve_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="HTTP service: Jina-compatible /v1/multi-vector, /v1/embeddings and /v1/rerank, indexes, a search page",
        description="Serve a model (and indexes) over HTTP. OpenAPI at /docs, search page at /.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, local only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=None, help="model folder or hub id (default: the offline default model)")
    p.add_argument(
        "--model-alias",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the late-interaction model answers to, added to the built-in ones "
        f"({', '.join(DEFAULT_MODEL_ALIASES)}; on /v1/rerank also {', '.join(RERANKER_ALIASES)})",
    )
    p.add_argument(
        "--dense-model-alias",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the dense model answers to on /v1/embeddings, added to the built-in ones "
        f"({', '.join(DENSE_MODEL_ALIASES)})",
    )
    p.add_argument(
        "--rerank-scores",
        default="maxsim",
        choices=list(RERANK_SCORE_SCALES),
        help="maxsim: raw MaxSim sums (default); unit: the mean best cosine per query token, "
        "floored at 0, a 0-1 scale for clients' score thresholds",
    )
    p.add_argument(
        "--index", action="append", default=[], metavar="NAME=PATH", help="serve an existing index (repeatable)"
    )
    p.add_argument(
        "--index-dir",
        default=None,
        metavar="DIR",
        help="where POST /v1/indexes creates indexes; indexes already in it are served too",
    )
    keys = p.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key", action="append", default=None, metavar="KEY", help="accepted bearer key (repeatable)"
    )
    keys.add_argument("--api-keys-file", default=None, metavar="FILE", help="file with one accepted key per line")
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="allow a non-loopback --host without API keys (anyone who reaches it can use it)",
    )
    p.add_argument("--no-batching", action="store_true", help="encode each request on its own")
    d = BatchSettings()
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=d.max_wait_ms,
        help=f"longest wait for more requests to batch (default {d.max_wait_ms})",
    )
    p.add_argument(
        "--batch-max-inputs",
        type=int,
        default=d.max_batch_inputs,
        help=f"most texts per model call (default {d.max_batch_inputs})",
    )
    p.add_argument(
        "--batch-max-tokens",
        type=int,
        default=d.max_batch_tokens,
        help=f"most tokens per model call (default {d.max_batch_tokens})",
    )
    limits = p.add_argument_group("limits")
    dl = Limits()
    for name, text in _LIMIT_HELP.items():
        default = getattr(dl, name)
        limits.add_argument(
            "--" + name.replace("_", "-"), type=type(default), default=default, help=f"{text} (default {default})"
        )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["float32", "bfloat16", "auto"],
        help="compute dtype (default auto: bfloat16 where the CPU has native bf16, else float32; "
        "float32 gives vectors identical to `maxsim embed` and the Python API)",
    )
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def settings_from_args(args: argparse.Namespace) -> Settings:
    if args.api_keys_file:
        api_keys = read_api_keys_file(args.api_keys_file)
    else:
        api_keys = frozenset(args.api_key or ())
    return Settings(
        host=args.host,
        port=args.port,
        model=args.model,
        model_aliases=tuple(args.model_alias),
        dense_model_aliases=tuple(args.dense_model_alias),
        rerank_scores=args.rerank_scores,
        indexes=tuple(parse_index_arg(v) for v in args.index),
        index_dir=args.index_dir,
        api_keys=api_keys,
        allow_unauthenticated=args.allow_unauthenticated,
        limits=Limits(**{name: getattr(args, name) for name in _LIMIT_HELP}),
        batching=BatchSettings(
            enabled=not args.no_batching,
            max_wait_ms=args.batch_wait_ms,
            max_batch_inputs=args.batch_max_inputs,
            max_batch_tokens=args.batch_max_tokens,
        ),
        log_level=args.log_level,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
        settings.check_bind()  # before loading anything
    except SettingsError as exc:
        print(f"maxsim serve: error: {exc}", file=sys.stderr)
        return 2
    return serve(settings, threads=args.threads, dtype=args.dtype)


def serve(settings: Settings, threads: int | None = None, dtype: str | None = None) -> int:
    """Load the model, build the app and run uvicorn until interrupted."""
    import logging

    from maxsim.api.listen import bind_listener

    try:
        settings.check_bind()
        sock = bind_listener(settings.host, settings.port)  # before anything slow: a busy port fails at once
    except SettingsError as exc:
        print(f"maxsim serve: error: {exc}", file=sys.stderr)
        return 2
    try:
        import uvicorn

        from maxsim.api.app import create_app
    except ModuleNotFoundError as exc:
        sock.close()
        print(
            f"maxsim serve: error: {exc.name} is missing; install the server extra: pip install 'maxsim[server]'",
            file=sys.stderr,
        )
        return 2
    from maxsim.models.loading import load

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from maxsim.errors import MaxsimError
    from maxsim.index import IndexError_

    try:
        model = load(settings.model, dtype=dtype, num_threads=threads)
        app = create_app(settings, model=model)
    except (MaxsimError, IndexError_) as exc:
        sock.close()
        print(f"maxsim serve: error: {exc}", file=sys.stderr)
        return 2
    auth = "API keys required" if settings.auth_enabled else "no authentication (local use)"
    port = sock.getsockname()[1]
    print(
        f"maxsim: serving {model.name} on http://{settings.host}:{port} ({auth}); page at /, OpenAPI at /docs",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, log_level=settings.log_level, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
