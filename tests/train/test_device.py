"""Training device: "auto" resolves to what exists, an unavailable device is refused up front,
every tensor reaching the loss sits on the trained head's device, checkpoints are CPU tensors.

Only the CPU is tested here (no GPU on the machine these tests were written on)."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from maxsim.errors import MaxsimError
from maxsim.train.data import mine_bm25_negatives
from maxsim.train.trainer import (
    Trainer,
    TrainingArguments,
    TrainingError,
    resolve_device,
)

COMMON = {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "save_steps": 0, "eval_steps": 0, "show_progress": False}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def test_auto_resolves_to_an_available_device():
    device = resolve_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif _mps_available():
        assert device.type == "mps"
    else:
        assert device == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device("CPU:0") == torch.device("cpu")
    assert TrainingArguments(output_dir="x").device == "auto"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU exists here")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_unavailable_cuda_is_refused_naming_it(tmp_path, spec):
    with pytest.raises(TrainingError, match=f"device '{spec}' is not available"):
        TrainingArguments(output_dir=str(tmp_path), device=spec)
    with pytest.raises(TrainingError, match=spec):
        resolve_device(spec)


@pytest.mark.skipif(_mps_available(), reason="MPS exists here")
def test_unavailable_mps_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="device 'mps' is not available"):
        TrainingArguments(output_dir=str(tmp_path), device="mps")


@pytest.mark.parametrize("spec", ["gpu", "tpu", "meta", "cuda:x"])
def test_unknown_device_is_refused(tmp_path, spec):
    with pytest.raises(TrainingError, match="device must be"):
        TrainingArguments(output_dir=str(tmp_path), device=spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU exists here")
def test_cli_refuses_an_unavailable_device_before_any_work(tmp_path):
    from maxsim.train.run import run_from_args

    # data that does not exist: the device error must come first
    ns = argparse.Namespace(
        data=[str(tmp_path / "missing.jsonl")],
        out=str(tmp_path / "out"),
        model=None,
        trainable="head",
        epochs=1,
        max_steps=None,
        max_seconds=None,
        batch_size=8,
        lr=1e-3,
        temperature=1.0,
        dims=[128, 96, 64],
        dim_weights=None,
        hard_negatives=1,
        mine="none",
        distill_weight=0.0,
        per_source=None,
        dev_fraction=0.0,
        carve=[],
        carve_fraction=0.3,
        carve_out=None,
        doc_maxlen=180,
        lora_r=8,
        lora_alpha=16,
        bf16=False,
        lora_layers=None,
        top_layers=2,
        eval_steps=0,
        save_steps=0,
        cache_dir=None,
        seed=0,
        threads=None,
        no_resume=False,
        device="cuda",
    )
    with pytest.raises(MaxsimError, match="device 'cuda' is not available"):
        run_from_args(ns)
    assert not (tmp_path / "out").exists()


def test_cli_parses_device():
    from maxsim.cli.train import add_train_commands

    parser = argparse.ArgumentParser()
    add_train_commands(parser.add_subparsers())
    assert parser.parse_args(["train", "d", "--out", "o"]).device == "auto"
    assert parser.parse_args(["train", "d", "--out", "o", "--device", "cuda:1"]).device == "cuda:1"


@pytest.mark.skipif(torch.cuda.is_available() or _mps_available(), reason="auto is not the CPU here")
def test_explicit_cpu_equals_the_default(make_tiny, pairs, tmp_path):
    pairs = mine_bm25_negatives(pairs, n=1)
    default = Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / "a"), **COMMON), pairs)
    cpu = Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / "b"), device="cpu", **COMMON), pairs)
    assert default.device == cpu.device == torch.device("cpu")
    default.train()
    cpu.train()
    for (n, a), b in zip(default.trainable.items(), cpu.trainable.values()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize(
    "trainable,extra", [("head", {}), ("lora", {"lora_layers": 1}), ("lora", {}), ("top-layers", {})]
)
def test_every_tensor_reaching_the_loss_is_on_the_training_device(make_tiny, pairs, tmp_path, trainable, extra):
    pairs = mine_bm25_negatives(pairs, n=1)
    pairs = [replace(p, scores=[1.0] + [0.5] * len(p.negatives)) for p in pairs]  # distillation too
    args = TrainingArguments(
        output_dir=str(tmp_path), trainable=trainable, device="cpu", distill_weight=0.5, **COMMON, **extra
    )
    trainer = Trainer(make_tiny(), args, pairs)
    trainer.prepare()
    tensors = trainer.batch_tensors(list(range(8)), step=0)
    assert all(t is not None for t in tensors)  # candidates and teacher too
    for t in tensors:
        assert t.device == trainer.device
    for n, p in trainer.trainable.items():
        assert p.device == trainer.device, n
    for n, p in trainer.forward.named_parameters():
        assert p.device == trainer.device, n


def test_checkpoint_tensors_are_cpu_and_resume_in_a_new_trainer(make_tiny, pairs, tmp_path):
    pairs = mine_bm25_negatives(pairs, n=1)
    common = dict(COMMON, trainable="lora", lora_layers=1, device="cpu")
    straight = Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / "a"), **common), pairs)
    straight.train()
    first = Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / "b"), max_seconds=0, **common), pairs)
    assert first.train().step == 1
    for name in ("trainable.safetensors", "optimizer.safetensors"):
        assert all(t.device.type == "cpu" for t in load_file(str(tmp_path / "b" / "checkpoint" / name)).values())
    # resumed by a new Trainer with device "auto" (the CPU here; any device elsewhere)
    second = Trainer(
        make_tiny(), TrainingArguments(output_dir=str(tmp_path / "b"), **{**common, "device": "auto"}), pairs
    )
    assert second.load_checkpoint() and second.state.step == 1
    moments = [v for st in second.optimizer.state.values() for k, v in st.items() if k != "step"]
    assert moments and all(v.device == second.device for v in moments)
    second.train()
    assert second.state.step == straight.state.step == straight.total_steps
    for (n, a), b in zip(straight.trainable.items(), second.trainable.values()):
        assert torch.allclose(a.cpu(), b.cpu(), atol=1e-6), n
    # the model is left serving on the CPU
    assert all(p.device.type == "cpu" for p in second.model.encoder.parameters())
    assert all(p.device.type == "cpu" for h in second.model.heads.values() for p in h.parameters())
