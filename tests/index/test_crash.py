"""Durability: a writer process killed with SIGKILL at random moments (mid-add, mid-delete,
mid-merge, mid-optimize) leaves an index that opens, holds every acknowledged write and no
partial one. Rounds: MAXSIM_CRASH_ROUNDS (default 10 per mode)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from maxsim.index import Index, SearchConfig

from .conftest import DIM, Clustered

ROUNDS = int(os.environ.get("MAXSIM_CRASH_ROUNDS", "10"))
HERE = Path(__file__).resolve().parent

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    import zlib
    import numpy as np
    from conftest import Clustered
    from maxsim.index import Index

    path, mode, rnd = sys.argv[1], sys.argv[2], sys.argv[3]
    gen = Clustered()
    rng = np.random.default_rng(zlib.crc32(rnd.encode()))
    ix = Index.open(path)
    print("READY", flush=True)
    i = 0
    prev = None
    while True:
        if mode == "optimize":
            ix.optimize(force=i % 3 == 0)
            print("OPT", flush=True)
        batch = [f"{{rnd}}-b{{i}}-{{j}}" for j in range(int(rng.integers(1, 25)))]
        ix.add_embeddings([gen.doc(x) for x in batch], ids=batch, metadata=[{{"batch": f"{{rnd}}-b{{i}}"}}] * len(batch))
        print("ADD " + ",".join(batch), flush=True)
        if prev is not None and i % 2 == 1:
            ix.delete([prev[0]])
            print("DEL " + prev[0], flush=True)
        prev = batch
        i += 1
""")


def _seed_index(path: Path, gen: Clustered) -> set[str]:
    ids = [f"seed-{i}" for i in range(150)]
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings([gen.doc(x) for x in ids], ids=ids, metadata=[{"batch": "seed"}] * len(ids))
    return set(ids)


def _run_and_kill(path: Path, mode: str, rnd: str, delay: float, script: Path) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), mode, rnd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    if ready.strip() != "READY":
        proc.kill()
        raise AssertionError(f"writer did not start: {ready!r} {proc.stderr.read() if proc.stderr else ''}")
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err  # it was still writing when killed
    return out.splitlines()


def _batches(rnd: str, n: int) -> list[list[str]]:
    """The first n batches of ids the writer of round ``rnd`` adds (same generator as CHILD)."""
    rng = np.random.default_rng(zlib.crc32(rnd.encode()))
    return [[f"{rnd}-b{i}-{j}" for j in range(int(rng.integers(1, 25)))] for i in range(n)]


def _check(
    path: Path, gen: Clustered, live: set[str], deleted: set[str], in_flight: list[str], maybe_deleted: str | None
) -> set[str]:
    """Check the reopened index against the acknowledged writes; return the ids it holds."""
    with Index.open(path) as index:
        index.verify()
        for x in live - {maybe_deleted}:
            assert x in index, f"acknowledged add of {x} lost"
        for x in deleted:
            assert x not in index, f"acknowledged delete of {x} lost"
        # the write in flight is all-or-nothing
        got = [x in index for x in in_flight]
        assert all(got) or not any(got), f"partial write: {dict(zip(in_flight, got, strict=True))}"
        holds = live | (set(in_flight) if all(got) else set())
        if maybe_deleted is not None and maybe_deleted not in index:
            holds.discard(maybe_deleted)
        assert len(index) == len(holds)
        # stored vectors belong to their ids, and documents are found by search
        sample = random.Random(len(holds)).sample(sorted(holds), min(15, len(holds)))
        for x, vecs in zip(sample, index.get_embeddings(sample), strict=True):
            assert vecs.shape == gen.doc(x).shape and (vecs * gen.doc(x)).sum(1).mean() > 0.5
        for x in sample[:5]:
            hit = index.search_embeddings(gen.query_for(gen.doc(x), seed=1), k=1, config=SearchConfig(exact=False))[0][
                0
            ]
            assert hit["id"] == x
        # a writer cleans whatever the crash left behind
        index.add_embeddings([gen.doc("probe")], ids=["probe"])
        index.delete(["probe"])
        names = {p.name for p in path.iterdir() if p.is_dir()}
        referenced = {r[0] for r in index._catalog.query("SELECT name FROM segments")}
        referenced.add(index._catalog.query("SELECT value FROM state WHERE key='codec'")[0][0])
        assert names == referenced, names ^ referenced
    return holds


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["add", "optimize"])
def test_sigkill_during_writes_keeps_acknowledged_writes(tmp_path, gen, mode):
    script = tmp_path / "writer.py"
    script.write_text(CHILD.format(here=str(HERE)))
    path = tmp_path / "idx"
    present = _seed_index(path, gen)
    deleted: set[str] = set()
    rng = random.Random(mode)
    acked_ops = 0
    stretch = 1.0  # a busy machine runs the writer slower: widen the kill window until it writes
    for r in range(ROUNDS):
        rnd = f"{mode}{r}"
        lines = _run_and_kill(path, mode, rnd, stretch * rng.uniform(0.05, 2.5 if mode == "add" else 4.0), script)
        if not lines:
            stretch = min(stretch * 2, 16.0)
        n_added = 0
        for line in lines:
            if line.startswith("ADD "):
                present |= set(line[4:].split(","))
                n_added += 1
            elif line.startswith("DEL "):
                deleted.add(line[4:])
            acked_ops += 1
        batches = _batches(rnd, n_added + 1)
        in_flight = batches[n_added]
        # after acknowledging add i (odd i) the writer deletes the first id of batch i - 1
        last_add = n_added - 1
        maybe_deleted = None
        if lines and lines[-1].startswith("ADD ") and last_add % 2 == 1:
            maybe_deleted = batches[last_add - 1][0]
        holds = _check(path, gen, present - deleted, deleted, in_flight, maybe_deleted)
        present = holds
    assert acked_ops > 0  # the writer really was writing between kills
