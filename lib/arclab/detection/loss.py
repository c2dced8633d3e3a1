"""RetinaFace's multitask loss, with the paper's and the popular port's recipes as data.

    L = w_cls·L_cls + w_box·L_box + w_pts·L_pts + w_pixel·L_pixel

- L_cls: softmax cross-entropy (face / background) over the positives and the OHEM-selected
  negatives (:func:`arclab.detection.matching.hard_negatives`), summed and divided by the
  number of positives N (as the port and SSD do);
- L_box: smooth-L1 on the encoded boxes of the positives, divided by N;
- L_pts: smooth-L1 on the encoded 5 landmarks of the positives *whose face has landmarks*,
  divided by the number of those (faces annotated −1 in WIDER contribute nothing);
- L_pixel: a dense term the caller computes (e.g. :func:`arclab.detection.dense.pixel_loss`);
  the recipe only weights it.

Recipes: ``paper`` (RetinaFace: L_cls + 0.25 L_box + 0.1 L_pts + 0.01 L_pixel, positive
IoU > 0.5, negative < 0.3, OHEM 3:1) and ``port`` (2·loc + cls + landm, one threshold 0.35,
OHEM 7:1, no pixel term).

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from arclab.detection.matching import hard_negatives, match

__all__ = ["RECIPES", "multitask_loss"]

RECIPES: dict[str, dict[str, float]] = {
    "paper": {"cls": 1.0, "box": 0.25, "pts": 0.1, "pixel": 0.01, "pos_iou": 0.5,
              "neg_iou": 0.3, "neg_ratio": 3},
    "port": {"cls": 1.0, "box": 2.0, "pts": 1.0, "pixel": 0.0, "pos_iou": 0.35,
             "neg_iou": 0.35, "neg_ratio": 7},
}
"""Loss weights, IoU thresholds and the OHEM negative:positive ratio of each recipe."""


def multitask_loss(cls_logits: Tensor, box_deltas: Tensor, landmark_deltas: Tensor,
                   targets: list[dict[str, Tensor]], priors: Tensor, *, recipe: str = "paper",
                   pixel_loss: Tensor | None = None,
                   variances: tuple[float, float] = (0.1, 0.2)) -> dict[str, Tensor]:
    """The loss of a batch.

    Args:
        cls_logits: (B, P, 2) background / face logits. box_deltas: (B, P, 4).
        landmark_deltas: (B, P, 10). priors: (P, 4) cxcywh normalised.
        targets: per image {"boxes": (G, 4) x1y1x2y2 normalised to [0, 1], "landmarks":
            (G, 5, 2) normalised, "landmark_valid": (G,) bool}.
        recipe: a key of :data:`RECIPES`. pixel_loss: a scalar dense term (``paper`` only).

    Returns:
        {"total", "cls", "box", "pts", "pixel" (scalars, unweighted except "total"),
        "positives": number of positive priors, "landmark_positives", and the matching:
        "labels" (B, P) 1 / 0 / −1, "matched" (B, P) face index or −1, "iou" (B, P)}.

    Raises:
        ValueError: an unknown recipe, shapes that disagree, a pixel loss with a recipe that
            has no pixel term, non-finite predictions.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    r = RECIPES[recipe]
    if pixel_loss is not None and r["pixel"] == 0:
        raise ValueError(f"recipe {recipe!r} has no pixel term; pass pixel_loss=None")
    b, p = cls_logits.shape[:2]
    if cls_logits.shape != (b, p, 2) or box_deltas.shape != (b, p, 4) \
            or landmark_deltas.shape != (b, p, 10) or priors.shape != (p, 4):
        raise ValueError(f"expected cls_logits (B, P, 2), box_deltas (B, P, 4), "
                         f"landmark_deltas (B, P, 10), priors (P, 4); got "
                         f"{tuple(cls_logits.shape)}, {tuple(box_deltas.shape)}, "
                         f"{tuple(landmark_deltas.shape)}, {tuple(priors.shape)}")
    if len(targets) != b:
        raise ValueError(f"targets must have one dict per image ({b}), got {len(targets)}")
    if not bool(torch.isfinite(cls_logits).all() & torch.isfinite(box_deltas).all()):
        raise ValueError("cls_logits and box_deltas must be finite, got NaN or inf")
    m = [match(t["boxes"], t["landmarks"], t["landmark_valid"], priors, pos_iou=r["pos_iou"],
               neg_iou=r["neg_iou"], variances=variances) for t in targets]
    labels = torch.stack([x["labels"] for x in m])
    pos = labels == 1
    ce = F.cross_entropy(cls_logits.reshape(-1, 2), labels.clamp(min=0).reshape(-1),
                         reduction="none").reshape(b, p)
    keep = pos | hard_negatives(ce, labels, int(r["neg_ratio"]))
    n_pos = pos.sum()
    n = n_pos.clamp(min=1).to(cls_logits.dtype)
    loss_cls = ce[keep].sum() / n
    box_t = torch.stack([x["box_targets"] for x in m])
    loss_box = F.smooth_l1_loss(box_deltas[pos], box_t[pos], reduction="sum") / n
    lm_mask = torch.stack([x["landmark_mask"] for x in m])
    lm_t = torch.stack([x["landmark_targets"] for x in m])
    n_lm = lm_mask.sum()
    loss_pts = F.smooth_l1_loss(landmark_deltas[lm_mask], lm_t[lm_mask],
                                reduction="sum") / n_lm.clamp(min=1).to(cls_logits.dtype)
    pixel = pixel_loss if pixel_loss is not None else cls_logits.new_zeros(())
    total = r["cls"] * loss_cls + r["box"] * loss_box + r["pts"] * loss_pts + r["pixel"] * pixel
    return {"total": total, "cls": loss_cls, "box": loss_box, "pts": loss_pts, "pixel": pixel,
            "positives": n_pos, "landmark_positives": n_lm, "labels": labels,
            "matched": torch.stack([x["matched"] for x in m]),
            "iou": torch.stack([x["iou"] for x in m])}
