"""Failures of the machine during writes: a write either raises and leaves nothing behind, or
returns and is durable. A full disk is reported as such; a failing maintenance after a commit
does not turn the committed write into an error."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid

import numpy as np
import pytest

import maxsim.index.maintenance as index_module
from maxsim.errors import DuplicateIdError
from maxsim.index import Index, storage

from .conftest import DIM


def _tmp_dirs(path):
    return [p.name for p in path.iterdir() if p.name.startswith("tmp-")]


def test_failed_maintenance_after_commit_warns_and_keeps_the_write(tmp_path, gen, monkeypatch):
    from maxsim.index.errors import MaintenanceWarning

    monkeypatch.setattr(index_module, "MAX_SEGMENTS", 2)  # the third add triggers a merge
    path = tmp_path / "idx"
    index = Index.create(path, dim=DIM)
    for b in range(2):
        index.add_embeddings([gen.doc(f"b{b}-{i}") for i in range(10)], ids=[f"b{b}-{i}" for i in range(10)])

    def broken_merge(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(index_module, "rewrite_segments", broken_merge)
    ids = [f"new-{i}" for i in range(10)]
    with pytest.warns(MaintenanceWarning, match="committed") as caught:
        assert index.add_embeddings([gen.doc(x) for x in ids], ids=ids) == ids
    assert caught[0].message.ids == ids
    assert isinstance(index.last_maintenance_error, OSError)
    assert [d["id"] for d in index.get(ids)] == ids
    with pytest.raises(DuplicateIdError):  # a retry is told the write already happened
        index.add_embeddings([gen.doc(ids[0])], ids=[ids[0]])
    monkeypatch.undo()
    monkeypatch.setattr(index_module, "MAX_SEGMENTS", 2)
    index.add_embeddings([gen.doc("later")], ids=["later"])  # maintenance runs again, and succeeds
    assert index.last_maintenance_error is None
    assert index.info()["segments"] <= 2
    index.close()
    with Index.open(path) as reopened:
        assert len(reopened) == 31
        reopened.verify()


def test_injected_enospc_is_disk_full_and_leaves_nothing_behind(tmp_path, gen, monkeypatch):
    from maxsim.index.errors import DiskFullError

    path = tmp_path / "idx"
    index = Index.create(path, dim=DIM)
    index.add_embeddings([gen.doc(i) for i in range(20)], ids=[f"d{i}" for i in range(20)])
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_then_full(fd):
        calls["n"] += 1
        if calls["n"] > 2:  # the first files of the new segment are written, then the disk fills
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", fsync_then_full)
    with pytest.raises(DiskFullError, match="disk full"):
        index.add_embeddings([gen.doc(f"x{i}") for i in range(5)], ids=[f"x{i}" for i in range(5)])
    assert _tmp_dirs(path) == []
    monkeypatch.undo()
    # the same writer recovers: nothing half-written, the next writes work
    assert len(index) == 20 and "x0" not in index
    index.add_embeddings([gen.doc(f"x{i}") for i in range(5)], ids=[f"x{i}" for i in range(5)])
    assert index.delete(["d0"]) == 1
    index.verify()
    index.close()


def _mount_small_fs(mountpoint, size: str) -> bool:
    mountpoint.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)], capture_output=True)
    return done.returncode == 0


def test_full_small_filesystem(tmp_path, gen):
    """A real 4 MB filesystem filled by adds: every failing write is DiskFullError, leaves no
    tmp-* directory, loses no acknowledged document, and writing works again once space is freed."""
    from maxsim.index.errors import DiskFullError

    mnt = tmp_path / "small"
    if not _mount_small_fs(mnt, "4m"):
        pytest.skip("mounting a small tmpfs needs root (the injected-ENOSPC test covers the same paths)")
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (1 << 20))
        path = mnt / "idx"
        index = Index.create(path, dim=DIM)
        acked: list[str] = []
        failures = []
        for b in range(200):
            ids = [f"b{b}-{i}" for i in range(40)]
            try:
                index.add_embeddings([gen.doc(x) for x in ids], ids=ids, metadata=[{"b": b}] * len(ids))
            except Exception as e:  # noqa: BLE001 - the test asserts what it was
                failures.append(e)
                if len(failures) >= 3:
                    break
                continue
            acked += ids
        assert failures, "the filesystem never filled"
        assert all(isinstance(e, DiskFullError) and "disk full" in str(e) for e in failures), failures
        assert _tmp_dirs(path) == []
        try:  # a delete on the full disk either works or says the disk is full
            index.delete(acked[:40])
            acked = acked[40:]
        except DiskFullError:
            pass
        filler.unlink()  # free space: the same writer carries on
        more = [f"after-{uuid.uuid4().hex[:6]}-{i}" for i in range(10)]
        index.add_embeddings([gen.doc(x) for x in more], ids=more)
        assert all(x in index for x in acked + more)
        index.verify()
        index.close()
        with Index.open(path) as reopened:
            assert len(reopened) == len(acked) + len(more)
            hit = reopened.search_embeddings(gen.query_for(gen.doc(acked[-1]), seed=1), k=1)[0][0]
            assert hit["id"] == acked[-1]
            assert np.isfinite(hit["score"])
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
