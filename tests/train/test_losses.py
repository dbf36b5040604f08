"""The losses' maths on hand-made scores (no model)."""

from __future__ import annotations

import math

import pytest
import torch

from maxsim.train.losses import ContrastiveLoss, DistillationLoss, MatryoshkaLoss, colbert_scores, truncate_normalize


def test_contrastive_known_value():
    scores = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    loss = ContrastiveLoss().compute_loss_from_scores(scores, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)


def test_contrastive_temperature_and_ignore():
    scores = torch.tensor([[1.0, 1.0, 0.0]])
    # with the duplicate positive ignored only column 2 competes: log(1 + e^(-1/0.5))
    loss = ContrastiveLoss(temperature=0.5).compute_loss_from_scores(
        scores, torch.tensor([0]), ignore=torch.tensor([[True, True, False]])
    )
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), abs=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveLoss(temperature=0)


def test_distillation_zero_when_equal_and_known_value():
    s = torch.tensor([[3.0, 1.0, 0.0]])
    assert DistillationLoss().compute_loss_from_scores(s, s.clone()).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[0.0, 0.0]])  # uniform
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # p = (0.75, 0.25)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert DistillationLoss().compute_loss_from_scores(student, teacher).item() == pytest.approx(expected, abs=1e-6)
    masked = DistillationLoss().compute_loss_from_scores(
        torch.tensor([[0.0, 0.0, 9.0]]), torch.tensor([[math.log(3.0), 0.0, -5.0]]), torch.tensor([[True, True, False]])
    )
    assert masked.item() == pytest.approx(expected, abs=1e-6)


def test_colbert_scores_hand_example_and_masks():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    d = torch.tensor([[[0.6, 0.8], [1.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    qm = torch.tensor([[True, True]])
    dm = torch.tensor([[True, True], [True, False]])
    assert colbert_scores(q, qm, d, dm)[0].tolist() == pytest.approx([1.8, 1.0])
    # a masked query token contributes nothing
    assert colbert_scores(q, torch.tensor([[True, False]]), d, dm)[0].tolist() == pytest.approx([1.0, 0.0])


def test_matryoshka_sums_each_dim():
    torch.manual_seed(0)
    q, d = torch.randn(3, 4, 8), torch.randn(5, 6, 8)
    qm, dm = torch.ones(3, 4, dtype=torch.bool), torch.ones(5, 6, dtype=torch.bool)
    labels = torch.tensor([0, 1, 2])
    total, parts = MatryoshkaLoss(dims=(8, 4), weights=(1.0, 0.5)).compute_loss_from_embeddings(q, qm, d, dm, labels)
    manual = []
    for dim in (8, 4):
        s = colbert_scores(truncate_normalize(q, dim), qm, truncate_normalize(d, dim), dm)
        manual.append(ContrastiveLoss().compute_loss_from_scores(s, labels).item())
    assert parts["loss@8"] == pytest.approx(manual[0], rel=1e-5)
    assert parts["loss@4"] == pytest.approx(manual[1], rel=1e-5)
    assert total.item() == pytest.approx(manual[0] + 0.5 * manual[1], rel=1e-5)
    with pytest.raises(ValueError, match="weights"):
        MatryoshkaLoss(dims=(8, 4), weights=(1.0,))
