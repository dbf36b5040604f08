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

from maxsim.documents import DocumentFileError, read_documents  # noqa: E402
from maxsim.integrations.qdrant import QdrantStore  # noqa: E402
from maxsim.cli.qdrant import main  # noqa: E402
from maxsim.scoring.maxsim import maxsim_scores  # noqa: E402

DOCS = [
    {"id": "paris", "text": "Paris is the capital and largest city of France.", "metadata": {"lang": "en"}},
    {"id": "berlin", "text": "Berlin ist die Hauptstadt von Deutschland.", "metadata": {"lang": "de"}},
    {"id": "tokyo", "text": "東京は日本の首都です。", "metadata": {"lang": "ja"}},
    {"id": "photosynthesis", "text": "Plants turn light, water and carbon dioxide into sugar.",
     "metadata": {"lang": "en"}},
    {"id": "football", "text": "The match ended two to one after extra time.", "metadata": {"lang": "en"}},
]


@pytest.fixture(scope="module")
def model():
    maxsim = pytest.importorskip("maxsim")
    try:
        return maxsim.load()
    except Exception as exc:  # the default model's files are not in this checkout yet
        pytest.skip(f"default model unavailable: {exc}")


@pytest.mark.parametrize("engine", ["memory", "edge"])
def test_text_add_and_search_match_exact_maxsim(engine: str, tmp_path: Path, model) -> None:
    location = ":memory:" if engine == "memory" else f"edge:{tmp_path}"
    store = QdrantStore.create(location, "t", dim=96, model=model)
    try:
        assert store.add(DOCS) == len(DOCS)
        doc_vecs = model.encode_documents([d["text"] for d in DOCS], dim=96)
        for query in ("What is the capital of France?", "Hauptstadt Deutschland", "how do plants make sugar"):
            q = model.encode_queries([query], dim=96)[0]
            exact = maxsim_scores(q, doc_vecs)
            want = [DOCS[i]["id"] for i in np.argsort(-exact, kind="stable")]
            hits = store.search(query, len(DOCS), prefetch_limit=len(DOCS), exact_first_stage=True)
            assert [h["id"] for h in hits] == want
            np.testing.assert_allclose([h["score"] for h in hits], np.sort(exact)[::-1], rtol=1e-4)
        hits = store.search("What is the capital of France?", 2, filter={"lang": "en"})
        assert hits[0]["id"] == "paris" and all(h["metadata"]["lang"] == "en" for h in hits)
    finally:
        store.close()


def test_open_refuses_another_model(tmp_path: Path, model) -> None:
    location = str(tmp_path / "q")
    QdrantStore.create(location, "t", dim=64, model="some-other-model").close()
    with pytest.raises(ValueError, match="holds vectors of model 'some-other-model'"):
        QdrantStore.open(location, "t", model=model)


def test_cli_create_add_search(tmp_path: Path, model, capsys) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS) + "\n", encoding="utf-8")
    loc = ["--location", f"edge:{tmp_path / 'edge'}", "--collection", "cli"]
    assert main(["qdrant", "create", *loc, "--dim", "64", "--storage", "float16", "--repetitions", "8"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["engine"] == "edge" and created["settings"]["muvera"]["repetitions"] == 8
    assert main(["qdrant", "add", *loc, str(docs)]) == 0
    assert json.loads(capsys.readouterr().out) == {"added": 5, "documents": 5}
    # idempotent: adding the same file again keeps 5 documents
    assert main(["qdrant", "add", *loc, str(docs)]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 5
    assert main(["qdrant", "search", *loc, "-k", "2", "capital of France", "photosynthesis in plants"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["hits"][0]["id"] for line in lines] == ["paris", "photosynthesis"]
    assert main(["qdrant", "search", *loc, "--filter", '{"lang": "de"}', "capital"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["id"] for h in hits] == ["berlin"]
    # user errors: one line on stderr, exit code 2
    assert main(["qdrant", "search", *loc, "--filter", "{lang: de}", "capital"]) == 2
    assert "--filter is not valid JSON" in capsys.readouterr().err
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
    ok = list(read_documents(io.StringIO('\n{"id": "a", "text": "x"}\n{"text": "x"}\n{"text": "y"}\n'), "<t>", content_ids=True))
    assert ok[0] == {"id": "a", "text": "x", "metadata": None}
    # no id: a content id, the same for the same text
    assert ok[1]["id"].startswith("sha1:") and ok[1]["id"] != ok[2]["id"]
    assert ok[1]["id"] == next(read_documents(io.StringIO('{"text": "x"}'), "<t>", content_ids=True))["id"]
