"""A micro-batching queue in front of the model.

Requests submit already-tokenised texts as one *job* and await its result; a single worker
thread owns the model. With batching on, the worker takes every job waiting in the queue, waits
up to ``max_wait_ms`` for more (bounded by ``max_batch_inputs`` / ``max_batch_tokens``), and
encodes them in one call, so concurrent requests share forward passes and throughput grows with
concurrency. With batching off, each job is encoded on its own. Either way the event loop only
awaits a future: no model work ever runs on it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maxsim.api.errors import ApiError
from maxsim.api.settings import BatchSettings

log = logging.getLogger("maxsim.api")


@dataclass(eq=False)
class _Job:
    items: list[Any]  # TokenizedText
    dim: int
    n_tokens: int
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


_STOP = object()


class Batcher:
    """Owns the model's forward passes. ``start()`` launches the worker; ``close()`` stops it."""

    def __init__(self, model: Any, settings: BatchSettings, max_queue: int, metrics: Any = None) -> None:
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._pending: _Job | None = None  # a job taken from the queue that did not fit the last batch

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="maxsim-batcher", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
            self._thread = None

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # ---- submit -----------------------------------------------------------------------------
    async def encode(self, items: list[Any], dim: int, timeout: float) -> list[np.ndarray]:
        """Encode tokenised texts (queries and documents may be mixed); one array per item."""
        if not items:
            return []
        if self._thread is None:
            raise ApiError(503, "SERVICE_UNAVAILABLE", "the model worker is not running")
        job = _Job(items, int(dim), sum(len(it) for it in items))
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise ApiError(503, "SERVICE_UNAVAILABLE", "the model queue is full; retry shortly") from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
        except TimeoutError:
            job.future.cancel()
            raise ApiError(504, "SERVICE_TIMEOUT", f"the model did not answer within {timeout:g} s") from None

    # ---- worker -----------------------------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        """Block for one job, then gather more while the batch has room (bounded wait)."""
        first = self._pending or self._queue.get()
        self._pending = None
        if first is _STOP:
            return None
        jobs = [first]
        if not self.settings.enabled:
            return jobs
        s = self.settings
        n_items, n_tokens = len(first.items), first.n_tokens
        deadline = time.perf_counter() + s.max_wait_ms / 1000.0
        while n_items < s.max_batch_inputs and n_tokens < s.max_batch_tokens:
            remaining = deadline - time.perf_counter()
            try:
                job = self._queue.get_nowait() if remaining <= 0 else self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is _STOP or n_items + len(job.items) > s.max_batch_inputs or n_tokens + job.n_tokens > s.max_batch_tokens:
                self._pending = job  # first of the next batch
                break
            jobs.append(job)
            n_items += len(job.items)
            n_tokens += job.n_tokens
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if not live:
                continue
            started = time.perf_counter()
            # jobs of one head size share a forward pass; the head output is cut per job's dim
            by_head: dict[int, list[_Job]] = defaultdict(list)
            for j in live:
                by_head[self._head_dim(j.dim)].append(j)
            for head_dim, group in by_head.items():
                try:
                    items = [it for j in group for it in j.items]
                    vectors = self.model._encode(items, head_dim, show_progress=False)
                    pos = 0
                    for j in group:
                        out = vectors[pos : pos + len(j.items)]
                        pos += len(j.items)
                        j.future.set_result([_cut(v, j.dim) for v in out] if j.dim != head_dim else out)
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
                    log.exception("model worker failed on a batch of %d jobs", len(group))
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(exc)
            if self.metrics is not None:
                self.metrics.observe_batch(
                    jobs=len(live), inputs=sum(len(j.items) for j in live),
                    tokens=sum(j.n_tokens for j in live), seconds=time.perf_counter() - started,
                    waits=[started - j.enqueued for j in live],
                )

    def _head_dim(self, dim: int) -> int:
        heads = getattr(self.model, "heads", None)
        if not heads:
            return dim
        if dim in heads:
            return dim
        larger = [k for k in heads if k > dim]
        return min(larger) if larger else dim


def _cut(v: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka: the first ``dim`` coordinates, re-normalised (what Model._encode does)."""
    v = v[:, :dim]
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)
