"""The text path (the default model) through the Python API and `maxsim index ...`."""

from __future__ import annotations

import json

import pytest

from maxsim.cli import main as cli_main
from maxsim.index import Index

DOCS = [
    ("paris", "Paris is the capital and largest city of France.", {"lang": "en", "topic": "geo"}),
    ("berlin", "Berlin ist die Hauptstadt von Deutschland.", {"lang": "de", "topic": "geo"}),
    ("python", "Python is a programming language created by Guido van Rossum.", {"lang": "en", "topic": "tech"}),
    ("cats", "Les chats dorment environ seize heures par jour.", {"lang": "fr", "topic": "animals"}),
    ("tokyo", "東京は日本の首都です。", {"lang": "ja", "topic": "geo"}),
    ("rust", "Rust guarantees memory safety without a garbage collector.", {"lang": "en", "topic": "tech"}),
    ("whales", "The blue whale is the largest animal known to have existed.", {"lang": "en", "topic": "animals"}),
    ("madrid", "Madrid es la capital de España.", {"lang": "es", "topic": "geo"}),
]


def test_text_api(tmp_path, default_model):
    index = Index.create(tmp_path / "idx", model=default_model)
    ids = index.add([t for _, t, _ in DOCS], ids=[i for i, _, _ in DOCS], metadata=[m for _, _, m in DOCS])
    assert ids == [i for i, _, _ in DOCS]
    hit = index.search("What is the capital of France?", k=3)[0][0]
    assert hit["id"] == "paris" and hit["text"] == DOCS[0][1] and hit["metadata"]["lang"] == "en"
    batch = index.search(["memory safe systems language", "largest animal"], k=1)
    assert [b[0]["id"] for b in batch] == ["rust", "whales"]
    assert [h["id"] for h in index.search("capital city", k=10, filter={"lang": "es"})[0]] == ["madrid"]
    auto = index.add(["Canberra is the capital of Australia."])
    assert len(auto) == 1 and len(auto[0]) == 32 and index.search("capital of Australia", k=1)[0][0]["id"] == auto[0]
    index.update(["cats"], texts=["Dogs are loyal companions."])
    assert index.search("loyal dogs", k=1)[0][0]["id"] == "cats"
    assert index.get(["cats"])[0]["metadata"]["lang"] == "fr"  # kept
    index.close()
    reopened = Index.open(tmp_path / "idx", model=default_model)
    assert reopened.model_name == default_model.name and len(reopened) == len(DOCS) + 1
    with pytest.raises(TypeError, match="list of strings"):
        reopened.add("not a list")


def test_cli_round_trip(tmp_path, capsys, monkeypatch, default_model):
    # every command loads the model; hand them the session's copy instead of re-reading it
    from maxsim.cli.common import load_model_named
    from maxsim.models import loading

    real_load = loading.load
    load_model_named.cache_clear()
    monkeypatch.setattr(
        loading,
        "load",
        lambda name=None, **kw: (default_model if name in (None, default_model.name) else real_load(name, **kw)),
    )
    path = str(tmp_path / "idx")
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": i, "text": t, "metadata": m}) for i, t, m in DOCS) + "\n")

    def run(*argv):
        code = cli_main(["index", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = run("create", path)
    assert code == 0 and json.loads(out)["documents"] == 0
    code, out, _ = run("add", path, str(docs), "--batch-size", "3")
    assert code == 0 and json.loads(out) == {"added": len(DOCS), "replaced": 0, "unchanged": 0, "documents": len(DOCS)}
    code, out, _ = run("search", path, "capital of Spain", "programming language", "-k", "2")
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [ln["hits"][0]["id"] for ln in lines] == ["madrid", "python"]
    code, out, _ = run("search", path, "capital", "--filter", '{"lang": "de"}')
    assert [h["id"] for h in json.loads(out)["hits"]] == ["berlin"]
    code, out, _ = run("search", path, "animal", "--where", "json_extract(metadata, '$.topic') = 'animals'", "-k", "5")
    assert sorted(h["id"] for h in json.loads(out)["hits"]) == ["cats", "whales"]
    code, out, _ = run("delete", path, "madrid")
    assert code == 0 and json.loads(out) == {"deleted": 1, "documents": len(DOCS) - 1}
    code, out, _ = run("search", path, "capital of Spain", "--hybrid", "-k", "3")
    hits = json.loads(out)["hits"]
    assert code == 0 and len(hits) == 3 and "madrid" not in {h["id"] for h in hits}  # the delete reached BM25 too
    code, out, _ = run("search", path, "programming language", "--hybrid", "1.0", "-k", "1")
    assert code == 0 and json.loads(out)["hits"][0]["id"] == "python"
    code, out, _ = run("optimize", path)
    info = json.loads(out)
    assert code == 0 and info["documents"] == len(DOCS) - 1 and info["deleted_pending"] == 0 and info["model"]
    code, out, _ = run("info", path, "--verify")
    assert code == 0 and json.loads(out)["documents"] == len(DOCS) - 1
    # user errors: one line on stderr, exit code 2
    code, _, err = run("delete", path, "madrid")
    assert code == 2 and "not in the index" in err and "Traceback" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": "ok"}\n{"id": 5, "text": "no"}\n')
    code, _, err = run("add", path, str(bad))
    assert code == 2 and "bad.jsonl:2: 'id' must be a non-empty string" in err
    code, out, err = run("add", path, str(docs))  # the same file again: only the deleted one is added
    assert code == 0 and json.loads(out)["added"] == 1 and json.loads(out)["unchanged"] == len(DOCS) - 1  # madrid again
    code, _, err = run("search", str(tmp_path / "nope"), "x")
    assert code == 2 and "no index at" in err
    code, _, err = run("search", path, "x", "--filter", "[1]")
    assert code == 2 and "JSON object" in err
    # a two-plane index from the command line; a plane that does not match --nbits is refused
    two = str(tmp_path / "two")
    code, out, _ = run("create", two, "--refine-bits", "2")
    assert code == 0 and json.loads(out)["refine_bits"] == 2
    code, out, _ = run("add", two, str(docs))
    assert code == 0 and json.loads(out)["added"] == len(DOCS)
    code, out, _ = run("search", two, "capital of Spain", "-k", "1")
    assert json.loads(out)["hits"][0]["id"] == "madrid"
    code, _, err = run("create", str(tmp_path / "bad-two"), "--nbits", "4", "--refine-bits", "2")
    assert code == 2 and "--refine-bits must be 0 or equal to --nbits" in err
    assert not (tmp_path / "bad-two").exists()
