"""A few steps on a tiny model lower the loss; an interrupted run resumes where it stopped."""

from __future__ import annotations

import pytest
import torch

from maxsim.train.data import mine_bm25_negatives, split_by_document
from maxsim.train.trainer import Trainer, TrainingArguments, TrainingError


def fixed_batch_loss(trainer: Trainer) -> float:
    with torch.no_grad():
        return float(trainer.batch_loss(list(range(0, 16, 2)), step=0)[0])


@pytest.mark.parametrize("trainable", ["head", "lora", "top-layers"])
def test_training_lowers_the_loss(tiny, pairs, tmp_path, trainable):
    pairs = mine_bm25_negatives(pairs, n=1)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        trainable=trainable,
        epochs=6,
        batch_size=8,
        learning_rate=1e-2,
        save_steps=0,
        eval_steps=0,
        show_progress=False,
    )
    trainer = Trainer(tiny, args, pairs)
    frozen = {n: p.clone() for n, p in tiny.encoder.named_parameters() if not p.requires_grad}
    before = fixed_batch_loss(trainer)
    state = trainer.train()
    after = fixed_batch_loss(trainer)
    assert state.step == trainer.total_steps > 0
    assert after < 0.8 * before, (before, after)
    # only the chosen parts moved
    for n, p in tiny.encoder.named_parameters():
        if n in frozen:
            assert torch.equal(frozen[n], p), n
    assert (tmp_path / "head.safetensors").is_file()
    if trainable != "head":
        assert (tmp_path / "encoder-trainable.safetensors").is_file()


def test_resumed_run_continues_where_it_stopped(make_tiny, pairs, tmp_path):
    pairs = mine_bm25_negatives(pairs, n=1)
    common = dict(
        trainable="head", epochs=3, batch_size=8, learning_rate=3e-3, save_steps=0, eval_steps=0, show_progress=False
    )
    straight = Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / "a"), **common), pairs)
    straight.train()
    # interrupted after its first step (time budget 0), then resumed by a new process-like Trainer
    first = Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / "b"), max_seconds=0, **common), pairs)
    state = first.train()
    assert state.step == 1 and (tmp_path / "b" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "b" / "head-last.safetensors").exists()  # not finished
    second = Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / "b"), **common), pairs)
    assert second.load_checkpoint() and second.state.step == 1
    state = second.train()
    assert state.step == straight.state.step == straight.total_steps
    for (n, a), b in zip(straight.trainable.items(), second.trainable.values()):
        assert torch.allclose(a, b, atol=1e-6), n
    assert (tmp_path / "b" / "head-last.safetensors").is_file()


def test_checkpoint_from_other_settings_is_refused(make_tiny, pairs, tmp_path):
    args = TrainingArguments(
        output_dir=str(tmp_path), epochs=1, batch_size=8, max_seconds=0, show_progress=False, save_steps=0
    )
    Trainer(make_tiny(), args, pairs).train()
    other = TrainingArguments(output_dir=str(tmp_path), epochs=1, batch_size=4, show_progress=False)
    with pytest.raises(TrainingError, match="batch_size"):
        Trainer(make_tiny(), other, pairs).train()


def test_dev_evaluation_keeps_the_best_head(make_tiny, pairs, tmp_path):
    train, dev = split_by_document(pairs, 0.3, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        epochs=4,
        batch_size=8,
        learning_rate=3e-3,
        eval_steps=2,
        save_steps=0,
        show_progress=False,
    )
    trainer = Trainer(make_tiny(), args, train, dev)
    metrics = trainer.evaluate()
    assert set(metrics) == {"dev_ndcg@10@128", "dev_ndcg@10@64"} and all(0 <= v <= 1 for v in metrics.values())
    state = trainer.train()
    evals = [h for h in state.history if "eval_step" in h]
    assert len(evals) >= 2 and state.best_step is not None
    assert (tmp_path / "head.safetensors").is_file()


def test_arguments_are_checked(tmp_path):
    with pytest.raises(TrainingError, match="trainable"):
        TrainingArguments(output_dir=str(tmp_path), trainable="all")
    with pytest.raises(TrainingError, match="unknown"):
        TrainingArguments.from_dict({"output_dir": str(tmp_path), "learning_rat": 1e-3})
    with pytest.raises(TrainingError, match="batch_size"):
        TrainingArguments(output_dir=str(tmp_path), batch_size=1)


def test_top_layer_forward_equals_the_full_forward(make_tiny):
    from maxsim.train.forward import EncoderForward, TopLayersForward

    model = make_tiny()
    head = model.heads[max(model.heads)]
    texts = ["w1 w2 w3 .", "w4 w5", "w6 w7 w8 w9 w10 f1 f2 ."]
    with torch.no_grad():
        for is_query in (True, False):
            full, full_mask = EncoderForward(model, head)(texts, is_query)
            top, top_mask = TopLayersForward(model, head, n=1)(texts, is_query)
            assert torch.equal(full_mask, top_mask)
            # cached lower-layer states are float16: equal up to that rounding
            assert torch.allclose(full[full_mask], top[top_mask], atol=2e-2, rtol=1e-2)


def test_lora_in_top_layers_trains_and_the_adapter_reproduces_it(make_tiny, pairs, tmp_path):
    from maxsim.models.adapter import apply_adapter, read_adapter

    pairs = mine_bm25_negatives(pairs, n=1)
    model = make_tiny()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        trainable="lora",
        lora_layers=1,
        lora_r=4,
        epochs=6,
        batch_size=8,
        learning_rate=1e-2,
        save_steps=0,
        eval_steps=0,
        show_progress=False,
    )
    trainer = Trainer(model, args, pairs)
    lower = {n: p.clone() for n, p in model.encoder.named_parameters() if n.startswith("layers.0.")}
    before = fixed_batch_loss(trainer)
    trainer.train()
    assert fixed_batch_loss(trainer) < 0.8 * before
    for n, p in model.encoder.named_parameters():
        if n in lower:
            assert torch.equal(lower[n], p), n  # the bottom layer is untouched and has no adapter
    head, lora, scale, _ = read_adapter(tmp_path / "head.safetensors")
    assert lora and all(name.startswith("layers.1.") for name in lora) and scale == 16 / 4
    # A fresh model with the adapter merged encodes like the trained (peft-wrapped) one.
    fresh = make_tiny()
    apply_adapter(fresh, tmp_path / "head.safetensors")
    texts = ["w1 w2 w3 f1 .", "w9 w8"]
    for a, b in zip(model.encode_documents(texts), fresh.encode_documents(texts)):
        assert a.shape == b.shape and abs(a - b).max() < 5e-3


def test_warm_start_from_an_adapter_with_more_adapted_layers(make_tiny, pairs, tmp_path):
    """--init-adapter: the run starts exactly where the adapter is, even with more layers adapted."""
    pairs = mine_bm25_negatives(pairs, n=1)
    common = dict(
        trainable="lora", lora_r=4, batch_size=8, learning_rate=1e-2, save_steps=0, eval_steps=0, show_progress=False
    )

    def trainer(out: str, **kw) -> Trainer:
        return Trainer(make_tiny(), TrainingArguments(output_dir=str(tmp_path / out), **{**common, **kw}), pairs)

    first = trainer("a", lora_layers=1, epochs=6)
    first.train()
    adapter = str(tmp_path / "a" / "head.safetensors")
    untrained = fixed_batch_loss(trainer("c", lora_layers=2))
    deeper = trainer("b", lora_layers=2, init_adapter=adapter)
    assert fixed_batch_loss(deeper) == pytest.approx(fixed_batch_loss(first), rel=1e-2)
    assert fixed_batch_loss(deeper) < 0.9 * untrained
    two_layers = str(deeper.save_head(tmp_path / "two.safetensors"))  # factors in layers 0 and 1
    with pytest.raises(TrainingError, match="layers.0.* not adapted in this run"):
        trainer("d", lora_layers=1, init_adapter=two_layers)
    with pytest.raises(TrainingError, match="rank 4"):
        trainer("e", lora_layers=2, lora_r=8, init_adapter=adapter)
    with pytest.raises(TrainingError, match="does not exist"):
        TrainingArguments(output_dir=str(tmp_path / "f"), init_adapter=str(tmp_path / "missing.safetensors"))


def test_a_head_trained_on_an_adapters_lora_keeps_its_factors(make_tiny, pairs, tmp_path):
    """trainable='head' with --init-adapter holding LoRA factors: they are merged into the frozen
    backbone, only the head trains, and the saved adapter carries the same factors."""
    from maxsim.models.adapter import apply_adapter, read_adapter

    pairs = mine_bm25_negatives(pairs, n=1)
    common = dict(batch_size=8, learning_rate=1e-2, save_steps=0, eval_steps=0, show_progress=False)
    first = Trainer(
        make_tiny(),
        TrainingArguments(
            output_dir=str(tmp_path / "a"), trainable="lora", lora_layers=1, lora_r=4, epochs=6, **common
        ),
        pairs,
    )
    first.train()
    adapter = tmp_path / "a" / "head.safetensors"
    _, lora, scale, _ = read_adapter(adapter)
    assert lora
    head_run = Trainer(
        make_tiny(),
        TrainingArguments(
            output_dir=str(tmp_path / "b"), trainable="head", epochs=6, init_adapter=str(adapter), **common
        ),
        pairs,
    )
    # it starts exactly where the adapter is (LoRA merged, the adapter's head)
    assert fixed_batch_loss(head_run) == pytest.approx(fixed_batch_loss(first), rel=1e-2)
    before = fixed_batch_loss(head_run)
    head_run.train()
    assert fixed_batch_loss(head_run) < before
    head, lora2, scale2, _ = read_adapter(tmp_path / "b" / "head.safetensors")
    assert scale2 == scale and set(lora2) == set(lora)
    for name, (a, b) in lora.items():
        assert torch.equal(a, lora2[name][0]) and torch.equal(b, lora2[name][1]), name
    old_head, _, _, _ = read_adapter(adapter)
    assert not torch.equal(head.weight, old_head.weight)  # the head did train
    # the written adapter, merged into a fresh model, encodes like the trained run's model
    fresh = make_tiny()
    apply_adapter(fresh, tmp_path / "b" / "head.safetensors")
    texts = ["w1 w2 w3 f1 .", "w9 w8"]
    for x, y in zip(head_run.model.encode_documents(texts), fresh.encode_documents(texts)):
        assert x.shape == y.shape and abs(x - y).max() < 5e-3
