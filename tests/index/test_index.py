"""The index on disk: exactness, recall, updates, reopen, filters, locking, bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from maxsim.index import Index, IndexExistsError, IndexLockedError, IndexNotFoundError, IndexReadOnlyError, SearchConfig
from maxsim.scoring.maxsim import maxsim_scores

from .conftest import DIM

EXACT = SearchConfig(exact=True)
APPROX = SearchConfig(exact=False)


def _build(tmp_path, gen, n, name="idx", **kw):
    index = Index.create(tmp_path / name, dim=DIM, **kw)
    ids = [f"doc-{i}" for i in range(n)]
    index.add_embeddings(
        [gen.doc(i) for i in ids],
        ids=ids,
        metadata=[{"n": i, "parity": i % 2, "lang": ["en", "fr", "de"][i % 3]} for i in range(n)],
    )
    return index, ids


def test_exact_mode_equals_brute_force_maxsim(tmp_path, gen):
    index, ids = _build(tmp_path, gen, 300)
    stored = index.get_embeddings(ids)  # what the index holds: decompressed unit vectors
    for s in range(5):
        q = gen.query_for(gen.doc(ids[s * 37]), seed=s)
        hits = index.search_embeddings(q, k=20, config=EXACT)[0]
        brute = maxsim_scores(q, stored)
        order = np.lexsort((np.arange(len(ids)), -brute))[:20]
        assert [h["id"] for h in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([h["score"] for h in hits], brute[order], rtol=1e-5, atol=1e-5)
        assert index.search_embeddings(q, k=20, config=SearchConfig(exact=True, threads=2))[0] == hits
    # and the compressed vectors are close to the originals
    cos = np.concatenate([(gen.doc(i) * v).sum(1) for i, v in zip(ids[:50], stored[:50], strict=True)])
    assert cos.mean() > 0.93


def test_recall_at_10_against_brute_force(tmp_path, gen):
    n = 2000
    index, ids = _build(tmp_path, gen, n)
    originals = [gen.doc(i) for i in ids]
    rng = np.random.default_rng(1)
    targets = rng.integers(0, n, size=40)
    queries = [gen.query_for(originals[t], seed=int(t)) for t in targets]
    results = index.search_embeddings(queries, k=10, config=APPROX)
    # brute force over the original vectors, written independently of the index's kernels
    flat = np.concatenate(originals)
    starts = np.cumsum([0] + [len(d) for d in originals[:-1]])
    recalls = []
    for q, hits in zip(queries, results, strict=True):
        scores = np.maximum.reduceat(q @ flat.T, starts, axis=1).sum(axis=0)  # [n_docs]
        truth = {ids[i] for i in np.argsort(-scores)[:10]}
        recalls.append(len(truth & {h["id"] for h in hits}) / 10)
    assert np.mean(recalls) >= 0.95, np.mean(recalls)
    info = index.info()
    assert info["documents"] == n and info["centroids"] >= 64


def test_add_delete_update_reopen_and_stable_ids(tmp_path, gen):
    index, ids = _build(tmp_path, gen, 200)
    assert len(index) == 200
    q7 = gen.query_for(gen.doc("doc-7"), seed=7)
    assert index.search_embeddings(q7, k=1, config=APPROX)[0][0]["id"] == "doc-7"

    assert index.delete(["doc-7", "doc-8"]) == 2
    assert len(index) == 198 and "doc-7" not in index
    assert all(h["id"] != "doc-7" for h in index.search_embeddings(q7, k=50, config=EXACT)[0])
    # other documents keep their ids, texts and metadata after the delete
    q9 = gen.query_for(gen.doc("doc-9"), seed=9)
    hit = index.search_embeddings(q9, k=1, config=APPROX)[0][0]
    assert hit["id"] == "doc-9" and hit["metadata"]["n"] == 9

    # add is searchable at once, against the existing centroids
    new = gen.doc("late")
    index.add_embeddings([new], ids=["late"], texts=["a late document"], metadata=[{"lang": "en"}])
    hit = index.search_embeddings(gen.query_for(new, seed=3), k=1, config=APPROX)[0][0]
    assert hit == {"id": "late", "score": hit["score"], "text": "a late document", "metadata": {"lang": "en"}}

    # update replaces vectors under the same id; None keeps the old text/metadata
    other = gen.doc("replacement")
    index.update_embeddings(["doc-9"], [other])
    hits = index.search_embeddings(gen.query_for(other, seed=4), k=1, config=APPROX)[0]
    assert hits[0]["id"] == "doc-9" and hits[0]["metadata"]["n"] == 9
    assert index.search_embeddings(q9, k=1, config=EXACT)[0][0]["id"] != "doc-9"
    index.update(["doc-10"], metadata=[{"n": 1000}])
    assert index.get(["doc-10"])[0]["metadata"] == {"n": 1000}
    assert len(index) == 199
    index.close()

    reopened = Index.open(tmp_path / "idx")
    assert len(reopened) == 199 and "doc-7" not in reopened and "late" in reopened
    assert reopened.search_embeddings(gen.query_for(other, seed=4), k=1)[0][0]["id"] == "doc-9"
    assert reopened.search_embeddings(q7, k=5)[0][0]["id"] != "doc-7"
    assert reopened.info()["deleted_pending"] == 3
    assert reopened.optimize() is False  # nothing changed much: compacts without re-clustering
    assert len(reopened) == 199 and reopened.info()["deleted_pending"] == 0
    codec_before = reopened.info()["version"]
    assert reopened.optimize(force=True) is True  # re-cluster: ids and search results survive
    assert reopened.info()["version"] > codec_before and len(reopened) == 199
    cos = np.concatenate(
        [(gen.doc(i) * v).sum(1) for i, v in zip(ids[20:60], reopened.get_embeddings(ids[20:60]), strict=True)]
    )
    assert cos.mean() > 0.9
    assert reopened.search_embeddings(gen.query_for(other, seed=4), k=1)[0][0]["id"] == "doc-9"
    assert reopened.search_embeddings(gen.query_for(new, seed=3), k=1)[0][0]["id"] == "late"
    reopened.verify()
    reopened.close()


def test_duplicate_and_unknown_ids_are_refused_without_changes(tmp_path, gen):
    index, ids = _build(tmp_path, gen, 20)
    with pytest.raises(ValueError, match="already in the index"):
        index.add_embeddings([gen.doc("x"), gen.doc("y")], ids=["x", "doc-3"])
    assert "x" not in index and len(index) == 20
    with pytest.raises(ValueError, match="duplicate ids"):
        index.add_embeddings([gen.doc("x"), gen.doc("y")], ids=["x", "x"])
    with pytest.raises(KeyError, match="nope"):
        index.delete(["doc-1", "nope"])
    assert "doc-1" in index
    with pytest.raises(KeyError, match="nope"):
        index.update_embeddings(["nope"], [gen.doc("z")])
    # no orphan directories left behind by refused writes
    dirs = sorted(p.name.split("-")[0] for p in (tmp_path / "idx").iterdir() if p.is_dir())
    assert dirs == ["codec", "seg"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda ix, g: ix.add_embeddings([np.ones((3, DIM + 1), np.float32)], ids=["a"]), "wrong dim"),
        (lambda ix, g: ix.add_embeddings([], ids=[]), "empty"),
        (lambda ix, g: ix.add_embeddings([np.full((3, DIM), np.nan, np.float32)], ids=["a"]), "NaN"),
        (lambda ix, g: ix.add_embeddings([np.zeros((0, DIM), np.float32)], ids=["a"]), "no token vectors"),
        (lambda ix, g: ix.add_embeddings([g.doc(1)], ids=["a", "b"]), "2 ids for 1"),
        (lambda ix, g: ix.add_embeddings([g.doc(1)], ids=[""]), "non-empty string"),
        (lambda ix, g: ix.add_embeddings([g.doc(1)], ids=["a"], metadata=[{"x": object()}]), "JSON"),
        (lambda ix, g: ix.add_embeddings(g.doc(1), ids=["a"]), "list of 2-D arrays"),
        (lambda ix, g: ix.search_embeddings([np.ones((4, 8), np.float32)], k=3), "wrong dim"),
        (lambda ix, g: ix.search_embeddings([g.doc(1)], k=0), "k must be"),
        (lambda ix, g: ix.search_embeddings([g.doc(1)], filter="no_such_column = 1"), "invalid filter"),
        (lambda ix, g: ix.search_embeddings([g.doc(1)], filter={"lang": {"nested": 1}}), "scalar"),
    ],
)
def test_bad_input_gives_clear_errors(tmp_path, gen, call, message):
    index, _ = _build(tmp_path, gen, 10)
    with pytest.raises((ValueError, TypeError), match=message):
        call(index, gen)
    assert len(index) == 10


def test_create_refuses_existing_and_open_refuses_missing(tmp_path, gen):
    index, _ = _build(tmp_path, gen, 5)
    index.close()
    with pytest.raises(IndexExistsError):
        Index.create(tmp_path / "idx", dim=DIM)
    with pytest.raises(IndexNotFoundError):
        Index.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file.txt").write_text("x")
    with pytest.raises(IndexExistsError, match="not a maxsim index"):
        Index.create(tmp_path / "plain", dim=DIM, overwrite=True)
    with pytest.raises(ValueError, match="nbits"):
        Index.create(tmp_path / "b", dim=DIM, nbits=3)
    fresh = Index.create(tmp_path / "idx", dim=DIM, overwrite=True)
    assert len(fresh) == 0
    assert fresh.search_embeddings([np.eye(4, DIM, dtype=np.float32)], k=3) == [[]]


def test_filters_key_value_and_sql(tmp_path, gen):
    index, ids = _build(tmp_path, gen, 600)
    q = gen.query_for(gen.doc("doc-30"), seed=30)
    for flt, pred in [
        ({"lang": "fr"}, lambda i: i % 3 == 1),
        ({"lang": ["fr", "de"], "parity": 0}, lambda i: i % 3 != 0 and i % 2 == 0),
        ("json_extract(metadata, '$.n') < 40", lambda i: i < 40),
        ("json_extract(metadata, '$.n') BETWEEN 100 AND 104", lambda i: 100 <= i <= 104),
    ]:
        allowed = [i for i in range(600) if pred(i)]
        for config in (APPROX, EXACT):
            hits = index.search_embeddings(q, k=10, filter=flt, config=config)[0]
            assert len(hits) == min(10, len(allowed))
            assert all(pred(h["metadata"]["n"]) for h in hits), flt
        # the exact filtered ranking equals brute force over the allowed documents
        stored = index.get_embeddings([ids[i] for i in allowed])
        brute = maxsim_scores(q, stored)
        hits = index.search_embeddings(q, k=5, filter=flt, config=EXACT)[0]
        assert [h["id"] for h in hits] == [ids[allowed[j]] for j in np.argsort(-brute, kind="stable")[:5]]
    assert index.search_embeddings(q, k=10, filter={"lang": "xx"})[0] == []
    # doc-30 itself is found when the filter allows it, through the approximate path
    assert index.search_embeddings(q, k=1, filter={"lang": "en"}, config=APPROX)[0][0]["id"] == "doc-30"
    # key/value filters are answered from an index of metadata, not a scan of the documents
    plan = index._catalog.query(
        "EXPLAIN QUERY PLAN SELECT docno FROM meta_kv WHERE key = ? AND value IN (?)", ["lang", "fr"]
    )
    assert any("USING PRIMARY KEY" in r[-1] or "USING INDEX" in r[-1] for r in plan), plan
    index.create_metadata_index("n")
    plan = index._catalog.query("EXPLAIN QUERY PLAN SELECT docno FROM docs WHERE (json_extract(metadata, '$.n') < 40)")
    assert any("USING INDEX meta_n" in r[-1] for r in plan), plan
    assert len(index.search_embeddings(q, k=10, filter="json_extract(metadata, '$.n') < 40")[0]) == 10


def test_second_writer_is_refused_readers_are_not(tmp_path, gen):
    index, _ = _build(tmp_path, gen, 30)  # holds the write lock since its first add
    other = Index.open(tmp_path / "idx")
    with pytest.raises(IndexLockedError, match="already open for writing"):
        other.add_embeddings([gen.doc("x")], ids=["x"])
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from maxsim.index import Index, IndexLockedError
        ix = Index.open({str(tmp_path / "idx")!r})
        n = len(ix)
        hits = ix.search_embeddings(np.eye(2, {DIM}, dtype=np.float32), k=3)[0]
        try:
            ix.delete(["doc-1"])
        except IndexLockedError as e:
            print("LOCKED", n, len(hits), e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("LOCKED 30 3"), out.stderr
    readonly = Index.open(tmp_path / "idx", readonly=True)
    with pytest.raises(IndexReadOnlyError):
        readonly.delete(["doc-1"])
    index.close()  # releases the lock: the other handle may now write, and readers see it
    other.add_embeddings([gen.doc("x")], ids=["x"])
    assert "x" in readonly and len(readonly) == 31
    assert readonly.search_embeddings(gen.query_for(gen.doc("x"), seed=1), k=1)[0][0]["id"] == "x"


def test_concurrent_searches_while_writing(tmp_path, gen):
    from concurrent.futures import ThreadPoolExecutor

    index, ids = _build(tmp_path, gen, 400)
    queries = [gen.query_for(gen.doc(ids[i]), seed=i) for i in range(0, 400, 20)]
    expected = [h[0]["id"] for h in index.search_embeddings(queries, k=1)]

    def work(j):
        return [h[0]["id"] for h in index.search_embeddings(queries, k=1)]

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(work, j) for j in range(8)]
        for j in range(5):  # writes interleaved with the searches
            index.add_embeddings([gen.doc(f"extra-{j}")], ids=[f"extra-{j}"])
        results = [f.result() for f in futures]
    assert all(r == expected for r in results)


def test_auto_optimize_retrains_as_the_collection_grows(tmp_path, gen):
    index = Index.create(tmp_path / "idx", dim=DIM)
    index.add_embeddings([gen.doc(i) for i in "abc"], ids=["a", "b", "c"])
    k0 = index.info()["centroids"]
    for start in range(0, 400, 100):
        index.add_embeddings(
            [gen.doc(f"g{i}") for i in range(start, start + 100)], ids=[f"g{i}" for i in range(start, start + 100)]
        )
    info = index.info()
    assert info["centroids"] > k0 and info["documents"] == 403 and info["segments"] <= 16
    q = gen.query_for(gen.doc("b"), seed=2)
    assert index.search_embeddings(q, k=1, config=APPROX)[0][0]["id"] == "b"
    # many small adds are merged so the segment count stays bounded
    for i in range(40):
        index.add_embeddings([gen.doc(f"s{i}")], ids=[f"s{i}"])
    assert index.info()["segments"] <= 16
    assert index.search_embeddings(gen.query_for(gen.doc("s5"), seed=5), k=1)[0][0]["id"] == "s5"


def test_bytes_per_token_at_two_bits(tmp_path, gen):
    index = Index.create(tmp_path / "idx", dim=128, nbits=2)
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(300, 128))
    docs = []
    for _ in range(800):
        n = int(rng.integers(30, 120))
        x = topics[rng.choice(rng.integers(0, 300, 3), n)] + 0.6 * rng.normal(size=(n, 128))
        docs.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    index.add_embeddings(docs, ids=[str(i) for i in range(len(docs))])
    info = index.info()
    tokens, k = info["tokens"], info["centroids"]
    index.close()
    seg = next(p for p in (tmp_path / "idx").iterdir() if p.name.startswith("seg-"))
    payload = sum(f.stat().st_size for f in seg.glob("*.npy"))
    bits = max(1, (k - 1).bit_length())
    # per token: 32 residual bytes + the centroid id packed at ceil(log2(k)) bits + document
    # offsets (the inverted lists of a segment this small are rebuilt on open, not stored)
    assert not (seg / "ivf_docs.npy").exists()
    assert (seg / "codes.npy").stat().st_size == 128 + (tokens * bits + 7) // 8
    assert payload / tokens <= 32 + bits / 8 + 0.5
    # the whole directory adds the centroid table on a 4-bit grid (64 bytes per centroid at dim
    # 128, at most 2 bytes per token by the choice of k) and the SQLite catalog and small files
    codec = next(p for p in (tmp_path / "idx").iterdir() if p.name.startswith("codec-"))
    assert (codec / "centroid_levels.npy").stat().st_size == 128 + 64 * k
    assert 64 * k <= 2 * tokens
    whole = sum(f.stat().st_size for f in (tmp_path / "idx").rglob("*") if f.is_file())
    assert whole / tokens <= 36 + 200_000 / tokens


def test_four_bits_store_twice_the_residual_and_reconstruct_better(tmp_path, gen):
    ids = [f"d{i}" for i in range(300)]
    cos = {}
    for nbits in (2, 4):
        with Index.create(tmp_path / f"idx{nbits}", dim=DIM, nbits=nbits) as index:
            index.add_embeddings([gen.doc(x) for x in ids], ids=ids)
            stored = index.get_embeddings(ids[:60])
            seg = next(p for p in index.path.iterdir() if p.name.startswith("seg-"))
            assert np.load(seg / "residuals.npy", mmap_mode="r").shape[1] == DIM * nbits // 8
            cos[nbits] = float(np.mean([(gen.doc(x) * v).sum(1).mean() for x, v in zip(ids, stored, strict=False)]))
            q = gen.query_for(gen.doc("d42"), seed=42)
            assert index.search_embeddings(q, k=1, config=APPROX)[0][0]["id"] == "d42"
    assert cos[4] > cos[2] and cos[4] > 0.98
