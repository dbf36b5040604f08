"""Streaming, bounded-memory, resumable build of an :class:`~maxsim.index.Index` from token vectors.

The centroids are trained once on a sample; documents then arrive one at a time from a source,
are compressed in blocks of ``encode_tokens`` token vectors (only the codes are kept), and every
``chunk_docs`` documents become one segment registered by one catalog commit. That commit also
records the build's progress (``state.build``: documents and tokens committed), so a build killed
at any moment resumes from its last committed chunk: the source is re-opened at that document.

Peak memory is one chunk's codes (about 34 bytes per token at 2 bits, dim 128: 370 MB for a
65,536-document chunk of 165 tokens on average), one encode block of float32 vectors and the
training sample; nothing grows with the collection. This is the storage layer: it never loads
a model (the text build in :mod:`maxsim.build` encodes, then feeds this).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from maxsim.compression.kmeans import MAX_CENTROIDS, choose_n_centroids
from maxsim.compression.residual import ResidualCodec, train_codec
from maxsim.errors import DuplicateIdError, InvalidArgumentError
from maxsim.index import storage
from maxsim.index.catalog import Catalog
from maxsim.index.index import Index
from maxsim.index.maintenance import MAX_TRAIN_TOKENS, TRAIN_TOKENS_PER_CENTROID
from maxsim.store import check_ids, check_metadata, check_vectors

#: Documents per committed chunk (one segment each): the most a segment holds.
CHUNK_DOCS = storage.MAX_SEGMENT_DOCS
#: Token vectors compressed at a time (float32: 256 MB at dim 128).
ENCODE_TOKENS = 1 << 19
#: Training sample when the collection's size is not known in advance.
DEFAULT_TRAIN_TOKENS = 1 << 18
#: Directory (in the index) of the centroid training's finished steps until the codec is installed.
KMEANS_CHECKPOINT = "build-kmeans"
#: Catalog state key holding the build's progress (JSON).
BUILD_STATE = "build"


@dataclass
class VectorDoc:
    """One document of a build: its id, token vectors [n_tokens, dim], text and metadata."""

    id: str
    vectors: np.ndarray
    text: str | None = None
    metadata: Mapping[str, Any] | None = None


#: A source re-opened at a document position: ``source(skip)`` yields the documents from ``skip`` on.
Source = Callable[[int], Iterable[VectorDoc]]


@dataclass
class BuildProgress:
    docs: int = 0
    tokens: int = 0
    chunks: int = 0
    finished: bool = False
    extra: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"docs": self.docs, "tokens": self.tokens, "chunks": self.chunks, "finished": self.finished, **self.extra}
        )

    @classmethod
    def from_json(cls, text: str | None) -> BuildProgress | None:
        if not text:
            return None
        d = json.loads(text)
        return cls(int(d.pop("docs")), int(d.pop("tokens")), int(d.pop("chunks")), bool(d.pop("finished")), d)


def build_progress(index: Index) -> BuildProgress | None:
    """The build progress recorded in ``index``'s catalog, or None for an index not built by this module."""
    rows = index._catalog.query("SELECT value FROM state WHERE key = ?", (BUILD_STATE,))
    return BuildProgress.from_json(rows[0][0]) if rows else None


def sample_positions(total: int, n: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``min(n, total)`` documents drawn uniformly from ``range(total)``.

    The centroids are trained on documents spread over the whole collection, never on its first
    ones: a collection sorted by language, source or date would otherwise get centroids for its
    head only (on the scale benchmark's 1M documents, the first 4M tokens hold 36% of the
    collection's topics)."""
    if total <= 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False)).astype(np.int64)


def at_positions(items: Iterable[Any], positions: np.ndarray) -> Iterator[Any]:
    """The items of ``items`` at the sorted ``positions``; stops reading after the last one."""
    want = iter(int(p) for p in positions)
    nxt = next(want, None)
    for i, item in enumerate(items):
        if nxt is None:
            return
        if i == nxt:
            yield item
            nxt = next(want, None)


def sample_tokens(docs: Iterable[VectorDoc], n_tokens: int) -> np.ndarray:
    """The token vectors of ``docs`` in order, up to ``n_tokens`` rows (float32, unit rows),
    filled into one preallocated array (no second copy of the sample)."""
    out: np.ndarray | None = None
    have = 0
    for doc in docs:
        v = np.asarray(doc.vectors)
        if out is None:
            out = np.empty((n_tokens, v.shape[1]), dtype=np.float32)
        take = min(len(v), n_tokens - have)
        out[have : have + take] = v[:take]
        have += take
        if have >= n_tokens:
            break
    if out is None or have == 0:
        raise InvalidArgumentError("build: the source yielded no documents to train the centroids on")
    out = out[:have]
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
    return out


def training_sample(
    source: Source,
    *,
    dim: int,
    expected_tokens: int | None = None,
    total_docs: int | None = None,
    train_tokens: int | None = None,
    n_centroids: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The token vectors a build trains its centroids on: ``train_tokens`` of them (default 64 per
    centroid of ``n_centroids`` or of the count chosen for ``expected_tokens``, at most
    ``MAX_TRAIN_TOKENS``), from documents drawn over the whole source when ``total_docs`` and
    ``expected_tokens`` are known (one pass reading it), else from its first documents."""
    if train_tokens is None and (expected_tokens or n_centroids):
        k = n_centroids or choose_n_centroids(expected_tokens or 0, storage.centroid_bytes(storage.FORMAT_VERSION, dim))
        want = min(TRAIN_TOKENS_PER_CENTROID * k, MAX_TRAIN_TOKENS)
    else:
        want = train_tokens or DEFAULT_TRAIN_TOKENS
    if total_docs and expected_tokens:
        n_docs = math.ceil(want / max(1.0, expected_tokens / total_docs))
        return sample_tokens(at_positions(source(0), sample_positions(total_docs, n_docs, seed)), want)
    return sample_tokens(source(0), want)


def check_n_centroids(n_centroids: Any) -> int:
    if isinstance(n_centroids, bool) or not isinstance(n_centroids, int) or not 1 <= n_centroids <= MAX_CENTROIDS:
        raise InvalidArgumentError(f"n_centroids must be an integer in 1..{MAX_CENTROIDS}, got {n_centroids!r}")
    return n_centroids


def train_shared_codec(
    sample: np.ndarray,
    expected_tokens: int,
    nbits: int,
    *,
    seed: int = 0,
    refine_bits: int = 0,
    checkpoint: str | os.PathLike | None = None,
    n_centroids: int | None = None,
) -> ResidualCodec:
    """A codec for a collection of about ``expected_tokens`` tokens trained on ``sample`` (format 3,
    or 4 with a refinement plane of ``refine_bits``); ``checkpoint`` as in :func:`train_codec`.
    ``n_centroids`` replaces the count :func:`choose_n_centroids` picks (at most ``MAX_CENTROIDS``)."""
    if n_centroids is not None:
        k = check_n_centroids(n_centroids)
    else:
        k = choose_n_centroids(
            max(expected_tokens, len(sample)), storage.centroid_bytes(storage.FORMAT_VERSION, sample.shape[1])
        )
    k = min(k, max(1, len(sample) // 8))
    return train_codec(
        sample,
        k,
        nbits,
        seed=seed,
        table_bits=storage.table_bits(storage.FORMAT_VERSION),
        refine_bits=refine_bits,
        checkpoint=checkpoint,
    )


def install_codec(index: Index, codec: ResidualCodec, tokens_trained: int, progress: BuildProgress | None) -> None:
    """Make ``codec`` the codec of the empty ``index`` and start its build record (one commit)."""
    index._acquire_writer()
    if index.count() or index._refresh().segments:
        raise InvalidArgumentError(f"build: {index.path} already holds documents; build into a new index")
    if codec.refine_bits != index.refine_bits:
        raise InvalidArgumentError(
            f"build: the codec has refine_bits {codec.refine_bits}, the index {index.path} {index.refine_bits}"
        )
    name = storage.write_codec(index.path, codec, tokens_trained, index._format_version)
    try:
        with index._catalog.transaction() as conn:
            Catalog.set_state(conn, codec=name, tokens_trained=int(tokens_trained))
            if progress is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (BUILD_STATE, progress.to_json())
                )
            Catalog.bump_version(conn)
    except BaseException:
        storage.remove_dir(index.path / name)
        raise


class ChunkWriter:
    """Compresses documents block by block and commits a segment every ``chunk_docs`` documents."""

    def __init__(
        self,
        index: Index,
        progress: BuildProgress,
        *,
        chunk_docs: int = CHUNK_DOCS,
        encode_tokens: int = ENCODE_TOKENS,
        skip_existing: bool = False,
    ):
        if not 1 <= chunk_docs <= storage.MAX_SEGMENT_DOCS:
            raise InvalidArgumentError(f"chunk_docs must be in 1..{storage.MAX_SEGMENT_DOCS}, got {chunk_docs}")
        index._acquire_writer()
        snap = index._refresh()
        if snap.codec is None:
            raise InvalidArgumentError(f"build: {index.path} has no codec yet (install_codec first)")
        self.index, self.progress = index, progress
        self.codec_name, self.codec = snap.codec_name, snap.codec
        self.chunk_docs, self.encode_tokens, self.skip_existing = chunk_docs, encode_tokens, skip_existing
        self._reset()
        self._pending: list[np.ndarray] = []
        self._pending_tokens = 0

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.texts: list[str | None] = []
        self.metas: list[dict | None] = []
        self.lengths: list[int] = []
        self.codes: list[np.ndarray] = []
        self.packed: list[np.ndarray] = []
        self.refine: list[np.ndarray] = []  # the refinement plane, in an index that has one

    def add(self, docs: list[VectorDoc]) -> None:
        """Queue documents; a full chunk is committed on the way."""
        for doc in docs:
            self.ids.append(doc.id)
            self.texts.append(doc.text)
            self.metas.append(None if doc.metadata is None else dict(doc.metadata))
            self.lengths.append(len(doc.vectors))
            self._pending.append(doc.vectors)
            self._pending_tokens += len(doc.vectors)
            if self._pending_tokens >= self.encode_tokens:
                self._compress()
            if len(self.ids) >= self.chunk_docs:
                self.commit()

    def _compress(self) -> None:
        if not self._pending:
            return
        c, p, r = self.codec.encode_planes(np.concatenate(check_vectors(self._pending, self.codec.dim, "embeddings")))
        self.codes.append(c)
        self.packed.append(p)
        if r is not None:
            self.refine.append(r)
        self._pending, self._pending_tokens = [], 0

    def commit(self, *, finished: bool = False) -> None:
        """Write the queued documents as one segment and register it, with the progress, in one commit."""
        self._compress()
        idx = self.index
        n_input = len(self.ids)
        if n_input:
            ids = check_ids(self.ids, n_input)
            metas = check_metadata(self.metas, n_input)
            codes, packed = np.concatenate(self.codes), np.concatenate(self.packed)
            refine = np.concatenate(self.refine) if self.refine else None
            lengths = np.asarray(self.lengths, dtype=np.int64)
            offsets = np.zeros(n_input + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            keep = np.ones(n_input, dtype=bool)
            if self.skip_existing:  # a retried batch: its documents may already be committed
                with idx._catalog.transaction(immediate=False) as conn:
                    have = Catalog.docnos_of(conn, ids)
                keep = np.array([i not in have for i in ids], dtype=bool)
            sel = np.flatnonzero(keep)
            if len(sel) < n_input:
                tok = (
                    np.concatenate([np.arange(offsets[j], offsets[j + 1]) for j in sel])
                    if len(sel)
                    else np.zeros(0, int)
                )
                codes, packed, lengths = codes[tok], packed[tok], lengths[sel]
                refine = None if refine is None else refine[tok]
                offsets = np.zeros(len(sel) + 1, dtype=np.int64)
                np.cumsum(lengths, out=offsets[1:])
                ids = [ids[j] for j in sel]
                metas = [metas[j] for j in sel]
                texts = [self.texts[j] for j in sel]
            else:
                texts = self.texts
        self.progress.docs += n_input
        self.progress.tokens += int(sum(self.lengths))
        self.progress.chunks += 1 if n_input else 0
        self.progress.finished = finished
        name = None
        try:
            with idx._catalog.transaction() as conn:
                state = Catalog.get_state(conn)
                if n_input and len(ids):
                    first = int(state["next_docno"])
                    docnos = np.arange(first, first + len(ids), dtype=np.int64)
                    existing = Catalog.docnos_of(conn, ids)
                    if existing:
                        raise DuplicateIdError(f"ids already in the index: {sorted(existing)[:5]!r}")
                    assert self.codec_name is not None and self.codec is not None
                    name = storage.write_segment(
                        idx.path,
                        self.codec_name,
                        self.codec.n_centroids,
                        codes,
                        packed,
                        offsets,
                        docnos,
                        pack=idx._pack_ids,
                        refine=refine,
                    )
                    Catalog.insert_docs(conn, docnos.tolist(), ids, texts, metas, lengths.tolist())
                    conn.execute(
                        "INSERT INTO segments(name, codec, n_docs, n_tokens) VALUES (?, ?, ?, ?)",
                        (name, self.codec_name, len(ids), int(offsets[-1])),
                    )
                    Catalog.set_state(conn, next_docno=first + len(ids))
                if finished:  # later writes re-cluster only once the collection grows past what it is now
                    live = conn.execute("SELECT COALESCE(SUM(n_tokens), 0) FROM docs").fetchone()[0]
                    Catalog.set_state(conn, tokens_trained=max(int(live), int(state["tokens_trained"])))
                conn.execute(
                    "INSERT OR REPLACE INTO state(key, value) VALUES (?, ?)", (BUILD_STATE, self.progress.to_json())
                )
                Catalog.bump_version(conn)
        except BaseException:
            if name is not None:
                storage.remove_dir(idx.path / name)
            self.progress.docs -= n_input
            self.progress.tokens -= int(sum(self.lengths))
            raise
        self._reset()


def build_from_vectors(
    path: str | Path,
    source: Source,
    *,
    dim: int = 128,
    nbits: int = 2,
    refine_bits: int = 0,
    expected_tokens: int | None = None,
    train_tokens: int | None = None,
    sample: np.ndarray | None = None,
    chunk_docs: int = CHUNK_DOCS,
    encode_tokens: int = ENCODE_TOKENS,
    progress: bool = True,
    seed: int = 0,
    total_docs: int | None = None,
    n_centroids: int | None = None,
) -> Index:
    """Build (or resume building) an index at ``path`` from a re-openable source of documents.

    ``source(skip)`` yields :class:`VectorDoc` from document ``skip`` on, in the same order every
    time. The centroids are trained on ``sample`` (float [n, dim]) or on ``train_tokens``
    tokens of the source (default: 64 per centroid chosen for ``expected_tokens``, at most
    ``MAX_TRAIN_TOKENS``), taken from documents drawn over the whole source when
    ``total_docs`` and ``expected_tokens`` are given (one extra pass reading the source), else
    from its first documents. An existing unfinished build at ``path`` resumes after its last
    committed chunk; a finished one is returned as is. Returns the open index (auto_optimize off
    during the build, the catalog's ``tokens_trained`` set to the final size). ``refine_bits``
    adds a second residual plane (as in :meth:`Index.create`); ``n_centroids`` fixes the number
    of centroids instead of deriving it from ``expected_tokens`` (the sample is then 64 tokens
    per centroid unless ``train_tokens`` says otherwise).
    """
    if n_centroids is not None:
        check_n_centroids(n_centroids)
    root = Path(path)
    if (root / storage.MANIFEST).exists():
        index = Index.open(root, auto_optimize=False)
        state = build_progress(index)
        # A build killed before its codec was installed leaves an empty index with no build
        # record (killed while sampling or in k-means): it starts over, keeping finished k-means
        # steps. Anything holding a codec or documents without a record was not made here.
        if state is None and (index._refresh().codec is not None or index.count()):
            index.close()
            raise InvalidArgumentError(f"build: {root} is an index that was not made by a build; build into a new path")
        if state is None and (index.dim, index.nbits, index.refine_bits) != (dim, nbits, refine_bits):
            found = (index.dim, index.nbits, index.refine_bits)
            index.close()
            raise InvalidArgumentError(
                f"build: {root} is an empty index of dim/nbits/refine_bits {found}, not {(dim, nbits, refine_bits)}; "
                "build into a new path"
            )
    else:
        index = Index.create(root, dim=dim, nbits=nbits, auto_optimize=False, refine_bits=refine_bits)
        state = None
    try:
        if state is None or index._refresh().codec is None:
            if sample is not None:
                x = np.asarray(sample, dtype=np.float32)
            else:
                x = training_sample(
                    source,
                    dim=dim,
                    expected_tokens=expected_tokens,
                    total_docs=total_docs,
                    train_tokens=train_tokens,
                    n_centroids=n_centroids,
                    seed=seed,
                )
            steps = root / KMEANS_CHECKPOINT  # a build killed during k-means keeps its finished steps
            codec = train_shared_codec(
                x,
                expected_tokens or len(x),
                nbits,
                seed=seed,
                refine_bits=index.refine_bits,
                checkpoint=steps,
                n_centroids=n_centroids,
            )
            trained_on = expected_tokens or len(x)
            del x  # the sample is not held during the chunks
            state = BuildProgress(extra={"expected_tokens": expected_tokens, "chunk_docs": chunk_docs})
            install_codec(index, codec, trained_on, state)
            shutil.rmtree(steps, ignore_errors=True)
        if state.finished:
            return index
        writer = ChunkWriter(index, state, chunk_docs=chunk_docs, encode_tokens=encode_tokens)
        bar = tqdm(
            total=total_docs,
            initial=state.docs,
            desc="build",
            unit="doc",
            disable=not progress,
            mininterval=2,
            smoothing=0.05,
        )
        for doc in source(state.docs):
            writer.add([doc])
            bar.update(1)
        writer.commit(finished=True)
        bar.close()
        return index
    except BaseException:
        index.close()
        raise


def batched(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """Lists of up to ``n`` consecutive items of ``it``."""
    buf: list[Any] = []
    for x in it:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf
