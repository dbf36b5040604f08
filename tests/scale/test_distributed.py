"""Distributed build and search on a local 2-node Ray cluster (ray.cluster_utils.Cluster)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from maxsim.build import build  # noqa: E402
from maxsim.distributed import build_distributed  # noqa: E402
from maxsim.index import SearchConfig  # noqa: E402
from maxsim.index.sharded import ShardedIndex  # noqa: E402

N_DOCS = 40


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.add_node(num_cpus=2)
    ray.init(address=c.address, log_to_driver=False)
    # the workers need CrashOnce, which lives in this test module: ship it by value
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    topics = ["rivers and lakes", "cats and dogs", "stars and planets", "bread and cheese"]
    path = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    rows = [
        {
            "id": f"doc{i}",
            "text": f"Passage {i} is about {topics[i % 4]}, with detail number {i}.",
            "metadata": {"topic": i % 4, "odd": bool(i % 2)},
        }
        for i in range(N_DOCS)
    ]
    rows[7]["text"] += " KILLME"  # the encoder that meets this document dies once (see CrashOnce)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


class CrashOnce:
    """A model factory whose encoder kills its own worker process (os._exit) the first time it
    meets a marked text: the batch must be retried by Ray and written exactly once."""

    def __init__(self, marker: str):
        self.marker = marker
        self.driver_pid = os.getpid()  # the driver encodes the training sample: it must not die

    def __call__(self):
        import maxsim

        model, marker, driver = maxsim.load(), self.marker, self.driver_pid

        class Dying:
            name = model.name

            def encode_documents(self, texts, dim=None):
                if any("KILLME" in t for t in texts) and os.getpid() != driver and not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)
                return model.encode_documents(texts, dim=dim)

        return Dying()


@pytest.mark.slow
def test_distributed_build_equals_local_build_and_survives_a_killed_worker(cluster, corpus, tmp_path, default_model):
    marker = tmp_path / "killed-once"
    with build(tmp_path / "local", corpus, model=default_model, progress=False) as local:
        ids = [f"doc{i}" for i in range(N_DOCS)]
        expected = local.get(ids)
        local_top = [h["id"] for h in local.search("stars and planets number 6", k=3)[0]]
    dist = build_distributed(
        tmp_path / "dist",
        corpus,
        ray_address=cluster.address,
        n_shards=2,
        workers=2,
        batch_docs=8,
        sample_docs=N_DOCS,
        model_factory=CrashOnce(str(marker)),
        progress=False,
    )
    with dist:
        assert marker.exists()  # a worker really died mid-build
        assert dist.count() == N_DOCS  # nothing lost, nothing written twice
        assert sorted(r[0] for s in dist.shards for r in s._catalog.query("SELECT id FROM docs")) == sorted(ids)
        assert dist.get(ids) == expected
        assert all(n > 0 for n in dist.info()["documents_per_shard"])
        assert dist.model_name == default_model.name
        dist.model = default_model
        assert [h["id"] for h in dist.search("stars and planets number 6", k=3)[0]][0] == local_top[0]
    # searching on Ray actors (one per shard) gives what local threads give
    q = default_model.encode_queries(["cats and dogs", "bread"], dim=128)
    with (
        ShardedIndex.open(tmp_path / "dist", readonly=True) as threads,
        ShardedIndex.open(tmp_path / "dist", readonly=True, searcher="ray") as actors,
    ):
        exact = SearchConfig(exact=True)
        a = threads.search_embeddings(q, k=10, config=exact)
        b = actors.search_embeddings(q, k=10, config=exact)
        assert [[h["id"] for h in r] for r in a] == [[h["id"] for h in r] for r in b]
    # building again after the fact writes nothing twice
    again = build_distributed(
        tmp_path / "dist",
        corpus,
        ray_address=cluster.address,
        n_shards=2,
        workers=2,
        batch_docs=8,
        model_factory=CrashOnce(str(marker)),
        progress=False,
    )
    with again:
        assert again.count() == N_DOCS


def test_workers_use_the_cpus_they_reserved(cluster):
    """Ray tells a worker how many CPUs it reserved (OMP_NUM_THREADS); the build's threaded
    nearest-centroid search uses that many, not one thread per core of the node."""

    @ray.remote
    def threads_seen() -> tuple[int, int]:
        import numpy as np

        from maxsim.compression.kmeans import CellIndex
        from maxsim.parallel import usable_cpus

        centroids = np.eye(8, dtype=np.float32)
        return usable_cpus(), CellIndex(centroids, cells=2, nprobe=1).threads

    assert ray.get(threads_seen.options(num_cpus=1).remote()) == (1, 1)
    assert ray.get(threads_seen.options(num_cpus=2).remote()) == (2, 2)
