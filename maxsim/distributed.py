"""Distributed encoding and index building on Ray (``pip install 'maxsim[distributed]'``).

:func:`build_distributed` (``maxsim index build PATH INPUT --ray-address ADDR --shards N``):

1. The driver encodes a sample (``sample_docs`` documents drawn over the input), trains one
   codec on it and creates a :class:`~maxsim.index.sharded.ShardedIndex` of ``n_shards`` shards that all hold
   that codec.
2. Ray Data reads the input (JSONL and BEIR as text lines, Parquet natively) and an actor pool
   of encoders (one GPU each with ``device="cuda"``, else CPU) encodes it batch by batch.
3. Each encoder sends every document to the writer actor of the shard that holds its id (one
   actor per shard, the shard's single writer), which compresses the vectors with the shared
   codec and commits them durably (one commit per batch) before the encoder's task returns.

Failures are Ray's to handle: a dead encoder or writer actor is restarted and its task retried
(``max_restarts``/``max_task_retries``). A retried batch may reach a writer that already
committed part of it; writers skip ids they hold, so no document is written twice, and since a
batch's task only succeeds once every shard has committed its part, none is lost. Running the
same build again after a crash re-reads the input and writes only what is missing.

Shard directories must be reachable from the nodes that run the writers (a shared filesystem on
a real cluster; see docs/scale.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from maxsim.build import (
    SAMPLE_DOCS,
    beir_record,
    count_documents,
    encode_sample,
    encoded_docs,
    input_kind,
)
from maxsim.documents import read_documents
from maxsim.errors import InvalidArgumentError, MaxsimError
from maxsim.index import storage
from maxsim.index.build import (
    BuildProgress,
    ChunkWriter,
    build_progress,
    install_codec,
    train_shared_codec,
)
from maxsim.index.sharded import ShardedIndex, is_sharded, shard_dir, shard_of
from maxsim.store import Encoder

#: Documents per encoder task (and per writer commit, split by shard).
BATCH_DOCS = 256


class DistributedBuildError(MaxsimError, RuntimeError):
    """The distributed build could not run (no Ray, a bad cluster address, a worker that kept failing)."""


def _ray():
    try:
        import ray
    except ImportError:
        raise DistributedBuildError("distributed builds need Ray: pip install 'maxsim[distributed]'") from None
    return ray


def connect(address: str | None = None) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``), or start
    a local one when ``address`` is None and none is running."""
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise DistributedBuildError(f"cannot connect to the Ray cluster at {address!r}: {e}") from None


# ---- actors -------------------------------------------------------------------------------------


class ShardWriter:
    """The single writer of one shard: compresses with the shared codec, commits each batch."""

    def __init__(self, path: str):
        from maxsim.index import Index

        self.index = Index.open(path, auto_optimize=False)
        self.progress = build_progress(self.index) or BuildProgress()
        self.writer = ChunkWriter(self.index, self.progress, skip_existing=True)

    def write(
        self, ids: list[str], vectors: list[np.ndarray], texts: list[str | None], metas: list[dict | None]
    ) -> int:
        from maxsim.index.build import VectorDoc

        before = self.index.count()
        self.writer.add(
            [VectorDoc(i, v.astype(np.float32), t, m) for i, v, t, m in zip(ids, vectors, texts, metas, strict=True)]
        )
        self.writer.commit()
        return self.index.count() - before

    def finish(self) -> int:
        """Merge the per-batch segments into full-size ones, mark the build finished; returns the count."""
        idx = self.index
        while True:
            snap = idx._refresh()
            small = [s for s in snap.segments if s.n_docs < storage.MAX_SEGMENT_DOCS // 2]
            group, docs = [], 0
            for s in small:
                if docs + s.n_docs > storage.MAX_SEGMENT_DOCS:
                    break
                group.append(s)
                docs += s.n_docs
            if len(group) < 2:
                break
            idx._rewrite(snap, group)
        self.writer.commit(finished=True)
        return idx.count()

    def close(self) -> None:
        self.index.close()


class Encode:
    """Ray Data actor: encodes a batch of rows, hands each document to its shard's writer."""

    def __init__(self, model_factory: Callable[[], Encoder], dim: int, device: str, writers: list[Any], kind: str):
        self.model = _on_device(model_factory(), device)
        self.dim, self.writers, self.kind = dim, writers, kind

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ray = _ray()
        records = rows_to_records(batch, self.kind)
        by_shard: dict[int, list[tuple[Any, ...]]] = {}
        for doc in encoded_docs(self.model, iter(records), self.dim):
            by_shard.setdefault(shard_of(doc.id, len(self.writers)), []).append(
                (doc.id, doc.vectors.astype(np.float16), doc.text, doc.metadata)
            )
        refs = [self.writers[s].write.remote(*map(list, zip(*docs, strict=True))) for s, docs in by_shard.items()]
        written = sum(ray.get(refs))
        return {"documents": np.array([len(records)]), "written": np.array([written])}


def rows_to_records(batch: dict[str, np.ndarray], kind: str) -> list[dict[str, Any]]:
    """Ray Data rows -> ``{"id", "text", "metadata"}`` records, by the rules of :mod:`maxsim.build`."""
    from maxsim.build import parquet_record

    if kind == "jsonl":
        return list(read_documents(iter(batch["text"].tolist()), "<ray input>", content_ids=True))
    if kind == "beir":
        return [beir_record(line, "<ray input>") for line in batch["text"].tolist() if line.strip()]
    cols = list(batch)
    n = len(batch[cols[0]])
    return [parquet_record({c: _plain(batch[c][i]) for c in cols}, "<ray input>") for i in range(n)]


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _on_device(model: Encoder, device: str) -> Encoder:
    if device == "cpu":
        return model
    import torch

    if not torch.cuda.is_available():
        raise DistributedBuildError(f"device {device!r} asked for, but this worker has no CUDA device")
    to = getattr(model, "to", None)
    if to is None:
        raise DistributedBuildError(f"model {getattr(model, 'name', model)!r} cannot be moved to {device!r}")
    return to(device)


def _default_factory(name: str | None, threads: int | None) -> Callable[[], Encoder]:
    def make() -> Encoder:
        from maxsim.models.loading import load

        return load(name, num_threads=threads) if name else load(num_threads=threads)

    return make


# ---- the build ----------------------------------------------------------------------------------


def read_dataset(input: str | os.PathLike) -> tuple[Any, str]:  # noqa: A002
    """The input as a Ray Dataset (text lines for JSONL and BEIR, Parquet columns) and its kind."""
    import ray.data

    kind = input_kind(input)
    p = Path(input).resolve()
    if kind == "parquet":
        return ray.data.read_parquet(str(p)), kind
    src = p / "corpus.jsonl" if kind == "beir" else p
    return ray.data.read_text(str(src), drop_empty_lines=True), kind


def build_distributed(
    path: str | os.PathLike,
    input: str | os.PathLike,
    *,  # noqa: A002
    ray_address: str | None = None,
    n_shards: int = 2,
    device: str = "cpu",
    model: str | None = None,
    model_factory: Callable[[], Encoder] | None = None,
    dim: int = 128,
    nbits: int = 2,
    refine_bits: int = 0,
    workers: int | None = None,
    batch_docs: int = BATCH_DOCS,
    sample_docs: int = SAMPLE_DOCS,
    threads_per_worker: int | None = None,
    progress: bool = True,
) -> ShardedIndex:
    """Build a sharded index at ``path`` from ``input`` on a Ray cluster (see the module docstring).

    ``workers``: encoder actors (default: the cluster's GPUs with ``device="cuda"``, else its
    CPUs minus one for reading, at least 1). ``model_factory`` (a picklable callable returning an
    encoder) replaces ``model`` (a name; default the offline default model). Re-running a build
    that was interrupted writes only the documents that are missing.
    """
    if device not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise InvalidArgumentError(f"n_shards must be a positive integer, got {n_shards!r}")
    total = count_documents(input)
    if total == 0:
        raise InvalidArgumentError(f"{input} holds no documents")
    ray = _ray()
    connect(ray_address)
    factory = model_factory or _default_factory(model, threads_per_worker)
    root = Path(path).resolve()
    if is_sharded(root):
        with ShardedIndex.open(root) as existing:
            if existing.n_shards != n_shards:
                raise InvalidArgumentError(f"{root} has {existing.n_shards} shards, not {n_shards}")
            if existing.shards[0]._refresh().codec is None:
                raise InvalidArgumentError(f"{root} is a sharded index without a codec; remove it and build again")
    else:
        sample_model = factory()
        _, sample, expected = encode_sample(sample_model, input, total, sample_docs, dim)
        codec = train_shared_codec(sample, expected, nbits, refine_bits=refine_bits)
        sharded = ShardedIndex.create(
            root, n_shards, model=sample_model, dim=dim, nbits=nbits, refine_bits=refine_bits
        )  # records its name
        try:
            for s in sharded.shards:
                install_codec(
                    s,
                    codec,
                    expected // n_shards,
                    BuildProgress(extra={"distributed": True}),
                )
        finally:
            sharded.close()
            del sample_model
    resources = ray.cluster_resources()
    if workers is None:
        # one CPU stays free for Ray Data's read tasks
        avail = int(resources.get("GPU", 0)) if device == "cuda" else int(resources.get("CPU", 1)) - 1
        workers = max(1, avail)
    # writers reserve no CPU: they hold no slot the encoders or the readers wait for (a writer
    # with a CPU reserved could starve the read tasks, and the pipeline would stall)
    writer_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(ShardWriter)
    writers = [writer_cls.remote(str(shard_dir(root, i))) for i in range(n_shards)]
    try:
        ds, kind = read_dataset(input)
        encoded = ds.map_batches(
            Encode,
            batch_size=batch_docs,
            concurrency=workers,
            batch_format="numpy",
            fn_constructor_kwargs={
                "model_factory": factory,
                "dim": dim,
                "device": device,
                "writers": writers,
                "kind": kind,
            },
            num_gpus=1 if device == "cuda" else 0,
            num_cpus=1 if device == "cpu" else 0,
            max_restarts=-1,
            max_task_retries=-1,
        )
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total, desc=f"encode+write ({workers} workers, {n_shards} shards)", unit="doc", disable=not progress
        )
        for out in encoded.iter_batches(batch_size=None, batch_format="numpy"):
            bar.update(int(out["documents"].sum()))
        bar.close()
        counts = ray.get([w.finish.remote() for w in writers])
        ray.get([w.close.remote() for w in writers])
    except Exception as e:
        if isinstance(e, MaxsimError):
            raise
        raise DistributedBuildError(f"the distributed build failed: {e}") from e
    finally:
        for w in writers:
            ray.kill(w)
    result = ShardedIndex.open(root)
    if sum(counts) != result.count():
        raise DistributedBuildError(f"writers report {sum(counts)} documents, the shards hold {result.count()}")
    return result


def encode_throughput(
    texts: list[str],
    *,
    workers: int,
    model: str | None = None,
    dim: int = 128,
    batch_docs: int = BATCH_DOCS,
    threads_per_worker: int | None = 1,
) -> dict:
    """Tokens/s of encoding ``texts`` on ``workers`` Ray actors (no index): for bench/scale.py."""
    import time

    import ray.data

    ray = _ray()
    factory = _default_factory(model, threads_per_worker)

    class _Count:
        def __init__(self) -> None:
            self.model = factory()

        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            vecs = self.model.encode_documents(batch["text"].tolist(), dim=dim)
            return {"tokens": np.array([sum(len(v) for v in vecs)])}

    ds = ray.data.from_items([{"text": t} for t in texts])
    t0 = time.perf_counter()
    tokens = 0
    for out in ds.map_batches(
        _Count, batch_size=batch_docs, concurrency=workers, batch_format="numpy", num_cpus=1
    ).iter_batches(batch_size=None, batch_format="numpy"):
        tokens += int(out["tokens"].sum())
    seconds = time.perf_counter() - t0
    return {"workers": workers, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}
