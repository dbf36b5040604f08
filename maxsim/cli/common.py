"""What every command family shares: the one-line error, model arguments, reading texts and files.

Input files are read (and so checked: present, a file, UTF-8) by these helpers before a command
loads a model, so a typo in a path costs no model load and prints one line, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from maxsim.errors import MaxsimError
from maxsim.types import SUPPORTED_DIMS

STDIN = "-"


class CliError(MaxsimError, ValueError):
    """Bad command-line input. ``maxsim`` prints it as one line (``maxsim CMD: error: ...``), exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line naming the flag, exit status 2.

    argparse prints the whole usage block before the message; on a long command that hides the
    one line that matters. ``--help`` still shows the usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(minimum: int, text: str) -> int:
    """argparse type: an integer >= ``minimum`` (argparse names the flag in its message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(1, text)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(0, text)


# ---------------------------------------------------------------------------------------- model
def add_model_args(p: argparse.ArgumentParser, *, model_help: str | None = None) -> None:
    """``--model --dim --dtype --threads``, the same on every command that encodes."""
    p.add_argument(
        "--model", default=None, help=model_help or "model folder or hub id (default: the offline default model)"
    )
    p.add_argument(
        "--dim",
        type=int,
        default=None,
        choices=SUPPORTED_DIMS,
        help="output size (default: the largest the model serves, 128 for most)",
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "auto"],
        help="compute dtype (default float32; auto: bfloat16 where the CPU has native bf16)",
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")


def load_model(args: argparse.Namespace) -> Any:
    """The model named by ``--model`` (``--dtype``, ``--threads`` when the command has them)."""
    return load_model_named(getattr(args, "model", None), getattr(args, "dtype", None), getattr(args, "threads", None))


@functools.lru_cache(maxsize=2)
def load_model_named(name: str | None, dtype: str | None = None, threads: int | None = None) -> Any:
    """Load once per process: in-process callers and tests run several commands."""
    from maxsim.models import loading  # the module, so that tests can stand in for loading.load

    return loading.load(name, dtype=dtype, num_threads=threads)


# ---------------------------------------------------------------------------------------- files
def read_text_file(path: str, flag: str) -> str:
    """The whole of a UTF-8 file (``-`` is stdin); every problem is a CliError naming the file and flag."""
    if path == STDIN:
        try:
            return sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise CliError(f"{flag} -: standard input is not UTF-8 text (byte {exc.start})") from None
    p = Path(path)
    if not p.exists():
        raise CliError(f"{flag} file not found: {path}")
    if p.is_dir():
        raise CliError(f"{flag} {path} is a directory, not a file")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{flag} {path} is not UTF-8 text (invalid byte at offset {exc.start}); convert it, e.g. iconv -t UTF-8"
        ) from None
    except OSError as exc:
        raise CliError(f"{flag} {path} cannot be read ({exc.strerror or exc})") from None


def require_file(path: str, flag: str) -> None:
    """A file that is streamed later: present and a file (``-`` is stdin). Decoding errors while
    streaming are turned into a CliError by :func:`utf8_errors`."""
    if path == STDIN:
        return
    p = Path(path)
    if not p.exists():
        raise CliError(f"{flag} file not found: {path}")
    if p.is_dir():
        raise CliError(f"{flag} {path} is a directory, not a file")


@contextlib.contextmanager
def utf8_errors(path: str, flag: str) -> Iterator[None]:
    """Turn a UnicodeDecodeError or OSError while reading ``path`` into one CliError line."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise CliError(
            f"{flag} {path} is not UTF-8 text (invalid byte in a block at offset {exc.start}); "
            "convert it, e.g. iconv -t UTF-8"
        ) from None
    except OSError as exc:
        raise CliError(f"{flag} {path} cannot be read ({exc.strerror or exc})") from None


def read_lines(path: str, flag: str) -> list[str]:
    """Non-blank lines, stripped (``-`` is stdin)."""
    return [line.strip() for line in read_text_file(path, flag).splitlines() if line.strip()]


def json_text(line: str) -> str | None:
    """The ``"text"`` of a line that is a JSON object with a string ``text``; None for anything else.

    Only such lines are JSON: a line of plain text that happens to start with ``{`` (code, a
    template, a set) stays plain text.
    """
    if not line.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return obj["text"]
    return None


def texts_from_lines(lines: Iterable[str]) -> list[str]:
    """One text per non-blank line; a JSON object line with a ``"text"`` field gives that field."""
    out = []
    for line in lines:
        if not line.strip():
            continue
        text = json_text(line)
        out.append(line if text is None else text)
    return out


def read_texts(positional: list[str], input_path: str | None, what: str = "texts") -> list[str]:
    """Texts from the command line, or else from ``--input`` (``-`` or no ``--input``: stdin).

    Warns on stderr when the input holds no text, so an empty file is not a silent no-op.
    """
    if positional and input_path is not None:
        raise CliError(f"give {what} as arguments or with --input, not both")
    if positional:
        return list(positional)
    source = input_path if input_path is not None else STDIN
    texts = texts_from_lines(read_text_file(source, "--input").splitlines())
    if not texts:
        warn(f"--input {'standard input' if source == STDIN else source}: no {what} in it (blank or empty)")
    return texts


def parse_json_object(text: str, flag: str) -> dict:
    """A ``--filter`` style JSON object; a CliError naming the flag otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{flag} is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise CliError(f'{flag} must be a JSON object of metadata key/values, e.g. \'{{"lang": "en"}}\'')
    return value


# ---------------------------------------------------------------------------------------- output
def warn(message: str) -> None:
    """One line on stderr; stdout stays machine-readable."""
    print(f"maxsim: warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def library_warnings_as_lines() -> Iterator[None]:
    """While a command runs, each :class:`~maxsim.errors.InputWarning` the library raises (a cut
    document, an empty query) prints as one stderr line, every time; other warnings as usual."""
    from maxsim.errors import InputWarning

    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        previous = warnings.showwarning

        def show(
            message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None
        ) -> None:
            if issubclass(category, InputWarning):
                warn(str(message))
            else:
                previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("always", InputWarning)
        yield
