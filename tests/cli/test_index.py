"""``maxsim index add | search | info`` as a new user runs them: re-adding, BEIR corpora, upserts,
input checked before the model loads, the verdict of --verify, warnings and the progress bar."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import termios

import numpy as np

from maxsim.cli import main
from maxsim.documents import content_id

from .conftest import one_line_error

BEIR = [
    {"_id": "doc-berlin", "title": "Berlin", "text": "The city has 3.85 million inhabitants."},
    {"_id": 7, "title": "", "text": "Photosynthesis turns light into chemical energy in plants."},
    {"_id": "doc-tides", "title": "Tides", "text": "The moon's gravity pulls the oceans.", "metadata": {"src": "x"}},
]


def _run(capsys, *argv):
    code = main(["index", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_beir_corpus_and_documents_without_ids_can_be_added_twice(tmp_path, capsys, cli_model):
    idx = str(tmp_path / "idx")
    assert _run(capsys, "create", idx)[0] == 0
    corpus = _jsonl(tmp_path / "corpus.jsonl", BEIR)
    plain = _jsonl(
        tmp_path / "plain.jsonl",
        [
            {"text": "Rust has no garbage collector."},
            {"text": "Madrid es la capital de España.", "metadata": {"lang": "es"}},
        ],
    )
    code, out, _ = _run(capsys, "add", idx, corpus, "--batch-size", "2")
    assert code == 0 and json.loads(out) == {"added": 3, "replaced": 0, "unchanged": 0, "documents": 3}
    code, out, _ = _run(capsys, "add", idx, plain)
    assert code == 0 and json.loads(out)["added"] == 2
    for source in (corpus, plain):  # the second add of a file changes nothing
        code, out, _ = _run(capsys, "add", idx, source)
        assert code == 0 and json.loads(out)["added"] == 0 and json.loads(out)["documents"] == 5
    code, out, _ = _run(capsys, "search", idx, "How many people live in Berlin?", "capital of Spain", "-k", "1")
    hits = [json.loads(line)["hits"][0] for line in out.splitlines()]
    assert hits[0]["id"] == "doc-berlin" and hits[0]["text"].startswith("Berlin The city")  # title before text
    assert hits[1]["id"] == content_id("Madrid es la capital de España.") and hits[1]["metadata"] == {"lang": "es"}
    code, out, _ = _run(capsys, "search", idx, "photosynthesis", "-k", "1", "--filter", '{"src": "x"}')
    assert json.loads(out)["hits"][0]["id"] == "doc-tides"


def test_a_changed_document_is_refused_then_replaced_with_upsert(tmp_path, capsys, cli_model):
    idx = str(tmp_path / "idx")
    _run(capsys, "create", idx)
    _run(capsys, "add", idx, _jsonl(tmp_path / "v1.jsonl", BEIR))
    changed = [*BEIR[:2], {"_id": "doc-tides", "text": "Whales are the largest animals."}, {"_id": "new", "text": "x"}]
    v2 = _jsonl(tmp_path / "v2.jsonl", changed)
    code, _, err = _run(capsys, "add", idx, v2)
    assert code == 2
    one_line_error(err, "v2.jsonl:3", "doc-tides", "--upsert")
    code, out, _ = _run(capsys, "add", idx, v2)
    assert code == 2 and "documents" not in out  # refused before anything was written
    code, out, _ = _run(capsys, "add", idx, v2, "--upsert")
    assert code == 0 and json.loads(out) == {"added": 1, "replaced": 1, "unchanged": 2, "documents": 4}
    code, out, _ = _run(capsys, "search", idx, "largest animal", "-k", "1")
    hit = json.loads(out)["hits"][0]
    assert hit["id"] == "doc-tides" and hit["text"] == "Whales are the largest animals."
    assert hit["metadata"] == {"src": "x"}  # not in the new line: kept
    dup = _jsonl(tmp_path / "dup.jsonl", [{"id": "a", "text": "one"}, {"id": "a", "text": "two"}])
    code, _, err = _run(capsys, "add", idx, dup)
    assert code == 2 and "lines 1 and 2" in err


def test_add_checks_the_whole_input_before_the_model_loads(tmp_path, capsys, no_model):
    idx = str(tmp_path / "idx")
    assert _run(capsys, "create", idx)[0] == 0  # no --model: nothing loads
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": "ok"}\n{"id": "c", "txt": "typo"}\n')
    code, _, err = _run(capsys, "add", idx, str(bad), "--batch-size", "1")
    assert code == 2
    one_line_error(err, "bad.jsonl:3", "unknown keys")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"text": "ok"}\n' * 1000 + '{"text": "caf\u00e9"}\n'.encode("latin-1"))
    code, _, err = _run(capsys, "add", idx, str(latin))
    one_line_error(err, "input", str(latin), "not UTF-8")
    code, _, err = _run(capsys, "add", idx, str(tmp_path / "missing.jsonl"))
    assert code == 2
    one_line_error(err, "input file not found", "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, out, err = _run(capsys, "add", idx, str(empty))
    assert code == 0 and json.loads(out)["documents"] == 0 and "warning" in err and "no documents" in err


def test_info_verify_says_whether_the_check_passed(tmp_path, capsys, monkeypatch):
    from maxsim.index import Index, storage

    rng = np.random.default_rng(0)
    path = tmp_path / "idx"
    with Index.create(path, dim=64) as index:
        vectors = [rng.standard_normal((20, 64)).astype(np.float32) for _ in range(60)]
        index.add_embeddings([v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors])
    code, out, err = _run(capsys, "info", str(path), "--verify")
    assert code == 0 and json.loads(out)["verified"] is True and "check passed" in err
    code, out, err = _run(capsys, "info", str(path))
    assert code == 0 and "verified" not in json.loads(out) and err == ""
    monkeypatch.setattr(storage, "CRC_ON_OPEN_BYTES", 0)  # only --verify reads every byte
    seg = next(p for p in path.iterdir() if p.name.startswith("seg-"))
    data = bytearray((seg / "residuals.npy").read_bytes())
    data[len(data) // 2] ^= 0x55
    (seg / "residuals.npy").write_bytes(bytes(data))
    code, out, err = _run(capsys, "info", str(path), "--verify")
    assert code == 2 and json.loads(out)["verified"] is False and "checksum" in json.loads(out)["problem"]
    one_line_error(err, "--verify", "FAILED")


def test_search_warns_on_an_empty_index_and_add_shows_progress_on_a_terminal(tmp_path, capsys, cli_model):
    idx = str(tmp_path / "idx")
    _run(capsys, "create", idx)
    code, out, err = _run(capsys, "search", idx, "anything")
    assert code == 0 and json.loads(out)["hits"] == [] and "holds no documents" in err
    # A real process whose stderr is a terminal draws the bar (and only stderr: stdout stays JSON).
    docs = _jsonl(tmp_path / "docs.jsonl", [{"text": f"document number {i}"} for i in range(5)])
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "maxsim.cli", "index", "add", idx, docs, "--batch-size", "2"],
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=180,
        )
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    assert proc.returncode == 0 and json.loads(proc.stdout)["added"] == 5
    assert b"adding" in drawn and b"5/5" in drawn


def test_a_refusal_of_the_system_is_one_line(tmp_path, capsys, no_model):
    """An OSError (here: a path under a regular file) is a one-line error, not a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = _run(capsys, "create", str(blocker / "idx"))
    assert code == 2
    one_line_error(err, "maxsim index create: error:", "a-file")
    code, _, err = _run(capsys, "create", str(tmp_path))  # a folder that is not an index: never overwritten
    assert code == 2
    one_line_error(err, "not a maxsim index", str(tmp_path))
    assert _run(capsys, "create", str(tmp_path / "idx"))[0] == 0
    code, _, err = _run(capsys, "create", str(tmp_path / "idx"))  # an index: the flag that replaces it
    assert code == 2
    one_line_error(err, "already holds an index", "--overwrite")
