"""The committed trained head loads, and the default backbone with it gives the stored vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTEFACT = ROOT / "bench" / "results" / "trained-head" / "head-trained.safetensors"
FINGERPRINT = Path(__file__).with_name("trained_head_fingerprint.json")
TEXTS = {"query": "Where is the Eiffel Tower?", "document": "La tour Eiffel est à Paris. 埃菲尔铁塔位于巴黎。"}


def encode_with_head(default_model, head_path: Path) -> dict[str, np.ndarray]:
    from maxsim.evaluation.runner import load_head_file
    from maxsim.models.colbert import Model

    head = load_head_file(head_path)
    m = default_model
    model = Model(m.encoder, {128: head}, m.tokenizer, name="trained", max_positions=m.max_positions)
    return {
        "query": model.encode_queries([TEXTS["query"]], dim=64)[0],
        "document": model.encode_documents([TEXTS["document"]], dim=128)[0],
    }


def fingerprint(vectors: dict[str, np.ndarray]) -> dict:
    return {k: {"shape": list(v.shape), "row0": [round(float(x), 4) for x in v[0, :8]], "sum": round(float(v.sum()), 3)}
            for k, v in vectors.items()}


@pytest.mark.skipif(not ARTEFACT.is_file(), reason="no trained head committed")
def test_trained_head_matches_fingerprint(default_model):
    from safetensors import safe_open

    with safe_open(str(ARTEFACT), framework="pt") as fh:
        assert set(fh.keys()) == {"weight", "bias"}
        assert list(fh.get_tensor("weight").shape) == [128, 384]
        assert "trained_on" in (fh.metadata() or {})
    got = fingerprint(encode_with_head(default_model, ARTEFACT))
    want = json.loads(FINGERPRINT.read_text())
    for kind in ("query", "document"):
        assert got[kind]["shape"] == want[kind]["shape"]
        assert np.allclose(got[kind]["row0"], want[kind]["row0"], atol=2e-3)
        assert abs(got[kind]["sum"] - want[kind]["sum"]) < 0.05
