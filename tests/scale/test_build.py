"""Streaming build: chunked commits with progress in the catalog, resume after SIGKILL, text inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from maxsim.errors import InvalidArgumentError
from maxsim.index import Index, SearchConfig
from maxsim.index.build import VectorDoc, build_from_vectors, build_progress

ROOT = Path(__file__).resolve().parents[2]
DIM = 32


def make_docs(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(40, DIM))
    out = []
    for _ in range(n):
        t = topics[rng.integers(0, 40, size=3)]
        x = t[rng.integers(0, 3, size=int(rng.integers(4, 20)))] + 0.3 * rng.normal(size=(1, DIM))
        out.append((x + 0.2 * rng.normal(size=x.shape)).astype(np.float32))
    return out


def source_of(docs: list[np.ndarray]):
    def source(skip: int):
        for i in range(skip, len(docs)):
            yield VectorDoc(f"d{i:05d}", docs[i], text=f"text {i}", metadata={"i": i, "even": i % 2 == 0})

    return source


def test_chunked_build_commits_each_chunk_and_searches_exactly(tmp_path):
    docs = make_docs(500)
    idx = build_from_vectors(
        tmp_path / "idx", source_of(docs), dim=DIM, chunk_docs=120, encode_tokens=900, train_tokens=3000, progress=False
    )
    with idx:
        prog = build_progress(idx)
        assert (prog.docs, prog.chunks, prog.finished) == (500, 5, True)  # 4 full chunks + the rest
        assert not (tmp_path / "idx" / "build-kmeans").exists()  # the training's steps are gone once installed
        assert idx.info()["segments"] == 5 and len(idx) == 500
        assert idx.get(["d00007"]) == [{"id": "d00007", "text": "text 7", "metadata": {"i": 7, "even": False}}]
        assert idx.count({"even": True}) == 250
        # exact search ranks like brute-force MaxSim over the stored vectors
        stored = idx.get_embeddings([f"d{i:05d}" for i in range(500)])
        q = docs[42][:4] / np.linalg.norm(docs[42][:4], axis=1, keepdims=True)
        brute = np.argsort([-(q @ s.T).max(axis=1).sum() for s in stored], kind="stable")[:10]
        hits = idx.search_embeddings([q], k=10, config=SearchConfig(exact=True))[0]
        assert [h["id"] for h in hits] == [f"d{i:05d}" for i in brute]
        # the catalog's training size is the built size: later writes do not re-cluster at once
        trained = idx._catalog.query("SELECT value FROM state WHERE key='tokens_trained'")[0][0]
        assert int(trained) == sum(len(d) for d in docs)
        codec = idx._refresh().codec_name
        idx.add_embeddings([docs[0]], ids=["extra"])
        assert idx._refresh().codec_name == codec


WORKER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.scale.test_build import make_docs, source_of
from maxsim.index.build import build_from_vectors
docs = make_docs(600)
base = source_of(docs)
def slow(skip):
    for i, d in enumerate(base(skip)):
        if i % 100 == 99:
            time.sleep(0.3)
        yield d
build_from_vectors({path!r}, slow, dim={dim}, chunk_docs=100, train_tokens=3000, progress=False)
"""


def sigkill_worker_when(script: str, tmp_path, ready, settle: float = 0.0) -> None:
    """Run ``script`` in a child Python, wait until ``ready()`` (polled, at most 120 s), then
    ``settle`` seconds more, and SIGKILL it; it must still be running then."""
    path = tmp_path / "worker.py"
    path.write_text(script)
    proc = subprocess.Popen([sys.executable, str(path)], env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.05)
        time.sleep(settle)
        assert proc.poll() is None, "the build finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_killed_build_resumes_from_its_last_chunk(tmp_path):
    path = tmp_path / "idx"

    def two_chunks_committed() -> bool:
        if not (path / "manifest.json").exists():
            return False
        try:
            with Index.open(path, readonly=True) as ro:
                prog = build_progress(ro)
                return prog is not None and prog.docs >= 200
        except Exception:  # noqa: BLE001 - the catalog may be mid-creation
            return False

    sigkill_worker_when(WORKER.format(root=str(ROOT), path=str(path), dim=DIM), tmp_path, two_chunks_committed)
    with Index.open(path, readonly=True) as ro:
        killed_at = build_progress(ro)
        assert not killed_at.finished and killed_at.docs % 100 == 0 and 200 <= killed_at.docs < 600
        assert len(ro) == killed_at.docs  # the catalog holds exactly the committed chunks
    docs = make_docs(600)
    asked: list[int] = []
    base = source_of(docs)

    def source(skip: int):
        asked.append(skip)
        yield from base(skip)

    with build_from_vectors(path, source, dim=DIM, chunk_docs=100, progress=False) as idx:
        assert asked == [killed_at.docs]  # resumed at the last committed chunk, no re-training
        assert len(idx) == 600 and build_progress(idx).finished
        ids = [r[0] for r in idx._catalog.query("SELECT id FROM docs ORDER BY docno")]
        assert ids == [f"d{i:05d}" for i in range(600)]
        assert idx.get(["d00599"])[0]["metadata"] == {"i": 599, "even": False}


STALLED_WORKER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.scale.test_build import make_docs, source_of
from maxsim.index.build import build_from_vectors
base = source_of(make_docs(300))
def stalled(skip):  # the training sample's read never finishes: killed before any codec exists
    for i, d in enumerate(base(skip)):
        if i == 50:
            time.sleep(600)
        yield d
build_from_vectors({path!r}, stalled, dim={dim}, chunk_docs=100, train_tokens=3000, progress=False)
"""


def test_build_killed_before_its_codec_exists_starts_over(tmp_path):
    path = tmp_path / "idx"
    # killed 1 s after the catalog exists, while the training sample is still being read
    script = STALLED_WORKER.format(root=str(ROOT), path=str(path), dim=DIM)
    sigkill_worker_when(script, tmp_path, (path / "manifest.json").exists, settle=1.0)
    with Index.open(path, readonly=True) as ro:
        assert build_progress(ro) is None and len(ro) == 0 and ro._refresh().codec is None
    docs = make_docs(300)
    with pytest.raises(InvalidArgumentError, match="empty index of dim/nbits/refine_bits"):
        build_from_vectors(path, source_of(docs), dim=DIM, nbits=4, chunk_docs=100, progress=False)
    with build_from_vectors(path, source_of(docs), dim=DIM, chunk_docs=100, train_tokens=3000, progress=False) as idx:
        assert len(idx) == 300 and build_progress(idx).finished
        ids = [r[0] for r in idx._catalog.query("SELECT id FROM docs ORDER BY docno")]
        assert ids == [f"d{i:05d}" for i in range(300)]


def test_text_build_from_jsonl_beir_and_parquet(tmp_path, default_model):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from maxsim.build import build

    texts = [f"Document {i} talks about {'cats' if i % 2 else 'rivers'} and number {i}." for i in range(40)]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"id": f"j{i}", "text": t, "metadata": {"i": i}}) for i, t in enumerate(texts))
    )
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(
        "\n".join(json.dumps({"_id": f"b{i}", "title": "T" if i == 0 else "", "text": t}) for i, t in enumerate(texts))
    )
    parquet = tmp_path / "docs.parquet"
    pq.write_table(
        pa.table(
            {"id": [f"p{i}" for i in range(40)], "text": texts, "metadata": [json.dumps({"i": i}) for i in range(40)]}
        ),
        parquet,
    )
    for src, prefix in [(jsonl, "j"), (beir, "b"), (parquet, "p")]:
        with build(
            tmp_path / f"idx-{prefix}", src, model=default_model, sample_docs=16, chunk_docs=15, progress=False
        ) as idx:
            assert len(idx) == 40 and idx.info()["segments"] == 3
            assert idx.model_name == default_model.name
            got = idx.get([f"{prefix}3", f"{prefix}0"])
            assert got[0]["text"] == texts[3]
            if prefix == "b":
                assert got[1] == {"id": "b0", "text": "T " + texts[0], "metadata": {"title": "T"}}
            else:
                assert got[0]["metadata"] == {"i": 3}
            assert idx.search("rivers number 6", k=1)[0][0]["id"] == f"{prefix}6"


def test_cli_build_rejects_bad_arguments(tmp_path, capsys):
    from maxsim.cli.index import main

    docs = tmp_path / "d.jsonl"
    docs.write_text('{"id": "a", "text": "x"}\n')
    assert main(["build", str(tmp_path / "i"), str(docs), "--shards", "2"]) == 2
    assert "--ray-address" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "i"), str(tmp_path / "missing.jsonl")]) == 2
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert main(["build", str(tmp_path / "i"), str(tmp_path / "folder")]) == 2
    assert "corpus.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()  # nothing was created


def test_centroids_are_trained_on_documents_spread_over_the_source(tmp_path):
    # a collection sorted by "language": the first half uses one set of topics, the second
    # another. Trained on its head, the codec would have no centroid near the second set.
    rng = np.random.default_rng(3)
    topics = rng.normal(size=(16, DIM)).astype(np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    docs = []
    for i in range(400):
        own = topics[:8] if i < 200 else topics[8:]
        x = own[rng.integers(0, 8, size=10)] + 0.05 * rng.normal(size=(10, DIM)).astype(np.float32)
        docs.append(x.astype(np.float32))
    n_tokens = sum(len(d) for d in docs)
    kwargs = {"dim": DIM, "train_tokens": 400, "expected_tokens": n_tokens, "progress": False}

    def nearest_centroid_similarity(idx):
        c = idx._refresh().codec.centroids
        return (topics @ (c / np.linalg.norm(c, axis=1, keepdims=True)).T).max(axis=1)

    with build_from_vectors(tmp_path / "spread", source_of(docs), total_docs=400, **kwargs) as idx:
        spread = nearest_centroid_similarity(idx)
    with build_from_vectors(tmp_path / "head", source_of(docs), **kwargs) as idx:  # no total: the head
        head = nearest_centroid_similarity(idx)
    # the spread sample puts centroids on the topics of both halves (k-means may merge a pair)
    assert np.median(spread[:8]) > 0.95 and np.median(spread[8:]) > 0.95, spread
    assert np.median(head[:8]) > 0.95 and head[8:].max() < 0.6, head


def test_text_build_encodes_each_document_once_and_samples_the_whole_input(tmp_path, default_model):
    from maxsim.build import build

    class Counting:
        def __init__(self, model):
            self.model, self.calls = model, []

        def encode_documents(self, texts, **kw):
            self.calls.append(list(texts))
            return self.model.encode_documents(texts, **kw)

        def __getattr__(self, name):
            return getattr(self.model, name)

    texts = [f"Passage {i} about {'tea' if i < 30 else 'trains'}." for i in range(60)]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)))
    model = Counting(default_model)
    with build(tmp_path / "idx", jsonl, model=model, sample_docs=12, chunk_docs=25, progress=False) as idx:
        assert len(idx) == 60
        assert idx.search("trains", k=1)[0][0]["id"] in {f"d{i}" for i in range(30, 60)}
    encoded = [t for call in model.calls for t in call]
    assert sorted(encoded) == sorted(texts)  # the sample's vectors are reused, nothing twice
    sample = model.calls[0]
    assert len(sample) == 12 and any("trains" in t for t in sample) and any("tea" in t for t in sample)


def test_n_centroids_fixes_the_codec_size_and_bad_values_are_named(tmp_path):
    docs = make_docs(300, seed=5)
    n_tokens = sum(len(d) for d in docs)
    # the rule would pick 64 or more centroids here; the argument wins and the sample follows it
    with build_from_vectors(
        tmp_path / "k16",
        source_of(docs),
        dim=DIM,
        expected_tokens=n_tokens,
        total_docs=300,
        n_centroids=16,
        progress=False,
    ) as idx:
        assert idx._refresh().codec.n_centroids == 16
        assert idx.count() == 300
    with build_from_vectors(
        tmp_path / "rule", source_of(docs), dim=DIM, expected_tokens=n_tokens, total_docs=300, progress=False
    ) as idx:
        assert idx._refresh().codec.n_centroids > 16
    for bad in (0, 1 << 19, 2.5):
        with pytest.raises(InvalidArgumentError, match="n_centroids"):
            build_from_vectors(tmp_path / f"bad{bad}", source_of(docs), dim=DIM, n_centroids=bad, progress=False)
        assert not (tmp_path / f"bad{bad}").exists()  # refused before anything is written
