"""A search reads one consistent version: while another process re-writes a document with the
same vectors (and the index compacts the tombstones that leaves), a reader always finds it and
always gets k hits, with and without a filter."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from maxsim.index import Index, SearchConfig

from .conftest import DIM

HERE = Path(__file__).resolve().parent

WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from conftest import Clustered
    from maxsim.index import Index

    gen = Clustered()
    ids = [f"doc-{{i}}" for i in range(8)]
    with Index.open({path!r}, auto_optimize=False) as ix:  # commits come fast: no merges in between
        print("READY", flush=True)
        rev = 0
        while True:
            ix.update_embeddings(ids, [gen.doc(x) for x in ids], metadata=[{{"group": "a", "rev": rev}}] * len(ids))
            rev += 1
            if rev == 3:
                print("WRITING", flush=True)
""")


def _commit_between_snapshot_and_rows(monkeypatch, path: Path) -> list[int]:
    """Make every search straddle a commit of the writer: after the search took its snapshot and
    before it reads rows, wait until the catalog's version moved. Returns the versions waited past."""
    waited: list[int] = []
    original = Index._search_one

    def catalog_version() -> int:
        with sqlite3.connect(str(path / "catalog.sqlite"), timeout=30) as conn:
            return int(conn.execute("SELECT value FROM state WHERE key='version'").fetchone()[0])

    def search_one(self, snap, *args, **kwargs):
        if not waited or waited[-1] != snap.version:
            deadline = time.monotonic() + 30
            while catalog_version() <= snap.version and time.monotonic() < deadline:
                time.sleep(0.005)
            waited.append(snap.version)
        return original(self, snap, *args, **kwargs)

    monkeypatch.setattr(Index, "_search_one", search_one)
    return waited


def test_reader_never_misses_a_document_being_rewritten(tmp_path, gen, monkeypatch):
    path = tmp_path / "idx"
    ids = [f"doc-{i}" for i in range(60)]
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings([gen.doc(x) for x in ids], ids=ids, metadata=[{"group": "a", "rev": -1}] * len(ids))
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(here=str(HERE), path=str(path)))
    writer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "READY", writer.stderr.read() if writer.stderr else ""
        assert writer.stdout.readline().strip() == "WRITING"
        reader = Index.open(path, readonly=True)
        waited = _commit_between_snapshot_and_rows(monkeypatch, path)
        exact = SearchConfig(exact=True)
        targets = [f"doc-{i}" for i in range(8)]
        queries = [gen.doc(x)[:8] for x in targets]
        misses, searches = [], 0
        for rnd in range(8):  # bounded: 8 searches of 8 queries, each across a commit
            flt = {"group": "a"} if rnd % 2 else None
            for target, hits in zip(
                targets, reader.search_embeddings(queries, k=5, filter=flt, config=exact), strict=True
            ):
                got = [h["id"] for h in hits]
                if len(got) < 5 or target not in got:
                    misses.append((target, flt, got))
                searches += 1
        reader.close()
        assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
    finally:
        writer.kill()
        writer.wait()
    assert len(waited) >= 8, waited  # every search really had a commit land in the middle of it
    assert not misses, f"{len(misses)} of {searches} searches missed the document: {misses[:3]}"
