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
    args = TrainingArguments(output_dir=str(tmp_path), trainable=trainable, epochs=6, batch_size=8,
                             learning_rate=1e-2, save_steps=0, eval_steps=0, show_progress=False)
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
    common = dict(trainable="head", epochs=3, batch_size=8, learning_rate=3e-3, save_steps=0, eval_steps=0, show_progress=False)
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
    args = TrainingArguments(output_dir=str(tmp_path), epochs=1, batch_size=8, max_seconds=0, show_progress=False, save_steps=0)
    Trainer(make_tiny(), args, pairs).train()
    other = TrainingArguments(output_dir=str(tmp_path), epochs=1, batch_size=4, show_progress=False)
    with pytest.raises(TrainingError, match="batch_size"):
        Trainer(make_tiny(), other, pairs).train()


def test_dev_evaluation_keeps_the_best_head(make_tiny, pairs, tmp_path):
    train, dev = split_by_document(pairs, 0.3, seed=0)
    args = TrainingArguments(output_dir=str(tmp_path), epochs=4, batch_size=8, learning_rate=3e-3,
                             eval_steps=2, save_steps=0, show_progress=False)
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
