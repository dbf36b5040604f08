"""Distillation from teacher scores: KL(teacher || student) over each query's candidates."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from maxsim.errors import InvalidArgumentError


class DistillationLoss(nn.Module):
    """KL divergence between the teacher's and the student's score distributions per query.

    Requirements: each query comes with C candidate documents (its positive and its negatives)
    and a teacher score for each (the ``scores`` field of a training JSONL row, e.g. from a
    cross-encoder).

    Inputs:

    +------------------+-----------------------------------------------------------+
    | student_scores   | [B, C] the student's MaxSim against each query's candidates |
    | teacher_scores   | [B, C] the teacher's scores for the same candidates         |
    | mask             | optional [B, C] bool, False for missing candidates          |
    +------------------+-----------------------------------------------------------+

    ``loss = mean_b KL(softmax(teacher_b / T_t) || softmax(student_b / T_s))``; zero when the two
    distributions agree.
    """

    def __init__(self, student_temperature: float = 1.0, teacher_temperature: float = 1.0) -> None:
        super().__init__()
        if student_temperature <= 0 or teacher_temperature <= 0:
            raise InvalidArgumentError("temperatures must be > 0")
        self.student_temperature = float(student_temperature)
        self.teacher_temperature = float(teacher_temperature)

    def compute_loss_from_scores(
        self, student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if student_scores.shape != teacher_scores.shape:
            raise InvalidArgumentError(
                f"student {tuple(student_scores.shape)} and teacher {tuple(teacher_scores.shape)} scores differ in shape"
            )
        s = student_scores / self.student_temperature
        t = teacher_scores.to(s.dtype) / self.teacher_temperature
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
            t = t.masked_fill(~mask, float("-inf"))
        log_p_student = F.log_softmax(s, dim=-1)
        p_teacher = F.softmax(t, dim=-1)
        log_p_teacher = F.log_softmax(t, dim=-1)
        terms = p_teacher * (log_p_teacher - log_p_student)
        terms = torch.where(p_teacher > 0, terms, torch.zeros_like(terms))
        return terms.sum(dim=-1).mean()

    def forward(
        self, student_scores: torch.Tensor, teacher_scores: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.compute_loss_from_scores(student_scores, teacher_scores, mask)
