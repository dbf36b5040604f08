"""The Ray half of bench/scale.py: a 2-shard build on a 2-node local cluster, and encoder throughput.

* ``stage_ray``: the synthetic collection (the same documents as the one-machine build) built
  into a 2-shard index on a ``ray.cluster_utils.Cluster`` of two nodes (one CPU each): Ray Data
  generates the blocks (``range`` over block numbers), two writer actors (one per shard) compress
  with the shared codec and commit. Wall time and the peak RSS summed over the driver and the
  Ray processes (sampled every second).
* ``stage_encode``: document tokens/s of the default model on real passages
  (../shared/data/squad-v1.1-en, all 1,827, so that starting the Ray workers weighs little): one
  process, then Ray with 1 and 2 workers, in the same run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from bench.scale import DIM, Synthetic, dir_bytes, load_json, save_json

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "squad-v1.1-en"


class RssSampler:
    """Peak of the summed RSS of this process and its descendants (the Ray cluster), sampled each second."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(1.0):
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def stage_ray(n: int, work: Path, nbits: int, n_shards: int = 2) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from maxsim.index.build import BuildProgress, install_codec, train_shared_codec, training_sample
    from maxsim.index.sharded import ShardedIndex, shard_dir, shard_of

    rec_path = work / f"{n}" / f"ray-build-{nbits}bit.json"
    rec = load_json(rec_path)
    if rec.get("done"):
        return rec
    out = work / f"{n}" / f"ray-{nbits}bit"
    corpus = Synthetic(n)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    t0 = time.time()
    try:
        with RssSampler() as rss:
            if not out.exists():
                # the sample the one-machine build draws: documents spread over the collection
                sample = training_sample(corpus.docs, dim=DIM, expected_tokens=corpus.expected_tokens(), total_docs=n)
                codec = train_shared_codec(sample, corpus.expected_tokens(), nbits)
                del sample
                sharded = ShardedIndex.create(out, n_shards, dim=DIM, nbits=nbits)
                for s in sharded.shards:
                    install_codec(s, codec, corpus.expected_tokens() // n_shards, BuildProgress(extra={"ray": True}))
                sharded.close()
            from maxsim.distributed import ShardWriter

            writer_cls = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(ShardWriter)
            writers = [writer_cls.remote(str(shard_dir(out, i))) for i in range(n_shards)]

            def write_block(row: dict) -> dict:
                b = int(row["id"])
                x, off = _corpus(n).block(b)  # built once per Ray worker, not shipped with each task
                by: dict[int, list] = {}
                for j in range(len(off) - 1):
                    i = f"doc{b * 1024 + j:08d}"
                    by.setdefault(shard_of(i, n_shards), []).append(
                        (i, x[off[j] : off[j + 1]].astype(np.float16), None, None)
                    )
                written = sum(
                    ray.get([writers[s].write.remote(*map(list, zip(*d, strict=True))) for s, d in by.items()])
                )
                return {"id": b, "written": written}

            done = 0
            for row in ray.data.range(corpus.n_blocks).map(write_block, num_cpus=1).iter_rows():
                done += 1
                if done % 50 == 0:
                    print(f"ray build {n}: {done}/{corpus.n_blocks} blocks", flush=True)
            ray.get([w.finish.remote() for w in writers])
            ray.get([w.close.remote() for w in writers])
            for w in writers:
                ray.kill(w)
    finally:
        ray.shutdown()
        cluster.shutdown()
    with ShardedIndex.open(out, readonly=True) as idx:
        info = idx.info()
    rec.update(
        done=True,
        build_s=time.time() - t0,
        peak_rss_bytes=rss.peak,
        tokens=info["tokens"],
        docs=info["documents"],
        bytes_on_disk=dir_bytes(out),
        bytes_per_token=dir_bytes(out) / info["tokens"],
        shards=n_shards,
        nodes=2,
        load_avg=os.getloadavg(),
    )
    save_json(rec_path, rec)
    return rec


_CORPORA: dict[int, Synthetic] = {}


def _corpus(n: int) -> Synthetic:
    if n not in _CORPORA:
        _CORPORA[n] = Synthetic(n)
    return _CORPORA[n]


def child_ray_build(n: int, out: Path, nbits: int) -> None:
    stage_ray(n, out.parent.parent, nbits)


def stage_encode(work: Path, n_texts: int = 1827) -> dict:
    """Tokens/s of the default model: one process vs Ray with 1 and 2 workers (same texts, same run)."""
    import ray
    from ray.cluster_utils import Cluster

    import maxsim
    from maxsim.distributed import encode_throughput

    rec_path = work / "encode.json"
    rec = load_json(rec_path)
    if rec.get("done"):
        return rec
    texts = [json.loads(line)["text"] for line in open(SHARED / "corpus.jsonl", encoding="utf-8")][:n_texts]
    model = maxsim.load(num_threads=1)
    model.encode_documents(texts[:8], dim=DIM)
    t0 = time.perf_counter()
    tokens = sum(len(v) for v in model.encode_documents(texts, dim=DIM))
    single = time.perf_counter() - t0
    runs = {"single process, 1 thread": {"tokens": tokens, "seconds": single, "tokens_per_s": tokens / single}}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        for workers in (1, 2):
            runs[f"ray, {workers} worker(s)"] = encode_throughput(texts, workers=workers, threads_per_worker=1)
    finally:
        ray.shutdown()
        cluster.shutdown()
    rec = {
        "done": True,
        "texts": n_texts,
        "runs": runs,
        "load_avg": os.getloadavg(),
        "note": "Ray times include starting the workers and their model loads (about 5 s each)",
    }
    save_json(rec_path, rec)
    return rec
