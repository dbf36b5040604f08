"""maxsim against the Jina-ColBERT-v2 reference outputs (shared fixture ``jina-colbert-v2-parity``).

``reference.npz`` holds, for 6 queries and 8 documents, the token ids and attention masks, the
last hidden state and the normalised vectors at 128/96/64 that the public reference code gives
on a tiny random checkpoint in the real layouts. Every case is compared at atol 1e-5 in float32,
batched and one text at a time. Documents are compared on PyLate's rows (the convention maxsim
follows: padding and skiplisted punctuation dropped).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "jina-colbert-v2-parity"
CKPT = FIXTURE / "tiny-jina-colbert-v2"
ATOL = 1e-5

pytestmark = pytest.mark.skipif(not (FIXTURE / "reference.npz").is_file(), reason=f"{FIXTURE} is not available")

# (case, checkpoint folder, dim, reference key prefix)
CASES = [
    ("main", ".", 128, "main_d128"),
    ("main", ".", 96, "main_d96"),
    ("main", ".", 64, "main_d64"),
    ("variant_dim96", "variants/dim96", 96, "variant_dim96_d96"),
    ("variant_dim64", "variants/dim64", 64, "variant_dim64_d64"),
    ("pylate_export", "variants/pylate-export", 128, "main_d128"),
]


@lru_cache(maxsize=1)
def reference():
    meta = json.loads((FIXTURE / "reference.json").read_text())
    npz = np.load(FIXTURE / "reference.npz", allow_pickle=False)
    return meta, {k: npz[k] for k in npz.files}


def arr(i: int, key: str) -> np.ndarray:
    return reference()[1][f"i{i:02d}_{key}"]


def items(is_query: bool) -> list[tuple[int, str]]:
    return [(i, it["text"]) for i, it in enumerate(reference()[0]["items"]) if it["is_query"] == is_query]


@lru_cache(maxsize=8)
def model(sub: str = ".", dtype: str = "float32"):
    import maxsim

    return maxsim.load(CKPT / sub, dtype=dtype)


def expected_vectors(i: int, key: str, is_query: bool) -> np.ndarray:
    full = arr(i, f"{key}_all")
    return full if is_query else full[arr(i, "keep_pylate").astype(bool)]


def encode(m, texts, is_query, dim, one_by_one):
    fn = m.encode_queries if is_query else m.encode_documents
    if one_by_one:
        return [fn([t], dim=dim)[0] for t in texts]
    return fn(texts, dim=dim)


def test_reference_checkpoint_is_the_one_in_the_fixture():
    import hashlib

    meta, _ = reference()
    for rel, digest in meta["checkpoint_sha256"].items():
        assert hashlib.sha256((CKPT / rel).read_bytes()).hexdigest() == digest, rel


@pytest.mark.parametrize("sub", [".", "variants/pylate-export", "variants/dim96"])
@pytest.mark.parametrize("is_query", [True, False], ids=["queries", "documents"])
def test_token_ids_and_attention_match(sub, is_query):
    m = model(sub)
    pairs = items(is_query)
    tok = m.tokenizer.queries if is_query else m.tokenizer.documents
    for (i, _), got in zip(pairs, tok([t for _, t in pairs])):
        np.testing.assert_array_equal(got.ids, arr(i, "input_ids"), err_msg=f"item {i}")
        np.testing.assert_array_equal(got.attention, arr(i, "attention_mask").astype(bool), err_msg=f"item {i}")
        np.testing.assert_array_equal(got.keep, arr(i, "keep_pylate").astype(bool) if not is_query else True)


@pytest.mark.parametrize("one_by_one", [False, True], ids=["batched", "one-by-one"])
@pytest.mark.parametrize("case,sub,dim,key", CASES, ids=[f"{c[0]}-d{c[2]}" for c in CASES])
def test_vectors_match_reference(case, sub, dim, key, one_by_one):
    m = model(sub)
    worst = 0.0
    for is_query in (True, False):
        pairs = items(is_query)
        outs = encode(m, [t for _, t in pairs], is_query, dim, one_by_one)
        assert len(outs) == len(pairs)
        for (i, _), got in zip(pairs, outs):
            exp = expected_vectors(i, key, is_query)
            assert got.dtype == np.float32
            assert got.shape == exp.shape, f"item {i}: shape {got.shape} != {exp.shape}"
            err = float(np.abs(got - exp).max())
            worst = max(worst, err)
            assert err <= ATOL, f"{case} dim {dim} item {i}: max abs error {err:.3g}"
    print(f"{case} d{dim} {'one-by-one' if one_by_one else 'batched'}: max abs error {worst:.3g}")


@pytest.mark.parametrize("one_by_one", [False, True], ids=["batched", "one-by-one"])
@pytest.mark.parametrize("sub", [".", "variants/pylate-export"])
def test_last_hidden_states_match_reference(sub, one_by_one):
    m = model(sub)
    for is_query in (True, False):
        pairs = items(is_query)
        texts = [t for _, t in pairs]
        outs = [m.hidden_states([t], is_query)[0] for t in texts] if one_by_one else m.hidden_states(texts, is_query)
        for (i, _), got in zip(pairs, outs):
            exp = arr(i, "hidden")
            assert got.shape == exp.shape
            err = float(np.abs(got - exp).max())
            assert err <= ATOL, f"item {i}: hidden max abs error {err:.3g}"


def test_dims_served_from_each_checkpoints_own_head():
    assert model(".").dims == (128, 96, 64)
    assert model("variants/dim96").dims == (96, 64)
    assert model("variants/dim64").dims == (64,)
    assert 96 in model("variants/dim96").heads and 64 in model("variants/dim64").heads
    # The variants' heads are independent: truncating the 128 head would not reproduce them.
    i, text = items(False)[0]
    trunc = model(".").encode_documents([text], dim=96)[0]
    own = model("variants/dim96").encode_documents([text], dim=96)[0]
    assert np.abs(trunc - own).max() > 1e-2


def test_settings_come_from_the_files():
    m = model(".")
    s = m.tokenizer.settings
    assert m.max_positions == 8194  # max_position_embeddings / model_max_length
    assert (s.query_marker_ids, s.document_marker_ids) == ((526,), (527,))
    assert (s.expansion_token_id, s.pad_token_id) == (525, 1)
    assert (s.query_length, s.document_length, s.attend_to_expansion) == (32, 8192, True)
    assert sorted(s.skiplist_ids) == reference()[0]["skiplist_ids_pylate"]
    assert m.encoder.config.rotary_base == 20000.0
    assert m.info["backbone"] == "jina-xlm-roberta-rotary" and m.info["notes"] == []


def test_a_wrong_rotary_base_is_caught():
    """The comparison is sensitive: the config's base (20000) matters at this tolerance."""
    import maxsim

    m = maxsim.load(CKPT)
    m.encoder.rotary.base = 10000.0
    m.encoder.rotary._cache = None
    i, text = items(False)[-2]  # the 894-token document
    err = np.abs(m.encode_documents([text])[0] - expected_vectors(i, "main_d128", False)).max()
    assert err > 1e-3


def test_bfloat16_is_close_to_the_float32_reference():
    m = model(".", "bfloat16")
    pairs = items(False)
    for (i, _), got in zip(pairs, m.encode_documents([t for _, t in pairs])):
        exp = expected_vectors(i, "main_d128", False)
        cos = (got * exp).sum(axis=1)
        assert cos.min() > 0.98, f"item {i}: min cosine {cos.min():.4f}"


def test_long_documents_one_pass_truncated_or_windowed():
    m = model(".")
    long_text = " ".join([items(False)[-2][1]] * 12)  # ~10.7k tokens
    whole = m.tokenizer.documents([long_text], truncate=False)[0]
    assert len(whole) > m.document_length
    cut = m.tokenizer.documents([long_text])[0]
    assert len(cut) == m.document_length == 8192 and cut.ids[-1] == whole.ids[-1]
    truncated = m.encode_documents([long_text])[0]
    assert truncated.shape == (int(cut.keep.sum()), 128)
    windowed = m.encode_documents([long_text], long_documents="window")[0]
    assert windowed.shape == (int(whole.keep.sum()), 128)
    # The first window is the truncated document, so its rows (away from the seam) agree.
    n = int(cut.keep[: 8192 - 64].sum())
    assert np.abs(windowed[:n] - truncated[:n]).max() < 1e-5


def test_check_py_passes_with_the_project_adapters():
    cmd = [
        sys.executable,
        str(FIXTURE / "check.py"),
        "--encoder",
        "maxsim.models.parity:encode",
        "--hidden",
        "maxsim.models.parity:hidden",
        "--atol",
        str(ATOL),
        "--path",
        str(ROOT),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "0 failed" in proc.stdout and proc.stdout.strip().endswith("PASS")


def test_lengths_can_be_overridden_by_the_caller():
    import maxsim

    m = maxsim.load(CKPT, document_length=300)
    assert m.document_length == 300 and m.info["settings"]["document_length"] == [300, "caller"]
    i, text = items(False)[-2]  # 894 tokens
    item = m.tokenizer.documents([text])[0]
    assert len(item) == 300 and item.truncated and item.ids[-1] == 2
    assert m.encode_documents([text])[0].shape == (int(item.keep.sum()), 128)
