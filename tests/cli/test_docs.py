"""Every ``maxsim ...`` command and flag the README and docs/ show exists in the parser.

Commands come from fenced code blocks (continuation lines and ``&&`` chains included), from
inline code spans, and from the option tables of the docs that describe one command. For each
command the leaf parser's ``--help`` runs, and every flag must be one of its options.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from maxsim.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Docs whose option tables (first cell `--flag`) describe one command.
TABLE_COMMANDS = {"api.md": ["serve"], "evaluation.md": ["eval"], "training.md": ["train"]}

FENCE = re.compile(r"^```")
INLINE = re.compile(r"`(maxsim [^`]+)`")
FLAG = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _resolve(words: list[str]) -> tuple[list[str], argparse.ArgumentParser, list[str]]:
    """Walk the command words down the parser tree; returns (path, leaf parser, remaining tokens)."""
    parser, path = build_parser(), []
    rest = list(words)
    while (choices := _subparsers(parser)) and rest and not rest[0].startswith("-"):
        word = rest[0].rstrip(":,.")
        if word not in choices:
            break
        parser, path, rest = choices[word], [*path, word], rest[1:]
    return path, parser, rest


def _command_lines(text: str) -> list[str]:
    """``maxsim ...`` invocations of the code blocks and inline spans of one markdown file."""
    found, in_code, current = [], False, None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            in_code = not in_code
            if current:
                found.append(current)
            current = None
            continue
        if in_code:
            code = line.split(" #", 1)[0].rstrip()
            if current is not None and (line[:1].isspace() and code.strip()) and "maxsim " not in code:
                current += " " + code.strip().rstrip("\\")
                continue
            if current:
                found.append(current)
            current = None
            if "maxsim " in code and not code.lstrip().startswith(("import", "from", ">>>")):
                current = code.strip().rstrip("\\")
        else:
            found.extend(m.group(1) for m in INLINE.finditer(line))
    if current:
        found.append(current)
    out = []
    for line in found:
        for part in re.split(r"&&|\|\||;", line):
            part = part.strip()
            if part.startswith("$ "):
                part = part[2:]
            if part.startswith("maxsim ") or part == "maxsim":
                out.append(part)
    return out


def _documented() -> list[tuple[str, str, list[str]]]:
    """(where, command line, flags) for every documented invocation and table row."""
    rows = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for line in _command_lines(text):
            rows.append((doc.name, line, None))
        for command in TABLE_COMMANDS.get(doc.name, []):
            for row in text.splitlines():
                cells = row.split("|")
                if row.startswith("|") and len(cells) > 2 and "`-" in cells[1]:
                    rows.append((doc.name, f"maxsim {command} " + " ".join(FLAG.findall(cells[1])), None))
    return [(where, line, _flags(line)) for where, line, _ in rows]


def _flags(line: str) -> list[str]:
    try:
        tokens = shlex.split(line)
    except ValueError:  # an unbalanced quote in prose
        tokens = line.split()
    flags = []
    for token in tokens[1:]:
        token = token.strip("[]()")
        if token.startswith("-") and not token.startswith("---") and len(token) > 1 and not token[1].isdigit():
            flags.append(token.split("=", 1)[0])
    return flags


DOCUMENTED = _documented()


def test_the_docs_document_commands():
    """The parser of this test finds what it should (so the test below cannot pass on nothing)."""
    lines = [line for _, line, _ in DOCUMENTED]
    assert any(line.startswith("maxsim index search") for line in lines)
    assert any(line.startswith("maxsim qdrant create") and "--recreate" in line for line in lines)
    assert any("--max-queue" in line for line in lines)  # a table row of docs/api.md
    assert len(DOCUMENTED) > 40


@pytest.mark.parametrize("where, line, flags", DOCUMENTED, ids=[f"{w}: {ln[:60]}" for w, ln, _ in DOCUMENTED])
def test_documented_command_and_flags_exist(where, line, flags, capsys):
    words = shlex.split(line.replace("'", " ").replace('"', " "))[1:] if line != "maxsim" else []
    path, parser, _ = _resolve(words)
    if words and not words[0].startswith("-"):
        assert path, f"{where}: {line!r}: no command {words[0]!r}"
    with pytest.raises(SystemExit) as exit_info:  # --help of the documented command works
        build_parser().parse_args([*path, "--help"])
    assert exit_info.value.code == 0
    capsys.readouterr()
    if _subparsers(parser):  # a family named alone (`maxsim index`) is fine; a wrong subcommand is not
        rest = [w for w in words[len(path) :] if not w.startswith("-")]
        assert not rest or rest[0] in ("...",), f"{where}: {line!r}: {rest[0]!r} is not a command of {path}"
    known = set(parser._option_string_actions)
    unknown = [f for f in flags if f not in known]
    assert not unknown, f"{where}: {line!r}: maxsim {' '.join(path)} has no option {unknown}"
