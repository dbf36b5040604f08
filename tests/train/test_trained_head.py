"""The shipped trained adapter: small, says what it is, loads by default, and gives the stored vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from maxsim.models.default_model import ADAPTER_RESOURCE

FINGERPRINT = Path(__file__).with_name("trained_adapter_fingerprint.json")
TEXTS = {"query": "Where is the Eiffel Tower?", "document": "La tour Eiffel est à Paris. 埃菲尔铁塔位于巴黎。"}


def fingerprint(model) -> dict:
    vectors = {
        "query": model.encode_queries([TEXTS["query"]], dim=64)[0],
        "document": model.encode_documents([TEXTS["document"]], dim=128)[0],
    }
    return {
        k: {"shape": list(v.shape), "row0": [round(float(x), 4) for x in v[0, :8]], "sum": round(float(v.sum()), 3)}
        for k, v in vectors.items()
    }


def test_shipped_adapter_is_small_and_says_what_it_is():
    from maxsim.models.adapter import read_adapter

    assert ADAPTER_RESOURCE.is_file(), "the trained adapter must ship inside the package"
    assert ADAPTER_RESOURCE.stat().st_size < 5_000_000
    head, lora, scale, meta = read_adapter(ADAPTER_RESOURCE)
    assert tuple(head.weight.shape) == (128, 384) and lora and scale > 0
    assert {"trained_on", "licence_of_training_data", "recipe", "licence"} <= set(meta)
    # trained on CC BY-SA text, so the weights carry CC BY-SA 4.0 (the model card says so too)
    assert meta["licence"] == "CC BY-SA 4.0"
    assert "persianqa-fa" not in json.loads(meta["trained_on"])  # GPL-3.0: evaluation only
    assert "training pairs" in meta["head_rotation"]  # scripts/rotate_head.py, on training data only


def test_the_shipped_heads_first_coordinates_carry_most_of_the_energy(default_model):
    """The head is rotated onto principal axes, so the 64- and 96-d cuts keep more than an even share."""
    from maxsim.models.head_rotation import prefix_energy

    vectors = default_model.encode_documents([TEXTS["document"], "Der Eiffelturm steht in Paris."], dim=128)
    vectors += default_model.encode_queries([TEXTS["query"]], dim=128)
    assert prefix_energy(vectors, 64) > 0.65 and prefix_energy(vectors, 96) > 0.85


def test_default_model_uses_the_adapter_and_matches_the_fingerprint(default_model):
    assert default_model.info.get("adapter") == ADAPTER_RESOURCE.name
    got = fingerprint(default_model)
    want = json.loads(FINGERPRINT.read_text())
    for kind in ("query", "document"):
        assert got[kind]["shape"] == want[kind]["shape"]
        assert np.allclose(got[kind]["row0"], want[kind]["row0"], atol=2e-3), (got[kind], want[kind])
        assert abs(got[kind]["sum"] - want[kind]["sum"]) < 0.05


def test_plain_backbone_with_the_pca_head_is_still_available():
    from maxsim.models.default_model import load_default_model

    plain = load_default_model(adapter=False)
    assert "adapter" not in plain.info
    assert fingerprint(plain)["document"]["sum"] != json.loads(FINGERPRINT.read_text())["document"]["sum"]
