"""The maxsim command line, run for real."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from maxsim.cli import main


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "maxsim.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("embed", "rerank", "demo"):
        assert cmd in out.stdout


def test_embed_queries_and_documents(capsys):
    assert main(["embed", "--query", "--dim", "64", "--tokens", "hello world", "¿hola?"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    for r in rows:
        assert r["input_type"] == "query" and r["n_vectors"] == 32 and r["dim"] == 64
        assert len(r["embeddings"]) == 32 and len(r["embeddings"][0]) == 64 and len(r["tokens"]) == 32
    assert main(["embed", "Late interaction, explained."]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["input_type"] == "document" and row["dim"] == 128 and row["n_vectors"] == len(row["embeddings"])


def test_embed_reads_jsonl_from_file(tmp_path, capsys):
    f = tmp_path / "in.jsonl"
    f.write_text('{"text": "first"}\n\n{"text": "second"}\n', encoding="utf-8")
    assert main(["embed", "--input", str(f)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    f.write_text('{"no_text": 1}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match="text"):
        main(["embed", "--input", str(f)])


def test_rerank(capsys):
    docs = ["Paris is the capital of France.", "Bananas are yellow.", "La capitale de la France est Paris."]
    assert main(["rerank", "capital of France", *docs, "--top-n", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 2
    assert {r["index"] for r in out["results"]} == {0, 2}


def test_bad_model_path_is_a_clear_error(tmp_path, capsys):
    assert main(["embed", "--model", str(tmp_path / "missing" / "x"), "hi"]) == 2
    err = capsys.readouterr().err
    assert "maxsim: error:" in err and "Traceback" not in err


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
