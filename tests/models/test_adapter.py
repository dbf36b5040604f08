"""Adapter files: LoRA factors merge into the encoder exactly; bad files give clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maxsim.models.adapter import AdapterError, apply_adapter, merge_lora, read_adapter, save_adapter


def tiny():
    from maxsim.train.tiny import tiny_model

    return tiny_model(["alpha", "beta", "gamma", "delta"], seed=3)


def test_merge_adds_the_low_rank_product(tmp_path):
    model = tiny()
    before = model.encoder.layers[1].fc1.weight.detach().clone()
    a, b = torch.randn(2, before.shape[1]), torch.randn(before.shape[0], 2)
    head = nn.Linear(32, 128)
    path = save_adapter(
        tmp_path / "a.safetensors", head, {"layers.1.fc1": (a, b)}, lora_scale=0.5, metadata={"note": "x"}
    )
    got_head, lora, scale, meta = read_adapter(path)
    assert scale == 0.5 and meta["note"] == "x" and set(lora) == {"layers.1.fc1"}
    assert torch.equal(got_head.weight, head.weight)
    apply_adapter(model, path)
    # factors are stored as float16
    expected = before + 0.5 * (b.half().float() @ a.half().float())
    assert torch.allclose(model.encoder.layers[1].fc1.weight, expected, atol=1e-5)
    assert model.heads[128].weight.data_ptr() != head.weight.data_ptr()


def test_bad_adapters_are_refused(tmp_path):
    model = tiny()
    with pytest.raises(FileNotFoundError):
        read_adapter(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(AdapterError, match="not a readable"):
        read_adapter(tmp_path / "junk.safetensors")
    with pytest.raises(AdapterError, match="not a Linear"):
        merge_lora(model.encoder, {"layers.7.fc1": (torch.zeros(2, 32), torch.zeros(64, 2))}, 1.0)
    with pytest.raises(AdapterError, match="shapes"):
        merge_lora(model.encoder, {"layers.0.fc1": (torch.zeros(2, 31), torch.zeros(64, 2))}, 1.0)
    wide = save_adapter(tmp_path / "wide.safetensors", nn.Linear(48, 128))
    with pytest.raises(AdapterError, match="48 inputs"):
        apply_adapter(model, wide)
