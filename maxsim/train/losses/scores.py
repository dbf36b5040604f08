"""Differentiable MaxSim between batches of token vectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maxsim.errors import InvalidArgumentError


def truncate_normalize(raw: torch.Tensor, dim: int) -> torch.Tensor:
    """Matryoshka view: the first ``dim`` raw coordinates of each token, L2-normalised. [..., D] -> [..., dim]."""
    if dim > raw.shape[-1]:
        raise InvalidArgumentError(f"dim {dim} exceeds the {raw.shape[-1]} raw coordinates")
    return F.normalize(raw[..., :dim], dim=-1, eps=1e-12)


def colbert_scores(
    queries: torch.Tensor, query_mask: torch.Tensor, documents: torch.Tensor, document_mask: torch.Tensor
) -> torch.Tensor:
    """MaxSim of every query against every document.

    queries [B, Lq, d], query_mask [B, Lq] (bool), documents [N, Ld, d], document_mask [N, Ld]
    -> scores [B, N] = sum over kept query tokens of the max over kept document tokens of <q_i, d_j>.
    A document with no kept token scores 0.

    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> d = torch.tensor([[[0.6, 0.8], [1.0, 0.0]]])
    >>> m = torch.ones(1, 2, dtype=torch.bool)
    >>> colbert_scores(q, m, d, m)
    tensor([[1.8000]])
    """
    sims = torch.einsum("bid,njd->bnij", queries, documents)  # [B, N, Lq, Ld]
    sims = sims.masked_fill(~document_mask[None, :, None, :], float("-inf"))
    best = sims.amax(dim=-1)  # [B, N, Lq]
    best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))
    return (best * query_mask[:, None, :].to(best.dtype)).sum(dim=-1)
