"""Contrastive loss with in-batch and hard negatives (InfoNCE over MaxSim scores)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maxsim.errors import InvalidArgumentError


class ContrastiveLoss(nn.Module):
    """Cross-entropy of each query's positive against every other document in the batch.

    Requirements: (query, positive) pairs, optionally with hard negatives; the batch's document
    set is every positive plus every hard negative, so each query also sees the other queries'
    positives and negatives (in-batch negatives).

    Inputs:

    +-----------------+------------------------------------------------------------+
    | scores          | [B, N] MaxSim of B queries against N batch documents        |
    | labels          | [B] column of each query's positive                         |
    | ignore          | optional [B, N] bool: columns not to use as negatives       |
    |                 | (e.g. another copy of the query's positive)                 |
    +-----------------+------------------------------------------------------------+

    Relations: ``DistillationLoss`` replaces the hard labels with a teacher's distribution;
    ``MatryoshkaLoss`` sums this loss over several dims.

    Example::

        loss = ContrastiveLoss(temperature=1.0)
        value = loss.compute_loss_from_scores(scores, labels)
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise InvalidArgumentError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def compute_loss_from_scores(
        self, scores: torch.Tensor, labels: torch.Tensor, ignore: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = scores / self.temperature  # [B, N]
        if ignore is not None:
            keep_label = torch.zeros_like(ignore)
            keep_label[torch.arange(len(labels)), labels] = True
            logits = logits.masked_fill(ignore & ~keep_label, float("-inf"))
        return F.cross_entropy(logits, labels)

    def forward(self, scores: torch.Tensor, labels: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
        return self.compute_loss_from_scores(scores, labels, ignore)
