"""The indexes a server serves, by name, and how it writes to them.

The index's writer lock is held only while the server writes: each write request takes it, writes
its batch, commits and lets it go, so ``maxsim index add/delete`` (or any other process) can write
to the same directory in between. Every read starts from the index's latest commit, so the server
sees those writes at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from maxsim.api.errors import ApiError
from maxsim.api.settings import INDEX_NAME, Settings, SettingsError
from maxsim.errors import MaxsimError

log = logging.getLogger("maxsim.api")
T = TypeVar("T")
#: How long a write waits for another process's writer lock before answering 409 INDEX_LOCKED.
LOCK_WAIT_S = 2.0
#: Prefix of a deleted index's directory while it is being removed (never served: names cannot start with '.').
_DELETING = ".deleting-"


class ServedIndex:
    """One served index: ``index`` for reads; ``write(fn)`` runs ``fn(index)`` holding the writer lock."""

    def __init__(self, name: str, path: Path, model: Any, managed: bool) -> None:
        from maxsim.index import Index

        self.name = name
        self.path = path
        self.managed = managed  # under --index-dir: the server may delete it
        self.deleted = False
        from maxsim.index.sharded import ShardedIndex, is_sharded

        # the lock is taken by a write, not by opening; a sharded index (shards.json) is searched
        # on all its shards at once
        self.index = ShardedIndex.open(path, model=model) if is_sharded(path) else Index.open(path, model=model)
        self._write_mutex = threading.Lock()  # one write of ours at a time

    def write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(index)`` (one write batch), then let go of the writer lock. Waits up to
        LOCK_WAIT_S for another process's lock; then IndexLockedError names that process."""
        from maxsim.index import IndexLockedError

        with self._write_mutex:
            self.check_live()
            deadline = time.monotonic() + LOCK_WAIT_S
            try:
                while True:
                    try:
                        return fn(self.index)  # the lock is taken before anything is written: a retry is safe
                    except IndexLockedError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
            finally:
                _release_writer_lock(self.index)

    def check_live(self) -> None:
        if self.deleted:
            raise ApiError(404, "INDEX_NOT_FOUND", f"index {self.name!r} was deleted")

    def close(self) -> None:
        self.index.close()


def _release_writer_lock(index: Any) -> None:
    """An index keeps its writer lock from its first write; the server lets it go after each write
    batch (the next write takes it again and sees what others wrote in between)."""
    for part in getattr(index, "shards", [index]):  # a sharded index: each shard's lock
        part.release_writer()


class IndexRegistry:
    """Indexes served by name: the ones given with --index plus every index under index_dir."""

    def __init__(self, settings: Settings, model: Any) -> None:
        self.settings = settings
        self.model = model
        self._lock = threading.Lock()
        self._indexes: dict[str, ServedIndex] = {}

    def open_all(self) -> None:
        for name, path in self.settings.indexes:
            served = ServedIndex(name, Path(path).resolve(), self.model, managed=False)
            self._check_model(served)
            self._indexes[name] = served
        if self.settings.index_dir:
            root = Path(self.settings.index_dir)
            root.mkdir(parents=True, exist_ok=True)
            for sub in sorted(p for p in root.iterdir() if p.is_dir()):
                if sub.name.startswith(_DELETING):  # a delete interrupted by a crash: finish it
                    shutil.rmtree(sub, ignore_errors=True)
                    continue
                if not (sub / "manifest.json").exists() and not (sub / "shards.json").exists():
                    continue
                served_paths = {s.path for s in self._indexes.values()}
                if sub.name in self._indexes or not INDEX_NAME.match(sub.name) or sub.resolve() in served_paths:
                    continue
                try:
                    served = ServedIndex(sub.name, sub.resolve(), self.model, managed=True)
                    self._check_model(served)
                except (MaxsimError, Exception) as exc:  # noqa: BLE001 - one bad folder must not stop the server
                    log.warning("not serving %s: %s", sub, exc)
                    continue
                self._indexes[sub.name] = served

    def _check_model(self, served: ServedIndex) -> None:
        index = served.index
        if index.model_name not in (None, self.model.name):
            served.close()
            raise SettingsError(
                f"index {served.name!r} was built with model {index.model_name!r}, but this server runs "
                f"{self.model.name!r}; serve it with --model {index.model_name}"
            )
        if index.dim not in self.model.dims:
            served.close()
            raise SettingsError(f"index {served.name!r} has dim {index.dim}; the model serves {list(self.model.dims)}")

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._indexes)

    def get(self, name: str) -> ServedIndex:
        with self._lock:
            served = self._indexes.get(name)
        if served is None:
            raise ApiError(404, "INDEX_NOT_FOUND", f"no index named {name!r}; known: {self.names()}")
        return served

    def create(self, name: str, dim: int, nbits: int, refine_bits: int = 0) -> ServedIndex:
        from maxsim.index import Index, IndexExistsError

        if not self.settings.index_dir:
            raise ApiError(
                403,
                "INDEX_CREATION_DISABLED",
                "this server was started without --index-dir, so it cannot create indexes",
            )
        if not INDEX_NAME.match(name):
            raise ApiError(422, "INPUT_INVALID", f"name: {name!r} must match {INDEX_NAME.pattern}")
        if dim not in self.model.dims:
            raise ApiError(422, "INPUT_INVALID", f"dimensions: the model serves {list(self.model.dims)}, not {dim}")
        with self._lock:
            if name in self._indexes:
                raise ApiError(409, "INDEX_EXISTS", f"an index named {name!r} already exists")
            path = (Path(self.settings.index_dir) / name).resolve()
            try:
                Index.create(path, model=self.model, dim=dim, nbits=nbits, refine_bits=refine_bits).close()
            except IndexExistsError:
                raise ApiError(
                    409, "INDEX_EXISTS", f"{name!r} already exists on disk and is not an empty index"
                ) from None
            except ValueError as exc:
                raise ApiError(422, "INPUT_INVALID", str(exc)) from None
            served = self._indexes[name] = ServedIndex(name, path, self.model, managed=True)
            return served

    def delete(self, name: str) -> None:
        """Stop serving ``name`` and remove its directory, once no one is writing to it."""
        from maxsim.index import IndexLockedError
        from maxsim.index.lock import WriterLock
        from maxsim.index.storage import LOCK

        served = self.get(name)
        if not served.managed:
            raise ApiError(
                403,
                "INDEX_DELETION_DISABLED",
                f"index {name!r} was given with --index; the server deletes "
                "only indexes under its --index-dir (remove the directory yourself)",
            )
        with served._write_mutex:
            served.check_live()
            lock = WriterLock(served.path / LOCK)  # the index's own writer lock: no one may be writing
            try:
                lock.acquire(served.path)
            except IndexLockedError as exc:
                raise ApiError(
                    409, "INDEX_LOCKED", f"index {name!r} cannot be deleted while another process writes to it: {exc}"
                ) from None
            try:
                with self._lock:
                    self._indexes.pop(name, None)
                served.deleted = True
                served.close()
                doomed = served.path.with_name(f"{_DELETING}{name}-{uuid.uuid4().hex[:8]}")
                os.rename(served.path, doomed)  # the name is free at once; a crash leaves only the hidden folder
                shutil.rmtree(doomed, ignore_errors=True)
            finally:
                lock.release()

    def close(self) -> None:
        with self._lock:
            for served in self._indexes.values():
                try:
                    served.close()
                except Exception:
                    log.exception("closing an index failed")
            self._indexes.clear()
