"""Matching ground-truth faces to priors, and online hard-negative mining (OHEM).

A prior is positive when its best IoU with a face exceeds ``pos_iou``, negative when it is
below ``neg_iou`` and ignored in between (the paper: > 0.5 / < 0.3; the port uses 0.35 for
both, so nothing is ignored). Like SSD and the port, each face's best prior is made positive
for that face whatever its IoU (if that IoU is at least ``force_min_iou`` = 0.2: the port
skips faces no prior overlaps that much), so that small faces between anchor sizes still get a
prior. Ties go to the lowest prior / face index.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from arclab.detection.coding import encode_boxes, encode_landmarks

__all__ = ["hard_negatives", "match", "point_form"]


def point_form(priors: Tensor) -> Tensor:
    """(P, 4) cx, cy, w, h -> (P, 4) x1, y1, x2, y2."""
    return torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)


def match(gt_boxes: Tensor, gt_landmarks: Tensor, landmark_valid: Tensor, priors: Tensor, *,
          pos_iou: float, neg_iou: float, force_min_iou: float = 0.2,
          variances: tuple[float, float] = (0.1, 0.2)) -> dict[str, Tensor]:
    """Assign faces to priors (all coordinates normalised to [0, 1]).

    Args:
        gt_boxes: (G, 4) x1y1x2y2. gt_landmarks: (G, 5, 2). landmark_valid: (G,) bool.
        priors: (P, 4) cxcywh. pos_iou, neg_iou: thresholds with neg_iou <= pos_iou.

    Raises:
        ValueError: neg_iou > pos_iou, wrong shapes, boxes with a non-positive width or
            height, NaN boxes. A scene without faces (G = 0) is valid: every prior negative.

    Returns:
        {"labels": (P,) int64 1 positive / 0 negative / −1 ignored, "matched": (P,) int64
        face index (−1 where none), "iou": (P,) best IoU, "box_targets": (P, 4) and
        "landmark_targets": (P, 10) encoded (zeros off the positives), "landmark_mask": (P,)
        bool, positives whose face has landmarks}.
    """
    if not neg_iou <= pos_iou:
        raise ValueError(f"neg_iou ({neg_iou}) must be <= pos_iou ({pos_iou})")
    if gt_boxes.ndim != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"gt_boxes must be (G, 4), got {tuple(gt_boxes.shape)}")
    if gt_landmarks.shape != (gt_boxes.shape[0], 5, 2) or landmark_valid.shape != (
            gt_boxes.shape[0],):
        raise ValueError(f"gt_landmarks must be ({gt_boxes.shape[0]}, 5, 2) and "
                         f"landmark_valid ({gt_boxes.shape[0]},), got "
                         f"{tuple(gt_landmarks.shape)} and {tuple(landmark_valid.shape)}")
    if gt_boxes.shape[0] and not bool(((gt_boxes[:, 2] > gt_boxes[:, 0])
                                       & (gt_boxes[:, 3] > gt_boxes[:, 1])).all()):
        bad = torch.nonzero((gt_boxes[:, 2] <= gt_boxes[:, 0])
                            | (gt_boxes[:, 3] <= gt_boxes[:, 1])).flatten().tolist()
        raise ValueError(f"gt_boxes must have x2 > x1 and y2 > y1; faces {bad} have a "
                         "non-positive width or height")
    if not bool(torch.isfinite(gt_boxes).all()):
        raise ValueError("gt_boxes must be finite, got NaN or inf")
    p = priors.shape[0]
    dev = priors.device
    if gt_boxes.shape[0] == 0:
        return {"labels": torch.zeros(p, dtype=torch.int64, device=dev),
                "matched": torch.full((p,), -1, dtype=torch.int64, device=dev),
                "iou": torch.zeros(p, device=dev), "box_targets": torch.zeros(p, 4, device=dev),
                "landmark_targets": torch.zeros(p, 10, device=dev),
                "landmark_mask": torch.zeros(p, dtype=torch.bool, device=dev)}
    iou = box_iou(gt_boxes, point_form(priors))  # (G, P)
    best_iou, matched = iou.max(dim=0)  # per prior: first face of the max
    best_prior_iou, best_prior = iou.max(dim=1)  # per face: first prior of the max
    for g in range(gt_boxes.shape[0]):  # later faces win a shared best prior, as in the port
        if best_prior_iou[g] >= force_min_iou:
            matched[best_prior[g]] = g
            best_iou[best_prior[g]] = 2.0  # forced positive
    labels = torch.full((p,), -1, dtype=torch.int64, device=dev)
    labels[best_iou < neg_iou] = 0
    labels[best_iou >= pos_iou if pos_iou == neg_iou else best_iou > pos_iou] = 1
    pos = labels == 1
    box_t = torch.zeros(p, 4, device=dev)
    lm_t = torch.zeros(p, 10, device=dev)
    box_t[pos] = encode_boxes(gt_boxes[matched[pos]], priors[pos], variances)
    lm_t[pos] = encode_landmarks(gt_landmarks[matched[pos]], priors[pos], variances)
    lm_mask = pos & landmark_valid.to(dev)[matched]
    lm_t[~lm_mask] = 0
    return {"labels": labels, "matched": torch.where(labels == 0, -1, matched),
            "iou": best_iou.clamp(max=1.0), "box_targets": box_t, "landmark_targets": lm_t,
            "landmark_mask": lm_mask}


def hard_negatives(cls_loss: Tensor, labels: Tensor, ratio: int) -> Tensor:
    """OHEM: per image, the ``ratio`` × max(#positives, 1) negatives of highest loss.

    Args:
        cls_loss: (B, P) per-prior classification loss. labels: (B, P) 1 / 0 / −1.
        ratio: negatives per positive (3 in the paper, 7 in the port).

    Returns: (B, P) bool, True for the kept negatives. Unlike the port (no negatives at all
    for an image without faces), an image without positives keeps ``ratio`` negatives, so
    face-free images still teach the background. Ties go to the lower prior index.

    Raises:
        ValueError: ratio not a positive integer.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 1:
        raise ValueError(f"ratio must be a positive integer, got {ratio!r}")
    neg = labels == 0
    loss = torch.where(neg, cls_loss.detach(), torch.full_like(cls_loss, -float("inf")))
    n_keep = (ratio * (labels == 1).sum(dim=1).clamp(min=1)).clamp(max=neg.sum(dim=1))
    order = torch.sort(loss, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return neg & (rank < n_keep[:, None])
