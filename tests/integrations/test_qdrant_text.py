"""Text path and command line of the Qdrant store, with the real default model
(``maxsim.load()``) and real embedded engines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

pytestmark = pytest.mark.slow  # runs the real default model

import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

from maxsim.cli.qdrant import main  # noqa: E402
from maxsim.documents import DocumentFileError, read_documents  # noqa: E402
from maxsim.integrations.qdrant import QdrantStore  # noqa: E402
from maxsim.integrations.qdrant.errors import CollectionError  # noqa: E402
from maxsim.scoring.maxsim import maxsim_scores  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

DOCS = [
    {"id": "paris", "text": "Paris is the capital and largest city of France.", "metadata": {"lang": "en"}},
    {"id": "berlin", "text": "Berlin ist die Hauptstadt von Deutschland.", "metadata": {"lang": "de"}},
    {"id": "tokyo", "text": "東京は日本の首都です。", "metadata": {"lang": "ja"}},
    {
        "id": "photosynthesis",
        "text": "Plants turn light, water and carbon dioxide into sugar.",
        "metadata": {"lang": "en"},
    },
    {"id": "football", "text": "The match ended two to one after extra time.", "metadata": {"lang": "en"}},
]


@pytest.fixture(scope="module")
def model(default_model):
    return default_model


@pytest.mark.parametrize("engine", ["memory", "edge"])
def test_text_add_and_search_match_exact_maxsim(engine: str, tmp_path: Path, model) -> None:
    location = ":memory:" if engine == "memory" else f"edge:{tmp_path}"
    store = QdrantStore.create(location, "t", dim=96, model=model)
    try:
        ids = store.add([d["text"] for d in DOCS], [d["id"] for d in DOCS], [d["metadata"] for d in DOCS])
        assert ids == [d["id"] for d in DOCS]
        doc_vecs = model.encode_documents([d["text"] for d in DOCS], dim=96)
        for query in ("What is the capital of France?", "Hauptstadt Deutschland", "how do plants make sugar"):
            q = model.encode_queries([query], dim=96)[0]
            exact = maxsim_scores(q, doc_vecs)
            want = [DOCS[i]["id"] for i in np.argsort(-exact, kind="stable")]
            [hits] = store.search(query, len(DOCS), prefetch_limit=len(DOCS), exact_first_stage=True)
            assert [h["id"] for h in hits] == want
            np.testing.assert_allclose([h["score"] for h in hits], np.sort(exact)[::-1], rtol=1e-4)
        [hits] = store.search("What is the capital of France?", 2, filter={"lang": "en"})
        assert hits[0]["id"] == "paris" and all(h["metadata"]["lang"] == "en" for h in hits)
    finally:
        store.close()


def test_open_refuses_another_model(tmp_path: Path, model) -> None:
    location = str(tmp_path / "q")
    QdrantStore.create(location, "t", dim=64, model="some-other-model").close()
    with pytest.raises(CollectionError, match="holds vectors of model 'some-other-model'"):
        QdrantStore.open(location, "t", model=model)
    # a model given after opening cannot write into it either
    store = QdrantStore.open(location, "t")
    store.model = model
    with pytest.raises(ValueError, match="holds vectors of model 'some-other-model'"):
        store.add(["a text"])
    assert store.count() == 0
    store.close()


def test_cli_create_add_search(tmp_path: Path, model, capsys) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS) + "\n", encoding="utf-8")
    loc = ["--location", f"edge:{tmp_path / 'edge'}", "--collection", "cli"]
    assert main(["qdrant", "create", *loc, "--dim", "64", "--storage", "float16", "--repetitions", "8"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["engine"] == "edge" and created["settings"]["muvera"]["repetitions"] == 8
    assert main(["qdrant", "add", *loc, str(docs)]) == 0
    assert json.loads(capsys.readouterr().out) == {"added": 5, "updated": 0, "documents": 5}
    # idempotent: adding the same file again replaces the 5 documents
    assert main(["qdrant", "add", *loc, "--batch-size", "2", str(docs)]) == 0
    assert json.loads(capsys.readouterr().out) == {"added": 0, "updated": 5, "documents": 5}
    assert main(["qdrant", "search", *loc, "-k", "2", "capital of France", "photosynthesis in plants"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["hits"][0]["id"] for line in lines] == ["paris", "photosynthesis"]
    assert main(["qdrant", "search", *loc, "--filter", '{"lang": "de"}', "capital"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["id"] for h in hits] == ["berlin"]
    # user errors: one line on stderr, exit code 2
    assert main(["qdrant", "search", *loc, "--filter", "{lang: de}", "capital"]) == 2
    assert "--filter is not valid JSON" in capsys.readouterr().err
    assert main(["qdrant", "search", *loc, "--filter", '{"score": 0.5}', "capital"]) == 2
    assert "--filter: filter value for 'score'" in capsys.readouterr().err
    assert main(["qdrant", "search", *loc, "-k", "20", "--prefetch-limit", "10", "capital"]) == 2
    assert "--prefetch-limit (10) must be at least -k/--top-k (20)" in capsys.readouterr().err
    assert main(["qdrant", "create", *loc]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_input_errors_name_the_problem(tmp_path: Path, capsys) -> None:
    assert main(["qdrant", "add", "--location", str(tmp_path), str(tmp_path / "missing.jsonl")]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert main(["qdrant", "search", "--location", ":memory:", "q"]) == 2
    assert "does not outlive one command" in capsys.readouterr().err
    bad = {
        '{"id": "a", "text": "x"}\nnot json\n': "<t>:2: not valid JSON",
        '{"id": "", "text": "x"}\n': "'id' must be a non-empty string",
        '{"id": "a"}\n': "'text' must be a string",
        '{"id": 3, "text": "x"}\n': "'id' must be a non-empty string",
        '{"id": "a", "text": "x", "title": "t"}\n': "unknown keys \\['title'\\]",
        '{"id": "a", "text": "x", "metadata": [1]}\n': "'metadata' must be an object",
    }
    for text, message in bad.items():
        with pytest.raises(DocumentFileError, match=message):
            list(read_documents(io.StringIO(text), "<t>", content_ids=True))
    lines = '\n{"id": "a", "text": "x"}\n{"text": "x"}\n{"text": "y"}\n'
    ok = list(read_documents(io.StringIO(lines), "<t>", content_ids=True))
    assert ok[0] == {"id": "a", "text": "x", "metadata": None}
    # no id: a content id, the same for the same text
    assert ok[1]["id"].startswith("sha1:") and ok[1]["id"] != ok[2]["id"]
    assert ok[1]["id"] == next(read_documents(io.StringIO('{"text": "x"}'), "<t>", content_ids=True))["id"]


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")  # qdrant-client's version-check thread
def test_cli_unreachable_server_is_one_line_naming_the_flag(tmp_path: Path, capsys) -> None:
    """Issue 14: ``--location http://127.0.0.1:1`` printed an httpx.ConnectError traceback."""
    url = "http://127.0.0.1:1"  # nothing listens on port 1
    argv = [sys.executable, "-m", "maxsim.cli", "qdrant", "search", "--location", url, "a query"]
    run = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 2, run.stderr
    assert (
        run.stderr == f"maxsim qdrant search: error: cannot reach the Qdrant server at {url}: [Errno 111] "
        "Connection refused; check --location (and --timeout)\n"
    )
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "x"}\n')
    for command in (["create"], ["add", str(tmp_path / "docs.jsonl")]):
        assert main(["qdrant", command[0], "--location", url, *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"maxsim qdrant {command[0]}: error: cannot reach the Qdrant server at {url}: ")
        assert err.count("\n") == 1 and err.endswith("check --location (and --timeout)\n")
    for thread in threading.enumerate():  # let the version-check threads warn while the filter holds
        if "_check_compatibility" in thread.name:
            thread.join(10)
