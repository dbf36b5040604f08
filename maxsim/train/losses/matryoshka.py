"""Matryoshka wrapper: the same losses at several dims of one projection, summed with weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from maxsim.errors import InvalidArgumentError
from maxsim.train.losses.contrastive import ContrastiveLoss
from maxsim.train.losses.distillation import DistillationLoss
from maxsim.train.losses.scores import colbert_scores, truncate_normalize


class MatryoshkaLoss(nn.Module):
    """Sum over ``dims`` of ``weight_d * (contrastive_d + distill_weight * distillation_d)``.

    At each dim the raw projections are cut to their first ``d`` coordinates and re-normalised
    (the way :meth:`maxsim.Model.encode_documents` serves smaller dims), so one head learns to
    put the most useful directions first.

    Inputs (``compute_loss_from_embeddings``):

    +----------------+------------------------------------------------------------------+
    | q_raw, q_mask  | [B, Lq, D] raw query projections, [B, Lq] bool                    |
    | d_raw, d_mask  | [N, Ld, D] raw document projections (positives + negatives)        |
    | labels         | [B] column of each query's positive                               |
    | ignore         | optional [B, N] bool, columns not to use as negatives             |
    | candidates     | optional [B, C] column of each query's own candidates (distill)   |
    | teacher        | optional [B, C] teacher scores of those candidates                |
    +----------------+------------------------------------------------------------------+

    Returns (total loss, {f"loss@{d}": value}).
    """

    def __init__(
        self,
        dims: Sequence[int] = (128, 96, 64),
        weights: Sequence[float] | None = None,
        contrastive: ContrastiveLoss | None = None,
        distillation: DistillationLoss | None = None,
        distill_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if not dims:
            raise InvalidArgumentError("MatryoshkaLoss needs at least one dim")
        weights = list(weights) if weights is not None else [1.0] * len(dims)
        if len(weights) != len(dims):
            raise InvalidArgumentError(f"{len(weights)} weights for {len(dims)} dims")
        self.dims = [int(d) for d in dims]
        self.weights = [float(w) for w in weights]
        self.contrastive = contrastive or ContrastiveLoss()
        self.distillation = distillation or DistillationLoss()
        self.distill_weight = float(distill_weight)

    def compute_loss_from_embeddings(
        self,
        q_raw: torch.Tensor,
        q_mask: torch.Tensor,
        d_raw: torch.Tensor,
        d_mask: torch.Tensor,
        labels: torch.Tensor,
        ignore: torch.Tensor | None = None,
        candidates: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total = q_raw.new_zeros(())
        parts: dict[str, float] = {}
        for dim, weight in zip(self.dims, self.weights):
            scores = colbert_scores(truncate_normalize(q_raw, dim), q_mask, truncate_normalize(d_raw, dim), d_mask)
            loss = self.contrastive.compute_loss_from_scores(scores, labels, ignore)
            if self.distill_weight > 0 and teacher is not None and candidates is not None:
                valid = candidates >= 0
                student = torch.gather(scores, 1, candidates.clamp(min=0))
                loss = loss + self.distill_weight * self.distillation.compute_loss_from_scores(student, teacher, valid)
            parts[f"loss@{dim}"] = float(loss.detach())
            total = total + weight * loss
        return total, parts
