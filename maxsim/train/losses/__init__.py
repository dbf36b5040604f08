"""Training losses, one per file. Each has ``compute_loss_from_scores`` (the maths, testable
without a model) and is driven by :class:`maxsim.train.losses.matryoshka.MatryoshkaLoss`."""

from __future__ import annotations

from maxsim.train.losses.contrastive import ContrastiveLoss
from maxsim.train.losses.distillation import DistillationLoss
from maxsim.train.losses.matryoshka import MatryoshkaLoss
from maxsim.train.losses.scores import colbert_scores, truncate_normalize

__all__ = ["ContrastiveLoss", "DistillationLoss", "MatryoshkaLoss", "colbert_scores", "truncate_normalize"]
