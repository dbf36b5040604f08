"""The writer lock across processes, and crash-safe creation: overwrite respects a live writer,
a killed writer's forked child does not keep the lock, the error names a live holder, and a
create killed half-way leaves a directory that open() explains and create(overwrite=True) replaces."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from maxsim.index import Index, IndexExistsError, IndexLockedError, IndexNotFoundError

from .conftest import DIM

WRITER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from maxsim.index import Index

    ix = Index.open(sys.argv[1])
    ix.add_embeddings([np.ones((3, {dim}), np.float32)], ids=["from-writer"])  # takes the lock
    if sys.argv[2] == "fork":
        child = os.fork()
        if child == 0:  # a forked helper (a worker pool, a subprocess launcher) outliving the writer
            time.sleep(120)
            os._exit(0)
        print("CHILD", child, flush=True)
    print("READY", os.getpid(), flush=True)
    time.sleep(120)
""").format(dim=DIM)


def _index(tmp_path, gen, n=10):
    path = tmp_path / "idx"
    with Index.create(path, dim=DIM) as index:
        index.add_embeddings([gen.doc(i) for i in range(n)], ids=[f"d{i}" for i in range(n)])
    return path


def _start_writer(path, mode="plain"):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    child = None
    line = proc.stdout.readline().split()
    if line and line[0] == "CHILD":
        child = int(line[1])
        line = proc.stdout.readline().split()
    assert line and line[0] == "READY", proc.stderr.read() if proc.stderr else ""
    return proc, child


def test_overwrite_is_refused_while_another_process_writes(tmp_path, gen):
    path = _index(tmp_path, gen)
    proc, _ = _start_writer(path)
    try:
        with pytest.raises(IndexLockedError, match=f"pid {proc.pid}"):  # names the live holder
            Index.create(path, dim=DIM, overwrite=True)
        with Index.open(path, readonly=True) as index:
            assert len(index) == 11 and "from-writer" in index
    finally:
        proc.kill()
        proc.wait()
    with Index.create(path, dim=DIM, overwrite=True) as fresh:  # the writer is gone: now it may
        assert len(fresh) == 0


def test_a_killed_writers_forked_child_does_not_keep_the_lock(tmp_path, gen):
    path = _index(tmp_path, gen)
    proc, child = _start_writer(path, "fork")
    assert child is not None
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        os.kill(child, 0)  # the child is alive
        with Index.open(path) as index:
            index.add_embeddings([gen.doc("next")], ids=["next"])
            assert len(index) == 12
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_create_killed_before_it_finished_can_be_overwritten(tmp_path):
    path = tmp_path / "idx"
    script = textwrap.dedent(f"""
        import os, signal
        from maxsim.index import Index, storage

        def die(*args, **kwargs):  # killed just before the manifest that marks a complete index
            os.kill(os.getpid(), signal.SIGKILL)

        storage.write_json_atomic = die
        Index.create({str(path)!r}, dim={DIM})
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (path / "catalog.sqlite").exists() and not (path / "manifest.json").exists()
    with pytest.raises(IndexNotFoundError, match="interrupted"):
        Index.open(path)
    with pytest.raises(IndexExistsError, match="interrupted"):
        Index.create(path, dim=DIM)
    with Index.create(path, dim=DIM, overwrite=True) as index:
        index.add_embeddings([np.eye(3, DIM, dtype=np.float32)], ids=["a"])
    with Index.open(path) as index:
        assert len(index) == 1
