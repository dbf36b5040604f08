from __future__ import annotations

import json

import numpy as np
import pytest

from maxsim.evaluation.datasets import DatasetError, find_collections, load_collection, sample_collection
from maxsim.evaluation.runner import HYBRID_SYSTEMS, EvalConfig, evaluate, late_interaction_topk
from maxsim.scoring.maxsim import maxsim_scores


def test_find_and_load(beir_root):
    found = find_collections([beir_root])
    assert [p.name for p in found] == ["toy-en", "toy-zh"]  # the train-only folder is skipped
    col = load_collection(found[0])
    assert len(col.corpus) == 4 and col.qrels["q1"] == {"d1": 1} and col.language == "en"
    with pytest.raises(DatasetError, match="does not exist"):
        find_collections([beir_root / "nope"])
    with pytest.raises(DatasetError, match="holds none"):
        find_collections([beir_root / "train-only"])


def test_qrels_naming_unknown_documents_are_rejected(beir_root):
    f = beir_root / "toy-en" / "qrels" / "dev.tsv"
    f.write_text(f.read_text() + "q1\tmissing\t1\n")
    with pytest.raises(DatasetError, match="missing"):
        load_collection(beir_root / "toy-en")


def test_sample_keeps_judged_documents(beir_root):
    col = load_collection(beir_root / "toy-en")
    s = sample_collection(col, max_queries=2, max_docs=2, seed=1)
    assert len(s.queries) == 2
    judged = {d for r in s.qrels.values() for d in r}
    assert judged <= set(s.corpus) and len(s.corpus) == 2
    assert sample_collection(col, 2, 2, seed=1).queries == s.queries  # reproducible


def test_topk_matches_reference_maxsim():
    rng = np.random.default_rng(0)

    def unit(n, d):
        x = rng.normal(size=(n, d)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    queries = [unit(5, 16) for _ in range(3)]
    docs = [unit(int(n), 16) for n in rng.integers(1, 30, size=40)] + [np.zeros((0, 16), np.float32)]
    idx, vals = late_interaction_topk(queries, docs, k=10, doc_chunk_tokens=64)
    for i, q in enumerate(queries):
        ref = maxsim_scores(q, docs)
        order = np.argsort(-ref, kind="stable")[:10]
        assert np.allclose(np.sort(vals[i])[::-1], ref[order], atol=1e-5)


def test_projection_matches_the_model(tiny):
    from maxsim.evaluation.encoding import backbone_states, project

    texts = ["the cat sat on the mat", "dogs run in the park today", "flour ."]
    states = backbone_states(tiny, tiny.tokenizer.documents(texts))
    vecs = project(states, tiny.heads[128], [128, 64])
    for dim in (128, 64):
        for got, want in zip(vecs[dim], tiny.encode_documents(texts, dim=dim)):
            assert got.shape == want.shape
            assert np.allclose(got, want, atol=2e-3)


def test_evaluate_end_to_end_writes_the_report(beir_root, tiny, tmp_path):
    out = tmp_path / "report"
    data = evaluate(
        [beir_root],
        tiny,
        EvalConfig(dims=(128, 64), cache_dir=str(tmp_path / "cache"), show_progress=False),
        out=out,
        log_fn=None,
    )
    assert [c["name"] for c in data["collections"]] == ["toy-en", "toy-zh"]
    systems = set(data["average"])
    assert systems == {"bm25", "dense", "colbert-128", "colbert-64", *HYBRID_SYSTEMS}  # hybrid: bm25 + colbert-128
    for c in data["collections"]:
        for s in systems:
            assert 0.0 <= c["metrics"][s]["ndcg@10"] <= 1.0
    # BM25 gets the Chinese toy collection right thanks to bigrams
    zh = next(c for c in data["collections"] if c["name"] == "toy-zh")
    assert zh["metrics"]["bm25"]["mrr@10"] == 1.0
    assert set(data["by_language"]) == {"en", "zh"}
    for name in ("results.json", "results.md", "ndcg_per_collection.png", "ndcg_vs_dim.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "results.md").read_text()
    assert "| **average** |" in md and "colbert-64 nDCG@10" in md
    assert json.loads((out / "results.json").read_text())["average"] == data["average"]
    # a second run reads the cached backbone states and gives the same numbers
    again = evaluate(
        [beir_root],
        tiny,
        EvalConfig(dims=(128, 64), cache_dir=str(tmp_path / "cache"), show_progress=False),
        log_fn=None,
    )
    assert again["average"] == data["average"]


def test_cli_names_bad_input(capsys, tmp_path):
    from maxsim.cli import main

    assert main(["eval", str(tmp_path / "missing"), "--baselines", "bm25", "--no-colbert"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_bm25_only(beir_root, tmp_path):
    from maxsim.cli import main

    assert (
        main(
            [
                "eval",
                str(beir_root / "toy-zh"),
                "--baselines",
                "bm25",
                "--no-colbert",
                "--out",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert set(data["average"]) == {"bm25"}


def test_dense_baseline_uses_the_plain_backbone_when_the_encoder_is_adapted(beir_root, tmp_path):
    """A LoRA adapter changes ColBERT's encoder; the dense baseline must stay the plain backbone's."""
    import torch

    from maxsim.models.adapter import apply_adapter, save_adapter
    from maxsim.train.tiny import tiny_model

    words = [
        w
        for f in ("corpus.jsonl", "queries.jsonl")
        for line in (beir_root / "toy-en" / f).read_text().splitlines()
        for w in json.loads(line)["text"].split()
    ]
    plain = tiny_model(words, seed=0)
    adapted = tiny_model(words, seed=0)
    fc1 = adapted.encoder.layers[1].fc1
    g = torch.Generator().manual_seed(0)
    lora = {
        "layers.1.fc1": (torch.randn(2, fc1.in_features, generator=g), torch.randn(fc1.out_features, 2, generator=g))
    }
    apply_adapter(adapted, save_adapter(tmp_path / "a.safetensors", adapted.heads[128], lora, lora_scale=1.0))
    adapted.info["adapter"] = "a.safetensors"
    config = EvalConfig(dims=(128,), show_progress=False)
    base = evaluate([beir_root], plain, config, log_fn=None)
    with_plain = evaluate([beir_root], adapted, config, dense_model=plain, log_fn=None)
    shared = evaluate([beir_root], adapted, config, dense_model=adapted, log_fn=None)
    for a, b, c in zip(base["collections"], with_plain["collections"], shared["collections"]):
        assert a["metrics"]["dense"] == b["metrics"]["dense"]
        assert b["metrics"]["colbert-128"] == c["metrics"]["colbert-128"]
    assert with_plain["adapter"] == "a.safetensors"
    with pytest.raises(ValueError, match="carries an adapter"):
        evaluate([beir_root], adapted, config, log_fn=None)  # a non-default model: no automatic plain backbone
