"""Batch-hard triplet loss: the slides' starting point before margin softmax losses.

For each anchor in a batch of P identities × K images, the hardest positive (largest distance,
same identity) and the hardest negative (smallest distance, other identity) form the triplet;
loss = mean over anchors of max(0, d(a, p) − d(a, n) + margin), with d the angle-free chord
distance ||a − b|| between L2-normalised embeddings (in [0, 2]).

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TripletLoss", "batch_hard_triplet_loss"]


def _margin(margin: float) -> float:
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not margin >= 0 \
            or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0 (not a bool), got {margin!r}")
    return float(margin)


def batch_hard_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float = 0.2) -> Tensor:
    """Mean batch-hard triplet loss over the anchors that have a positive and a negative.

    Shapes: embeddings (N, D) (normalised here), labels (N,) int. Returns a scalar; 0 (with a
    gradient path) when no anchor has both.

    Raises:
        ValueError: embeddings not (N, D) or labels not (N,); margin not a finite number >= 0.

    Example:
        >>> e = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> float(batch_hard_triplet_loss(e, torch.tensor([0, 0, 1, 1]), margin=0.2))
        0.0
        >>> round(float(batch_hard_triplet_loss(e, torch.tensor([0, 1, 0, 1]), 0.2)), 4)
        1.6142
    """
    if embeddings.ndim != 2 or labels.shape != (len(embeddings),):
        raise ValueError(f"embeddings must be (N, D) and labels (N,), got "
                         f"{tuple(embeddings.shape)} and {tuple(labels.shape)}")
    margin = _margin(margin)
    x = F.normalize(embeddings, dim=1)
    d = (2 - 2 * (x @ x.T)).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(x), dtype=torch.bool, device=x.device)
    pos_mask, neg_mask = same & ~eye, ~same
    hardest_pos = torch.where(pos_mask, d, torch.zeros_like(d)).max(dim=1).values
    hardest_neg = torch.where(neg_mask, d, torch.full_like(d, 4.0)).min(dim=1).values
    valid = pos_mask.any(1) & neg_mask.any(1)
    losses = F.relu(hardest_pos - hardest_neg + margin)
    if not bool(valid.any()):
        return (embeddings * 0).sum()
    return losses[valid].mean()


class TripletLoss(nn.Module):
    """``forward(embeddings, labels)``: :func:`batch_hard_triplet_loss` with a fixed margin.

    Raises:
        ValueError: margin not a finite number >= 0; in ``forward``, as
            :func:`batch_hard_triplet_loss`.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = _margin(margin)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return batch_hard_triplet_loss(embeddings, labels, self.margin)
