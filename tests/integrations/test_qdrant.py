"""QdrantStore on real embedded Qdrant engines: qdrant-client local mode (in memory and on
disk) and Qdrant Edge. No mocks: every test writes to and queries a real collection.

Contract: with a first stage that sees every document, two-stage search returns exactly
maxsim's MaxSim ranking and scores; ids are the user's strings; payload holds text and
metadata; filters, delete and update behave; a document over Qdrant's multivector cap is
stored and found.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_client")
pytest.importorskip("qdrant_edge")

from maxsim.errors import (  # noqa: E402
    DuplicateIdError,
    InvalidArgumentError,
    InvalidTypeError,
    MaxsimError,
    MissingModelError,
    UnknownIdError,
)
from maxsim.integrations.qdrant import (  # noqa: E402
    MAXSIM_NAMESPACE,
    MULTIVECTOR_MAX_FLOATS,
    QdrantSettings,
    QdrantStore,
    RetryPolicy,
    parse_filter,
    point_id,
    pool_tokens,
    with_retry,
)
from maxsim.integrations.qdrant.errors import CollectionError, QdrantServerError  # noqa: E402
from maxsim.postprocess.muvera import MuveraConfig  # noqa: E402
from maxsim.scoring.maxsim import maxsim_score, maxsim_scores  # noqa: E402

DIM = 64
N_DOCS = 40
ENGINES = ["memory", "local", "edge"]
SMALL_MUVERA = MuveraConfig(k_sim=3, dim_proj=8, repetitions=4, seed=1)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> dict:
    rng = np.random.default_rng(1234)
    docs = [_unit(rng.normal(size=(int(rng.integers(3, 30)), DIM))) for _ in range(N_DOCS)]
    # queries close to some documents so that rankings have clear winners
    queries = [_unit(docs[i][rng.integers(0, len(docs[i]), 8)] + 0.5 * rng.normal(size=(8, DIM))) for i in (0, 7, 19)]
    queries.append(_unit(rng.normal(size=(8, DIM))))
    ids = [f"doc-{i}" for i in range(N_DOCS)]
    texts = [f"text of document {i}" for i in range(N_DOCS)]
    meta = [{"lang": ["en", "fr", "de"][i % 3], "year": 2000 + i, "even": i % 2 == 0} for i in range(N_DOCS)]
    return {"docs": docs, "queries": queries, "ids": ids, "texts": texts, "meta": meta}


def _location(engine: str, tmp_path: Path) -> str:
    if engine == "memory":
        return ":memory:"
    if engine == "local":
        return str(tmp_path / "local")
    return f"edge:{tmp_path / 'edge'}"


@pytest.fixture(params=ENGINES)
def store(request, tmp_path: Path, corpus: dict):
    settings = QdrantSettings(muvera=SMALL_MUVERA)
    s = QdrantStore.create(
        _location(request.param, tmp_path), "test", dim=DIM, model="toy", settings=settings, batch_size=16
    )
    s.add_embeddings(corpus["docs"], corpus["ids"], texts=corpus["texts"], metadata=corpus["meta"])
    yield s
    s.close()


def _exact(query: np.ndarray, docs: list[np.ndarray], ids: list[str], k: int) -> tuple[list[str], np.ndarray]:
    scores = maxsim_scores(query, docs)
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[i] for i in order], scores[order]


@pytest.mark.parametrize("first_stage", ["muvera", "pooled", "none"])
def test_covering_first_stage_equals_exact_maxsim(store: QdrantStore, corpus: dict, first_stage: str) -> None:
    k = 10
    for q in corpus["queries"]:
        want_ids, want_scores = _exact(q, corpus["docs"], corpus["ids"], k)
        [hits] = store.search_embeddings(q, k, first_stage=first_stage, prefetch_limit=N_DOCS, exact_first_stage=True)
        assert [h["id"] for h in hits] == want_ids
        np.testing.assert_allclose([h["score"] for h in hits], want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("first_stage", ["muvera", "none"])
def test_batch_search_equals_one_by_one(store: QdrantStore, corpus: dict, first_stage: str) -> None:
    queries = corpus["queries"]
    batch = store.search_embeddings(
        queries, 7, {"lang": ["en", "fr"]}, first_stage=first_stage, prefetch_limit=N_DOCS, exact_first_stage=True
    )
    single = [
        store.search_embeddings(
            q, 7, {"lang": ["en", "fr"]}, first_stage=first_stage, prefetch_limit=N_DOCS, exact_first_stage=True
        )[0]
        for q in queries
    ]
    assert batch == single
    assert len(batch) == len(queries) and all(len(hits) == 7 for hits in batch)
    with pytest.raises(InvalidArgumentError, match="queries: the list is empty"):
        store.search_embeddings([], 7)
    with pytest.raises(InvalidArgumentError, match=r"queries\[1\]: wrong dim 3, expected 64"):
        store.search_embeddings([queries[0], np.zeros((2, 3), dtype=np.float32)])


def test_ids_payloads_and_stable_point_ids(store: QdrantStore, corpus: dict) -> None:
    assert store.count() == N_DOCS
    [hits] = store.search_embeddings(corpus["queries"][1], 3)
    assert hits[0]["id"] == "doc-7"
    assert hits[0]["text"] == "text of document 7"
    assert hits[0]["metadata"] == corpus["meta"][7]
    got = store.get(["doc-39", "doc-3"])
    assert [g["id"] for g in got] == ["doc-39", "doc-3"]
    assert got[1] == {"id": "doc-3", "text": "text of document 3", "metadata": corpus["meta"][3]}
    with pytest.raises(UnknownIdError, match="missing"):
        store.get(["doc-3", "missing"])
    assert point_id("doc-3") == str(uuid.uuid5(MAXSIM_NAMESPACE, "doc-3"))


def test_upserting_again_is_idempotent(store: QdrantStore, corpus: dict) -> None:
    before = store.search_embeddings(corpus["queries"][0], 10)
    store.upsert_embeddings(corpus["docs"], corpus["ids"], texts=corpus["texts"], metadata=corpus["meta"])
    assert store.count() == N_DOCS
    assert store.search_embeddings(corpus["queries"][0], 10) == before
    with pytest.raises(DuplicateIdError, match="doc-0"):
        store.add_embeddings(corpus["docs"][:1], corpus["ids"][:1])


def test_filters_restrict_both_stages(store: QdrantStore, corpus: dict) -> None:
    q = corpus["queries"][3]
    cases = {
        "value": ({"lang": "fr"}, lambda m: m["lang"] == "fr"),
        "any": ({"lang": ["en", "de"]}, lambda m: m["lang"] in ("en", "de")),
        "range": ({"year": {"gte": 2010, "lt": 2030}}, lambda m: 2010 <= m["year"] < 2030),
        "bool+value": ({"even": True, "lang": "en"}, lambda m: m["even"] and m["lang"] == "en"),
    }
    if store.engine == "edge":
        del cases["bool+value"]
        with pytest.raises(InvalidArgumentError, match="boolean filters .* not supported on Qdrant Edge"):
            store.search_embeddings(q, 5, filter={"even": True})
    for name, (flt, keep) in cases.items():
        sub = [i for i, m in enumerate(corpus["meta"]) if keep(m)]
        want, _ = _exact(q, [corpus["docs"][i] for i in sub], [corpus["ids"][i] for i in sub], 5)
        for first_stage in ("muvera", "none"):
            [hits] = store.search_embeddings(
                q, 5, flt, first_stage=first_stage, prefetch_limit=N_DOCS, exact_first_stage=True
            )
            assert [h["id"] for h in hits] == want, (name, first_stage)
        assert store.count(flt) == len(sub), name


def test_delete_and_update(store: QdrantStore, corpus: dict) -> None:
    q = corpus["queries"][0]
    top = store.search_embeddings(q, 1, first_stage="none")[0][0]["id"]
    assert top == "doc-0"
    assert store.delete(["doc-0", "doc-5", "never-added"], missing_ok=True) == 2
    assert store.count() == N_DOCS - 2
    with pytest.raises(UnknownIdError):
        store.get(["doc-0"])
    [hits] = store.search_embeddings(q, N_DOCS, first_stage="none")
    assert {"doc-0", "doc-5"}.isdisjoint(h["id"] for h in hits)
    assert len(hits) == N_DOCS - 2

    # update doc-30: new vectors (the query itself, so it becomes the best match), text, metadata
    store.update_embeddings(["doc-30"], [q], texts=["new text"], metadata=[{"lang": "xx"}])
    assert store.count() == N_DOCS - 2
    best = store.search_embeddings(q, 1, prefetch_limit=N_DOCS, exact_first_stage=True)[0][0]
    assert best["id"] == "doc-30" and best["text"] == "new text" and best["metadata"] == {"lang": "xx"}
    assert best["score"] == pytest.approx(maxsim_score(q, q), rel=1e-5)
    assert store.count({"lang": "xx"}) == 1
    # metadata only (issue 15): vectors and text stay, other documents keep theirs
    store.update_embeddings(["doc-30", "doc-31"], metadata=[{"lang": "yy"}, None])
    assert store.get(["doc-30", "doc-31"]) == [
        {"id": "doc-30", "text": "new text", "metadata": {"lang": "yy"}},
        {"id": "doc-31", "text": corpus["texts"][31], "metadata": corpus["meta"][31]},
    ]
    assert store.search_embeddings(q, 1, first_stage="none")[0][0]["id"] == "doc-30"


@pytest.mark.parametrize("engine", ["memory", "edge"])
def test_document_over_the_multivector_cap_is_stored_and_found(engine: str, tmp_path: Path) -> None:
    dim = 128
    cap = MULTIVECTOR_MAX_FLOATS // dim
    assert cap == 8192
    rng = np.random.default_rng(5)
    long_doc = _unit(rng.normal(size=(cap + 300, dim)))
    others = [_unit(rng.normal(size=(20, dim))) for _ in range(5)]
    # the query matches tokens at the far end of the long document, beyond the first part
    q = _unit(long_doc[-8:] + 0.05 * rng.normal(size=(8, dim)))
    s = QdrantStore.create(
        _location(engine, tmp_path),
        "long",
        dim=dim,
        settings=QdrantSettings(muvera=MuveraConfig(k_sim=3, dim_proj=8, repetitions=2)),
    )
    try:
        s.add_embeddings(
            [long_doc, *others], ["long", *[f"o{i}" for i in range(5)]], texts=["a very long document", *["short"] * 5]
        )
        assert s.count() == 6
        assert s.parts(["long", "o1"]) == [2, 1]
        [hits] = s.search_embeddings(q, 3, prefetch_limit=10, exact_first_stage=True)
        assert hits[0]["id"] == "long" and hits[0]["text"] == "a very long document"
        assert len({h["id"] for h in hits}) == 3  # parts are merged into one hit per document
        # the long document scores as its best part: here the tail part, whose MaxSim we know
        assert hits[0]["score"] == pytest.approx(maxsim_score(q, long_doc[cap:]), rel=1e-4)
        # the head part (8192 random tokens) also outscores every short document, so the two best
        # points are both "long": a k=2 request must ask Qdrant again to return two documents
        assert maxsim_score(q, long_doc[:cap]) > max(maxsim_score(q, o) for o in others)
        batch = s.search_embeddings([q, q], 2, first_stage="none")
        assert [[h["id"] for h in hits] for hits in batch] == [[h["id"] for h in hits[:2]]] * 2
        # replacing it with a short version removes the stale second part; text is kept
        s.update_embeddings(["long"], [long_doc[:100]])
        assert s.parts(["long"]) == [1] and s.get(["long"])[0]["text"] == "a very long document"
        assert len(s.search_embeddings(q, 10, first_stage="none")[0]) == 6
        assert s.delete(["long"]) == 1
        assert s.count() == 5
    finally:
        s.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_long_docs_split_or_pool_with_a_small_cap(engine: str, tmp_path: Path, corpus: dict) -> None:
    doc = _unit(np.random.default_rng(6).normal(size=(25, DIM)))
    q = _unit(doc[20:24])
    for mode in ("split", "pool"):
        settings = QdrantSettings(muvera=SMALL_MUVERA, long_docs=mode, max_tokens=10)
        s = QdrantStore.create(_location(engine, tmp_path / mode), "c", dim=DIM, settings=settings)
        try:
            s.add_embeddings([doc, corpus["docs"][0]], ["long", "short"])
            assert s.parts(["long"]) == [3 if mode == "split" else 1]
            [hits] = s.search_embeddings(q, 2, first_stage="none")
            assert [h["id"] for h in hits][0] == "long"
            expected = maxsim_score(q, doc[20:]) if mode == "split" else maxsim_score(q, pool_tokens(doc, 10))
            assert hits[0]["score"] == pytest.approx(expected, rel=1e-5)
        finally:
            s.close()


@pytest.mark.parametrize("engine", ["local", "edge"])
def test_reopen_reads_the_stored_layout(engine: str, tmp_path: Path, corpus: dict) -> None:
    loc = _location(engine, tmp_path)
    settings = QdrantSettings(muvera=SMALL_MUVERA, pooled=False, storage="float16")
    s = QdrantStore.create(loc, "c", dim=DIM, model="toy", settings=settings)
    s.add_embeddings(corpus["docs"][:10], corpus["ids"][:10])
    s.close()
    with pytest.raises(CollectionError, match="already exists"):
        QdrantStore.create(loc, "c", dim=DIM, model="toy", settings=settings)
    with pytest.raises(CollectionError, match="different layout"):
        QdrantStore.create(loc, "c", dim=DIM, model="toy", exist_ok=True)
    s = QdrantStore.open(loc, "c")
    try:
        assert s.dim == DIM and s.settings == settings and s.model_name == "toy" and s.count() == 10
        with pytest.raises(InvalidArgumentError, match="no pooled vectors"):
            s.search_embeddings(corpus["queries"][0], 3, first_stage="pooled")
        want, _ = _exact(corpus["queries"][0], corpus["docs"][:10], corpus["ids"][:10], 3)
        assert [h["id"] for h in s.search_embeddings(corpus["queries"][0], 3, first_stage="none")[0]] == want
    finally:
        s.close()
    with pytest.raises(CollectionError, match="no collection"):
        QdrantStore.open(loc, "other")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("storage", ["float16", "uint8"])
def test_compact_storage_keeps_the_ranking(engine: str, storage: str, tmp_path: Path, corpus: dict) -> None:
    s = QdrantStore.create(
        _location(engine, tmp_path), "c", dim=DIM, settings=QdrantSettings(muvera=SMALL_MUVERA, storage=storage)
    )
    try:
        s.add_embeddings(corpus["docs"], corpus["ids"])
        s.optimize()
        for q in corpus["queries"][:3]:
            want, scores = _exact(q, corpus["docs"], corpus["ids"], 3)
            [hits] = s.search_embeddings(q, 3, first_stage="none")
            assert hits[0]["id"] == want[0]
            np.testing.assert_allclose(hits[0]["score"], scores[0], atol=0.02 * len(q))
    finally:
        s.close()


def test_bad_input_is_a_clear_error(store: QdrantStore, corpus: dict) -> None:
    q = corpus["queries"][0]
    with pytest.raises(InvalidArgumentError, match=r"queries\[0\]: wrong dim 32, expected 64"):
        store.search_embeddings(np.zeros((4, 32), dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="first_stage"):
        store.search_embeddings(q, first_stage="bm25")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="prefetch_limit"):
        store.search_embeddings(q, 10, prefetch_limit=5)
    with pytest.raises(InvalidArgumentError, match="duplicate ids"):
        store.add_embeddings([q, q], ["a", "a"])
    with pytest.raises(InvalidArgumentError, match="non-empty string"):
        store.add_embeddings([q], [7])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match="no token vectors"):
        store.add_embeddings([np.zeros((0, DIM), dtype=np.float32)], ["e"])
    with pytest.raises(InvalidArgumentError, match="NaN"):
        store.add_embeddings([np.full((2, DIM), np.nan, dtype=np.float32)], ["n"])
    with pytest.raises(InvalidArgumentError, match="got 2 ids for 1 documents"):
        store.add_embeddings([q], ["a", "b"])
    with pytest.raises(MissingModelError, match="no model for text"):
        store.search("hello")
    with pytest.raises(InvalidTypeError, match="list of strings"):
        store.delete("doc-1")  # type: ignore[arg-type]
    assert store.count() == N_DOCS  # nothing half-written


def test_settings_and_location_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="dim must be one of"):
        QdrantStore.create(":memory:", dim=100)
    with pytest.raises(InvalidArgumentError, match="storage"):
        QdrantSettings(storage="int4")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="first stage"):
        QdrantSettings(muvera=None, pooled=False)
    with pytest.raises(InvalidArgumentError, match="long_docs"):
        QdrantSettings(long_docs="truncate")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="edge"):
        QdrantStore.create("edge:", dim=64)
    with pytest.raises(InvalidArgumentError, match="api_key is only for a server URL"):
        QdrantStore.create(":memory:", dim=64, api_key="secret")
    with pytest.raises(InvalidArgumentError, match="cannot exceed the token dim"):
        QdrantStore.create(":memory:", dim=64, settings=QdrantSettings(muvera=MuveraConfig(dim_proj=128)))


@pytest.mark.parametrize("open_or_create", ["open", "create"])
def test_an_unreachable_server_is_one_clear_error(open_or_create: str) -> None:
    from qdrant_client import QdrantClient

    # port 1 refuses connections: reads are not retried, so this fails at once (no version-check thread)
    client = QdrantClient(url="http://127.0.0.1:1", timeout=2, check_compatibility=False)
    match = r"^cannot reach the Qdrant server at http://127\.0\.0\.1:1: "
    with pytest.raises(QdrantServerError, match=match) as err:
        getattr(QdrantStore, open_or_create)(client, "c")
    assert isinstance(err.value, MaxsimError) and isinstance(err.value, ConnectionError)
    assert "\n" not in str(err.value)


def test_writes_to_an_unreachable_server_are_retried_then_one_clear_error() -> None:
    from qdrant_client import QdrantClient

    from maxsim.integrations.qdrant.engines import ClientEngine, Point

    url = "http://127.0.0.1:1"
    client = QdrantClient(url=url, timeout=2, check_compatibility=False)
    calls = []
    real_upsert = client.upsert

    def counted_upsert(*args, **kwargs):
        calls.append(1)
        return real_upsert(*args, **kwargs)

    client.upsert = counted_upsert
    engine = ClientEngine(client, "c", RetryPolicy(attempts=3, base_delay=0.0), remote=True, where=url)
    with pytest.raises(QdrantServerError, match=f"^cannot reach the Qdrant server at {url}: "):
        engine.upsert([Point(point_id("a"), {"pooled": [1.0] * 4}, {"doc_id": "a"})])
    assert len(calls) == 3  # the connection error is transient: every attempt was made


def test_parse_filter_errors() -> None:
    assert parse_filter(None) == []
    with pytest.raises(InvalidArgumentError, match="range"):
        parse_filter({"year": {"between": [1, 2]}})
    with pytest.raises(InvalidArgumentError, match="match floats with a range"):
        parse_filter({"score": 0.5})
    with pytest.raises(InvalidArgumentError, match="all strings or all ints"):
        parse_filter({"lang": ["en", 1]})
    with pytest.raises(InvalidTypeError, match="mapping"):
        parse_filter([("lang", "en")])  # type: ignore[arg-type]


def test_retry_backs_off_on_transient_errors_only() -> None:
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("server restarting")
        return "ok"

    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=0.8)
    transient = lambda e: isinstance(e, ConnectionError)  # noqa: E731
    assert with_retry(flaky, policy, transient, sleep=sleeps.append) == "ok"
    assert sleeps == [0.5, 0.8]  # 0.5 * 2**0, then 0.5 * 2**1 capped at max_delay

    def broken() -> None:
        raise ValueError("bad request")

    sleeps.clear()
    with pytest.raises(ValueError, match="bad request"):
        with_retry(broken, policy, transient, sleep=sleeps.append)
    assert sleeps == []

    def down() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        with_retry(down, RetryPolicy(attempts=3, base_delay=0.1), transient, sleep=sleeps.append)
    assert sleeps == [0.1, 0.2]


def test_an_existing_client_can_be_the_location(corpus: dict) -> None:
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    store = QdrantStore.create(client, "mine", dim=DIM, model="toy", settings=QdrantSettings(muvera=SMALL_MUVERA))
    assert store.engine == "local"
    store.add_embeddings(corpus["docs"][:5], corpus["ids"][:5])
    reopened = QdrantStore.open(client, "mine")
    assert reopened.count() == 5 and reopened.settings.muvera == SMALL_MUVERA
    # the layout is in the collection's own metadata, readable by any Qdrant client
    assert client.get_collection("mine").config.metadata["maxsim"]["dim"] == DIM
    client.close()


@pytest.mark.parametrize("storage", ["float32", "float16", "uint8"])
def test_collection_layout_in_qdrant(storage: str) -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(":memory:")
    settings = QdrantSettings(storage=storage, muvera=SMALL_MUVERA, muvera_hnsw_m=8)
    QdrantStore.create(client, "layout", dim=96, settings=settings)
    vectors = client.get_collection("layout").config.params.vectors
    assert set(vectors) == {"maxsim", "muvera", "pooled"}
    multi = vectors["maxsim"]
    assert multi.size == 96 and multi.distance == models.Distance.DOT
    assert multi.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert multi.hnsw_config.m == 0  # rerank only: no graph on the multivectors
    assert (multi.datatype == models.Datatype.FLOAT16) == (storage == "float16")
    assert isinstance(multi.quantization_config, models.ScalarQuantization) == (storage == "uint8")
    assert vectors["muvera"].size == SMALL_MUVERA.output_dim and vectors["muvera"].hnsw_config.m == 8
    assert vectors["pooled"].size == 96
    client.close()
