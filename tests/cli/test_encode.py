"""The maxsim command line, run for real."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maxsim.cli import main
from maxsim.cli.common import load_model_named
from maxsim.errors import InputWarning, MaxsimError

from .conftest import one_line_error


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "maxsim.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("embed", "encode", "rerank", "demo", "index", "serve", "eval", "train", "qdrant"):
        assert cmd in out.stdout


def test_embed_queries_and_documents(capsys, cli_model):
    assert main(["embed", "--query", "--dim", "64", "--tokens", "hello world", "¿hola?"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    for r in rows:
        assert r["input_type"] == "query" and r["n_vectors"] == 32 and r["dim"] == 64
        assert len(r["embeddings"]) == 32 and len(r["embeddings"][0]) == 64 and len(r["tokens"]) == 32
    assert main(["embed", "Late interaction, explained."]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["input_type"] == "document" and row["dim"] == 128 and row["n_vectors"] == len(row["embeddings"])


def test_embed_reads_jsonl_from_file(tmp_path, capsys, cli_model):
    f = tmp_path / "in.jsonl"
    f.write_text('{"text": "first"}\n\n{"text": "second"}\n', encoding="utf-8")
    assert main(["embed", "--input", str(f), "--tokens"]) == 0
    assert [r["tokens"][2] for r in map(json.loads, capsys.readouterr().out.splitlines())] == ["▁first", "▁second"]


def test_plain_text_lines_that_start_with_a_brace_are_text(tmp_path, capsys, cli_model):
    """Only a JSON object with a "text" is JSON; code, templates and sets are documents as written."""
    f = tmp_path / "docs.txt"
    lines = ["{x | x > 0} is the set of positive numbers", '{"no_text": 1}', "{ broken json", '{"text": "Paris"}']
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["rerank", "positive numbers", "--input", str(f)]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert sorted(r["document"] for r in results) == sorted(lines[:3] + ["Paris"])
    assert results[0]["document"] == lines[0]


@pytest.mark.parametrize("command", [["embed"], ["rerank", "a query"]])
@pytest.mark.parametrize("problem", ["missing", "directory", "latin-1"])
def test_bad_input_file_is_one_line_before_the_model_loads(tmp_path, capsys, no_model, command, problem):
    path = tmp_path / "in.txt"
    if problem == "directory":
        path.mkdir()
    elif problem == "latin-1":
        path.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    assert main([*command, "--input", str(path)]) == 2
    expected = {"missing": "file not found", "directory": "is a directory", "latin-1": "is not UTF-8"}[problem]
    one_line_error(capsys.readouterr().err, "--input", str(path), expected)


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["rerank", "q", "a", "--top-n", "0"], "--top-n"),
        (["rerank", "q", "a", "--top-n", "two"], "--top-n"),
        (["embed", "a", "--decimals", "-1"], "--decimals"),
        (["embed", "a", "--threads", "0"], "--threads"),
        (["embed", "a", "--dim", "100"], "--dim"),
        (["index", "search", "idx", "q", "-k", "0"], "--top-k"),
        (["index", "add", "idx", "docs.jsonl", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_usage_errors_are_one_line_naming_the_flag(argv, flag):
    """Checked by the parser, before anything loads: exit 2, one line, the flag named (not top_n)."""
    out = subprocess.run([sys.executable, "-m", "maxsim.cli", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    one_line_error(out.stderr, flag)


def test_every_error_is_a_maxsim_error():
    from maxsim.cli.common import CliError
    from maxsim.documents import DocumentFileError

    assert issubclass(CliError, MaxsimError) and issubclass(CliError, ValueError)
    assert issubclass(DocumentFileError, MaxsimError)


def test_warnings_for_input_that_works_but_matches_poorly(tmp_path, capsys, cli_model):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    assert main(["embed", "--input", str(empty)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "warning" in err and "no texts" in err and str(empty) in err
    assert main(["rerank", "", "some document"]) == 0
    assert "queries[0] is empty" in capsys.readouterr().err
    assert main(["embed", "--query", "\U00013000\U00013001 \U00013002"]) == 0  # Egyptian hieroglyphs
    assert "does not know" in capsys.readouterr().err
    assert main(["embed", "--query", "ordinary words"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_library_warns_about_cut_documents_and_poor_queries(default_model):
    import copy
    import dataclasses

    from maxsim.tokens.late_interaction import LateInteractionTokenizer

    tok = default_model.tokenizer
    short = copy.copy(default_model)  # the same weights, documents cut at 16 tokens
    short.tokenizer = LateInteractionTokenizer(
        tok.tokenizer, dataclasses.replace(tok.settings, document_length=16), tok.pre_normalize, tok.strip
    )
    with pytest.warns(InputWarning, match=r"1 of 2 documents \(first: documents\[1\]\).*cut"):
        short.encode_documents(["short", "a document of many more words than sixteen tokens " * 3])
    with pytest.warns(InputWarning, match="empty"):
        default_model.encode_queries(["", "fine"])
    assert tok.unknown_token_shares(["hello world", "\U00013000\U00013001", ""]) == [0.0, 1.0, 0.0]


def test_rerank_refuses_one_string_for_documents(default_model):
    """A str is a sequence of characters; it used to come back with its first letter as the document."""
    with pytest.raises(TypeError, match="list of str"):
        default_model.rerank("q", "one string")
    with pytest.raises(MaxsimError):
        default_model.rerank("q", "one string")


def test_rerank(capsys, cli_model):
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "La capitale de la France est Paris."]
    assert main(["rerank", "capital of France", *docs, "--top-n", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 2
    assert {r["index"] for r in out["results"]} == {0, 2}


def test_bad_model_path_is_a_clear_error(tmp_path, capsys):
    load_model_named.cache_clear()
    assert main(["embed", "--model", str(tmp_path / "missing" / "x"), "hi"]) == 2
    one_line_error(capsys.readouterr().err, "maxsim embed: error:")


def test_demo_runs_end_to_end(capsys):
    from maxsim.demo import run_demo

    answers = run_demo(top_k=3)
    out = capsys.readouterr().out
    assert "encoded 47 passages in 13 languages" in out
    assert len(answers) >= 8
    assert any(h["lang"] != a["lang"] for a in answers for h in a["hits"])  # cross-lingual answers
    by_query = {a["query"]: a for a in answers}
    # A few answers that any working model must get: same topic, top result.
    assert by_query["Comment faire du pain au levain ?"]["hits"][0]["id"] == "fr-pain"
    assert by_query["Why does the ocean have tides?"]["hits"][0]["id"] == "en-tides"
