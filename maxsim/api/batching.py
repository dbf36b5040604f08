"""A micro-batching queue in front of the model.

Requests submit already-tokenised texts as one *job* and await its result; a single worker
thread owns the model. With batching on, the worker takes every job waiting in the queue and,
when more requests are on their way, waits up to ``max_wait_ms`` for them (bounded by
``max_batch_inputs`` / ``max_batch_tokens``); then it encodes all their texts in one call, so
concurrent requests share forward passes and throughput grows with concurrency. With batching
off, each job is encoded on its own. Either way the event loop only awaits a future: no model
work ever runs on it.

Two things make every model call cheaper, batching on or off, and both gain from having more
texts in the call:

- **Forward passes planned for little padding and few passes.** The call's texts are sorted by
  length and cut into forward passes by ``plan_passes`` (least padded positions plus a cost per
  pass, which ``PassCost`` learns from the passes themselves); each pass pads only to its own
  longest text. Many requests' texts fill the length range densely and share passes, so they
  waste less padding and pay the per-pass cost fewer times than a lone request. (maxsim's own
  encoder runs its linear layers on real positions only, so there padding costs attention
  alone; the learnt cost per pass is then large against a position's, and the planner takes
  fewer, larger passes.)
- **Identical texts are encoded once.** Texts with the same tokens (e.g. the same passage in two
  requests' rerank candidates) are encoded once and each request gets its own copy of the rows.
  This is not a cache: nothing outlives the call.

When to wait: a request that will encode holds a ``Ticket`` from its arrival (taken by the app's
outer middleware, before the body is read) to the end of its response. The worker waits for
more jobs (at most ``max_wait_ms``) only while some are on their way: requests that arrived and
have not queued their job yet, requests whose answer is being sent (their clients usually come
straight back), or fewer jobs than the previous call had. A lone client's request is encoded at
once. Waiting for the clients whose answers are on their way keeps closed-loop clients from
splitting into two groups that take turns, each with half-size calls.
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

_POLL_S = 0.0005  # how often a waiting worker re-reads the count of announced requests


@dataclass(eq=False)
class _Job:
    items: list[Any]  # TokenizedText
    dim: int
    n_tokens: int
    ticket: Ticket | None = None
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


class Ticket:
    """One request that encodes, from its arrival to the end of its response.

    It counts as *announced* until its job is queued, and as *finishing* from the moment its
    result is ready until its response is sent: a client whose answer is on its way back usually
    sends its next request right after, so the worker may wait a moment for it.
    """

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self._announced = True
        self._finishing = False
        self._closed = False
        with batcher._lock:
            batcher._announced += 1

    def queued(self) -> None:
        b = self._batcher
        with b._lock:
            if self._announced:
                self._announced = False
                b._announced -= 1

    def answered(self) -> None:
        """The request's job is done (called by the worker thread)."""
        b = self._batcher
        with b._lock:
            if not (self._closed or self._finishing):
                self._finishing = True
                b._finishing += 1

    def release(self) -> None:
        """The request ended (its response is sent, or it failed or timed out); idempotent."""
        b = self._batcher
        with b._lock:
            if self._closed:
                return
            self._closed = True
            if self._announced:
                self._announced = False
                b._announced -= 1
            if self._finishing:
                self._finishing = False
                b._finishing -= 1


@dataclass
class CallStats:
    """What one model call did: texts asked for, texts encoded after merging duplicates, real
    tokens encoded, and token slots the forward passes computed (real + padding)."""

    inputs: int = 0
    unique_inputs: int = 0
    tokens: int = 0
    padded_tokens: int = 0


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
        self._lock = threading.Lock()
        self._announced = 0  # requests that arrived and have not queued their job yet
        self._finishing = 0  # requests whose job is done and whose response is not sent yet
        self._last_jobs = 0  # jobs in the previous model call
        self._waited = False  # whether the worker waited for more jobs before this call
        self.pass_cost = PassCost()

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

    @property
    def announced(self) -> int:
        return self._announced

    # ---- submit -----------------------------------------------------------------------------
    async def encode(
        self, items: list[Any], dim: int, timeout: float, ticket: Ticket | None = None
    ) -> list[np.ndarray]:
        """Encode tokenised texts (queries and documents may be mixed); one array per item."""
        try:
            if not items:
                return []
            if self._thread is None:
                raise ApiError(503, "SERVICE_UNAVAILABLE", "the model worker is not running")
            job = _Job(items, int(dim), sum(len(it) for it in items), ticket)
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise ApiError(503, "SERVICE_UNAVAILABLE", "the model queue is full; retry shortly") from None
        finally:
            if ticket is not None:
                ticket.queued()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
        except TimeoutError:
            job.future.cancel()
            raise ApiError(504, "SERVICE_TIMEOUT", f"the model did not answer within {timeout:g} s") from None

    # ---- worker -----------------------------------------------------------------------------
    def _more_expected(self, n_jobs: int) -> bool:
        return self._announced > 0 or self._finishing > 0 or n_jobs < self._last_jobs

    def _take(self) -> list[_Job] | None:
        """Block for one job, then gather more while the batch has room and more are expected."""
        first = self._pending or self._queue.get()
        self._pending = None
        if first is _STOP:
            return None
        jobs = [first]
        self._waited = False
        if not self.settings.enabled:
            return jobs
        s = self.settings
        n_items, n_tokens = len(first.items), first.n_tokens
        deadline = time.perf_counter() + s.max_wait_ms / 1000.0
        while n_items < s.max_batch_inputs and n_tokens < s.max_batch_tokens:
            try:
                job = self._queue.get_nowait()  # already queued: always taken, no waiting
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or not self._more_expected(len(jobs)):
                    break
                self._waited = True
                try:
                    job = self._queue.get(timeout=min(remaining, _POLL_S))
                except queue.Empty:
                    continue
            if (
                job is _STOP
                or n_items + len(job.items) > s.max_batch_inputs
                or n_tokens + job.n_tokens > s.max_batch_tokens
            ):
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
            self._last_jobs = len(live)
            if not live:
                continue
            started = time.perf_counter()
            stats = CallStats()
            # jobs of one head size share a forward pass; the head output is cut per job's dim
            by_head: dict[int, list[_Job]] = defaultdict(list)
            for j in live:
                by_head[self._head_dim(j.dim)].append(j)
            for head_dim, group in by_head.items():
                try:
                    items = [it for j in group for it in j.items]
                    vectors = self.encode_unique(items, head_dim, stats)
                    pos = 0
                    for j in group:
                        out = vectors[pos : pos + len(j.items)]
                        pos += len(j.items)
                        if j.ticket is not None:
                            j.ticket.answered()
                        j.future.set_result([_cut(v, j.dim) for v in out] if j.dim != head_dim else out)
                except BaseException as exc:  # handed to the waiting requests
                    log.exception("model worker failed on a batch of %d jobs", len(group))
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(exc)
            if self.metrics is not None:
                self.metrics.observe_batch(
                    jobs=len(live),
                    inputs=stats.inputs,
                    tokens=sum(j.n_tokens for j in live),
                    seconds=time.perf_counter() - started,
                    waits=[started - j.enqueued for j in live],
                    unique_inputs=stats.unique_inputs,
                    encoded_tokens=stats.tokens,
                    padded_tokens=stats.padded_tokens,
                    waited=self._waited,
                )

    def encode_unique(self, items: list[Any], dim: int, stats: CallStats | None = None) -> list[np.ndarray]:
        """Encode ``items`` in one model call, each distinct token sequence once, in forward passes
        planned to waste little padding; one array per item (a repeated item gets its own copy)."""
        first_of: dict[bytes, int] = {}
        unique: list[Any] = []
        where: list[int] = []
        for it in items:
            key = _key(it)
            k = first_of.get(key)
            if k is None:
                k = first_of[key] = len(unique)
                unique.append(it)
            where.append(k)
        vectors: list[Any] = [None] * len(unique)
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        lengths = [min(len(unique[i]), self._max_positions) for i in order]
        padded = 0
        for a, b in plan_passes(lengths, *self._pass_limits(), overhead=self.pass_cost.overhead()):
            idx = order[a:b]
            started = time.perf_counter()
            for i, v in zip(idx, self.model._encode([unique[i] for i in idx], dim, show_progress=False), strict=True):
                vectors[i] = v
            positions = (b - a) * lengths[b - 1]
            self.pass_cost.add(positions, time.perf_counter() - started)
            padded += positions
        if stats is not None:
            stats.inputs += len(items)
            stats.unique_inputs += len(unique)
            stats.tokens += sum(len(it) for it in unique)
            stats.padded_tokens += padded
        handed = [False] * len(unique)
        out = []
        for k in where:
            out.append(vectors[k] if not handed[k] else vectors[k].copy())
            handed[k] = True
        return out

    @property
    def _max_positions(self) -> int:
        return int(getattr(self.model, "max_positions", 1 << 30))

    def _pass_limits(self) -> tuple[int, int]:
        """Largest forward pass the model takes in one go: (texts, padded tokens)."""
        options = getattr(self.model, "options", None)
        return (int(getattr(options, "max_batch_size", 64)), int(getattr(options, "batch_tokens", 16384)))

    def _head_dim(self, dim: int) -> int:
        heads = getattr(self.model, "heads", None)
        if not heads:
            return dim
        if dim in heads:
            return dim
        larger = [k for k in heads if k > dim]
        return min(larger) if larger else dim


#: What one extra forward pass costs, in token positions, until measured (see ``PassCost``).
PASS_OVERHEAD_TOKENS = 32


class PassCost:
    """What a forward pass costs besides its token positions, learnt from the passes themselves.

    A running least-squares fit, weighted towards recent passes, of
    ``seconds = per_pass + per_position * positions``; ``overhead()`` is ``per_pass /
    per_position`` in positions. On an idle machine a pass costs a few dozen positions' time;
    when the cores are oversubscribed (other processes, or torch's threads waiting for each other
    at every operation) a pass can cost hundreds, and then fewer, larger passes are faster even
    with more padding. Until enough passes were seen, ``PASS_OVERHEAD_TOKENS``.
    """

    def __init__(
        self, decay: float = 0.97, prior: float = PASS_OVERHEAD_TOKENS, lo: float = 8.0, hi: float = 4096.0
    ) -> None:
        self.decay, self.prior, self.lo, self.hi = decay, prior, lo, hi
        self._lock = threading.Lock()
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self._seen = 0

    def add(self, positions: float, seconds: float) -> None:
        d = self.decay
        with self._lock:
            self._w = self._w * d + 1.0
            self._x = self._x * d + positions
            self._y = self._y * d + seconds
            self._xx = self._xx * d + positions * positions
            self._xy = self._xy * d + positions * seconds
            self._seen += 1

    def overhead(self) -> float:
        with self._lock:
            if self._seen < 8:
                return self.prior
            mx, my = self._x / self._w, self._y / self._w
            var = self._xx / self._w - mx * mx
            if var <= 1e-9 * max(mx * mx, 1.0):
                return self.prior
            slope = (self._xy / self._w - mx * my) / var
            if slope <= 0:
                return self.hi
            return min(max((my - slope * mx) / slope, self.lo), self.hi)


def plan_passes(
    lengths: list[int], max_texts: int = 64, max_tokens: int = 16384, overhead: float = PASS_OVERHEAD_TOKENS
) -> list[tuple[int, int]]:
    """Split texts sorted by length into forward passes (contiguous ranges ``[a, b)``) that
    minimise padded token positions plus ``overhead`` per pass. A pass pads to its longest text,
    so one pass over texts of 30 and 500 tokens computes 1,000 positions for 530 real ones.
    Exact dynamic programme over the sorted order, O(n * max_texts).

    >>> plan_passes([30, 32, 500])
    [(0, 2), (2, 3)]
    >>> plan_passes([30, 31, 32])
    [(0, 3)]
    """
    n = len(lengths)
    if n == 0:
        return []
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for b in range(1, n + 1):
        longest = lengths[b - 1]
        for a in range(max(0, b - max_texts), b):
            slots = longest * (b - a)
            if slots > max_tokens and b - a > 1:
                continue
            cost = best[a] + slots + overhead
            if cost < best[b]:
                best[b], cut[b] = cost, a
    passes = []
    b = n
    while b > 0:
        passes.append((cut[b], b))
        b = cut[b]
    return passes[::-1]


def _key(item: Any) -> bytes:
    """Texts with equal keys give equal vectors: same tokens, attention and kept positions."""
    ids = np.ascontiguousarray(item.ids)
    return (
        b"%d|" % len(ids)
        + ids.tobytes()
        + np.packbits(np.asarray(item.attention, dtype=bool)).tobytes()
        + b"|"
        + np.packbits(np.asarray(item.keep, dtype=bool)).tobytes()
    )


def _cut(v: np.ndarray, dim: int) -> np.ndarray:
    """Matryoshka: the first ``dim`` coordinates, re-normalised (what Model._encode does)."""
    v = v[:, :dim]
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)
