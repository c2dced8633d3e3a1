"""Box and landmark coding against priors, with the variances (0.1, 0.2) of SSD and RetinaFace.

A box (x1, y1, x2, y2) matched to a prior (cx_p, cy_p, w_p, h_p), all normalised to [0, 1]:

    t_xy = (centre − c_p) / (v0 · wh_p),   t_wh = log(wh / wh_p) / v1,

and each landmark point l: t_l = (l − c_p) / (v0 · wh_p). Decoding inverts both. These are the
formulas of the popular PyTorch port (``utils/box_utils.py``), written for any leading batch
dimensions.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["decode_boxes", "decode_landmarks", "encode_boxes", "encode_landmarks"]

Variances = tuple[float, float]


def encode_boxes(matched: Tensor, priors: Tensor, variances: Variances = (0.1, 0.2)) -> Tensor:
    """(P, 4) x1y1x2y2 boxes matched to (P, 4) cxcywh priors -> (P, 4) regression targets.

    Example:
        >>> t = encode_boxes(torch.tensor([[0.1, 0.1, 0.3, 0.5]]),
        ...                  torch.tensor([[0.2, 0.3, 0.2, 0.2]]))
        >>> [round(v, 3) for v in t[0].tolist()]  # same centre; height 2x: log(2) / 0.2
        [0.0, 0.0, 0.0, 3.466]
    """
    centre = (matched[..., :2] + matched[..., 2:]) / 2
    wh = (matched[..., 2:] - matched[..., :2]).clamp_min(1e-12)
    return torch.cat([(centre - priors[..., :2]) / (variances[0] * priors[..., 2:]),
                      torch.log(wh / priors[..., 2:]) / variances[1]], dim=-1)


def decode_boxes(loc: Tensor, priors: Tensor, variances: Variances = (0.1, 0.2)) -> Tensor:
    """(..., P, 4) regressions and (P, 4) priors -> (..., P, 4) x1y1x2y2 boxes, normalised."""
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    wh = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)


def encode_landmarks(landmarks: Tensor, priors: Tensor,
                     variances: Variances = (0.1, 0.2)) -> Tensor:
    """(P, 5, 2) or (P, 10) points matched to (P, 4) priors -> (P, 10) regression targets."""
    points = landmarks if landmarks.shape[-1] == 2 else landmarks.unflatten(-1, (5, 2))
    t = (points - priors[..., None, :2]) / (variances[0] * priors[..., None, 2:])
    return t.flatten(-2)


def decode_landmarks(pre: Tensor, priors: Tensor, variances: Variances = (0.1, 0.2)) -> Tensor:
    """(..., P, 10) regressions and (P, 4) priors -> (..., P, 10) points x1, y1, …, x5, y5."""
    points = pre.unflatten(-1, (5, 2))
    out = priors[..., None, :2] + points * variances[0] * priors[..., None, 2:]
    return out.flatten(-2)
