"""The ``maxsim`` command: one module per command family, each exposing ``add_<family>_commands``.

Every user error prints one line, ``maxsim CMD: error: what is wrong``, naming the flag or file
at fault, and exits with status 2: argparse usage errors through :class:`~maxsim.cli.common.Parser`,
everything the library or a command raises on purpose through :class:`~maxsim.errors.MaxsimError`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence

from maxsim.cli.common import Parser, library_warnings_as_lines
from maxsim.cli.encode import add_encode_commands
from maxsim.cli.eval import add_eval_commands
from maxsim.cli.index import add_index_commands
from maxsim.cli.qdrant import add_qdrant_commands
from maxsim.cli.serve import add_serve_commands
from maxsim.cli.train import add_train_commands
from maxsim.errors import MaxsimError

_FAMILIES = (
    add_encode_commands,
    add_index_commands,
    add_serve_commands,
    add_eval_commands,
    add_train_commands,
    add_qdrant_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="maxsim", description="Multilingual late-interaction retrieval.")
    parser.add_argument("--version", action="version", version=f"maxsim {__import__('maxsim').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in _FAMILIES:
        add_commands(sub)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    """``maxsim index add`` for the error prefix."""
    words = [args.command] + [getattr(args, f"{args.command}_command", None) or ""]
    return " ".join(["maxsim", *(w for w in words if w)])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A server logs instead: one stderr line per request with an empty query would flood it.
    warnings_as_lines = library_warnings_as_lines() if args.command != "serve" else contextlib.nullcontext()
    try:
        with warnings_as_lines:
            return int(args.func(args) or 0)
    except MaxsimError as exc:  # bad input or a bad file: one line, not a traceback
        print(f"{_command_name(args)}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused (permissions, a full disk): say so in one line
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{_command_name(args)}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
