"""Hybrid search: BM25 over the stored texts beside the late-interaction index, fused; updates,
deletes and a writer killed with SIGKILL never leave the lexical half out of step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from maxsim.errors import InvalidArgumentError
from maxsim.index import Index

from .conftest import DIM, Clustered

HERE = Path(__file__).resolve().parent

DOCS = {
    "berlin": "Berlin is the capital of Germany and has about 3.8 million inhabitants.",
    "paris": "Paris is the capital of France, on the river Seine.",
    "rome": "Rome is the capital of Italy; the Colosseum is there.",
    "gasket": "Replacement part ZX-9417 fits the pump housing of older models.",
    "tokyo": "東京都は日本の首都であり、人口が最も多い都市です。",
    "bangkok": "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย",
}


@pytest.fixture()
def index(tmp_path, default_model):
    ix = Index.create(tmp_path / "idx", model=default_model)
    ix.add(list(DOCS.values()), ids=list(DOCS), metadata=[{"n": i % 2} for i in range(len(DOCS))])
    yield ix
    ix.close()


def test_hybrid_finds_exact_terms_and_keeps_k(index):
    assert index.search_lexical("ZX-9417", k=3)[0][0]["id"] == "gasket"
    assert index.search_lexical("首都", k=3)[0][0]["id"] == "tokyo"  # CJK bigrams
    assert index.search_lexical("เมืองหลวง", k=3)[0][0]["id"] == "bangkok"  # Thai bigrams
    hits = index.search(["ZX-9417", "capital of France"], k=2, hybrid=True)
    assert [len(h) for h in hits] == [2, 2]
    assert hits[0][0]["id"] == "gasket" and hits[1][0]["id"] == "paris"
    assert hits[0][0]["text"] == DOCS["gasket"] and hits[0][0]["score"] >= hits[0][1]["score"]
    # weight 1 is BM25 alone; weight 0 is late interaction alone (same order as a plain search)
    assert (
        index.search("capital of Italy", k=3, hybrid=0.0)[0][0]["id"]
        == index.search("capital of Italy", k=3)[0][0]["id"]
    )
    assert index.search("ZX-9417", k=1, hybrid=1.0)[0][0]["id"] == "gasket"
    filtered = index.search("ZX-9417 capital", k=10, hybrid=True, filter={"n": 0})
    assert {h["id"] for h in filtered[0]} <= {"berlin", "rome", "tokyo"}
    with pytest.raises(InvalidArgumentError, match="hybrid"):
        index.search("x", hybrid=2.0)


def test_updates_and_deletes_reach_the_lexical_half(index, tmp_path, default_model):
    assert index.search_lexical("Seine")[0][0]["id"] == "paris"
    index.update(["paris"], ["Paris hosts the Louvre museum."])
    assert index.search_lexical("Seine")[0] == []
    assert index.search_lexical("Louvre")[0][0]["id"] == "paris"
    index.delete(["gasket"])
    assert index.search_lexical("ZX-9417")[0] == []
    assert "gasket" not in {h["id"] for h in index.search("ZX-9417", k=10, hybrid=True)[0]}
    index.upsert(["Part ZX-9417 is discontinued."], ids=["gasket2"])
    assert index.search("ZX-9417", k=1, hybrid=True)[0][0]["id"] == "gasket2"
    # another process (read-only) sees the same state; only the current version stays on disk
    with Index.open(tmp_path / "idx", model=default_model, readonly=True) as ro:
        assert ro.search_lexical("Louvre")[0][0]["id"] == "paris"
    assert [p.name for p in (tmp_path / "idx").glob("lexical-*")] == [f"lexical-{index._catalog.version()}"]


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from conftest import Clustered
    from maxsim.index import Index

    gen = Clustered()
    ix = Index.open(sys.argv[1])
    i = 0
    while True:
        ids = [f"w{{i}}-{{j}}" for j in range(3)]
        ix.add_embeddings([gen.doc(x) for x in ids], ids=ids, texts=[f"word{{i}}x{{j}} common" for j in range(3)])
        print("ADD " + ",".join(ids), flush=True)
        if i % 2:
            # announced first: a kill between the delete's commit and its acknowledgement
            # leaves it done but unacknowledged, which is allowed
            print("DELETING " + f"w{{i - 1}}-0", flush=True)
            ix.delete([f"w{{i - 1}}-0"])
            print("DEL " + f"w{{i - 1}}-0", flush=True)
        ix.search_lexical("common", k=5)  # rebuilds and saves the lexical index every round
        i += 1
""")


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_sigkill_leaves_lexical_consistent_with_catalog(tmp_path, delay):
    gen = Clustered()
    path = tmp_path / "idx"
    with Index.create(path, dim=DIM) as ix:
        ix.add_embeddings([gen.doc("seed")], ids=["seed"], texts=["seed common"])
        ix.search_lexical("seed")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(here=str(HERE)), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    lines = []
    try:
        while len(lines) < 3 and (line := child.stdout.readline()):  # a few rounds, then kill at some point
            lines.append(line)
        time.sleep(delay)
    finally:
        child.send_signal(signal.SIGKILL)
        rest, _ = child.communicate()
    out = "".join(lines) + rest
    seen: dict[str, set[str]] = {"ADD": set(), "DELETING": set(), "DEL": set()}
    for line in out.splitlines():
        kind, _, rest = line.partition(" ")
        seen[kind].update(rest.split(","))
    added, deleting, deleted = seen["ADD"], seen["DELETING"], seen["DEL"]
    assert added, "the child acknowledged no write"
    with Index.open(path) as ix:
        stored = {r[0] for r in ix._catalog.query("SELECT id FROM docs")}
        assert added - deleting <= stored  # every acknowledged add whose delete never started
        assert not deleted & stored  # and no acknowledged delete undone
        everything = ix.search_lexical("common", k=100000)[0]
        assert {h["id"] for h in everything} == stored  # exactly the catalog's documents
        for doc_id in sorted(added - deleting)[:20]:
            i, j = doc_id[1:].split("-")
            assert ix.search_lexical(f"word{i}x{j}", k=1)[0][0]["id"] == doc_id
