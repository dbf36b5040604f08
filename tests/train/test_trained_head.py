"""The trained adapter artefact loads onto the default backbone and gives the stored vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ARTEFACT = ROOT / "bench" / "results" / "trained-adapter" / "adapter.safetensors"
FINGERPRINT = Path(__file__).with_name("trained_adapter_fingerprint.json")
TEXTS = {"query": "Where is the Eiffel Tower?", "document": "La tour Eiffel est à Paris. 埃菲尔铁塔位于巴黎。"}


def fingerprint(model) -> dict:
    vectors = {
        "query": model.encode_queries([TEXTS["query"]], dim=64)[0],
        "document": model.encode_documents([TEXTS["document"]], dim=128)[0],
    }
    return {k: {"shape": list(v.shape), "row0": [round(float(x), 4) for x in v[0, :8]], "sum": round(float(v.sum()), 3)}
            for k, v in vectors.items()}


def test_adapter_is_small_and_says_what_it_is():
    from maxsim.models.adapter import read_adapter

    assert ARTEFACT.stat().st_size < 5_000_000
    head, lora, scale, meta = read_adapter(ARTEFACT)
    assert tuple(head.weight.shape) == (128, 384) and lora and scale > 0
    assert {"trained_on", "licence_of_training_data", "recipe"} <= set(meta)


def test_adapter_on_the_default_backbone_matches_the_fingerprint(default_model):
    from maxsim.models.adapter import apply_adapter
    from maxsim.models.default_model import load_default_model

    model = load_default_model(adapter=False)
    apply_adapter(model, ARTEFACT)
    got = fingerprint(model)
    want = json.loads(FINGERPRINT.read_text())
    for kind in ("query", "document"):
        assert got[kind]["shape"] == want[kind]["shape"]
        assert np.allclose(got[kind]["row0"], want[kind]["row0"], atol=2e-3), (got[kind], want[kind])
        assert abs(got[kind]["sum"] - want[kind]["sum"]) < 0.05
    # the package default (no adapter shipped) gives other vectors
    assert fingerprint(default_model)["document"]["sum"] != want["document"]["sum"]
