"""Two-dimensional toy features for seeing softmax and normalised-softmax geometry by eye.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fit_linear_classifier", "linear_logits", "make_blobs_2d", "scale_consistency"]


def make_blobs_2d(n_classes: int = 4, n_per_class: int = 100, *,
                  angle_spread_deg: float = 15.0, radius: tuple[float, float] = (0.3, 3.0),
                  seed: int = 0) -> tuple[Tensor, Tensor]:
    """Points whose class is set by their direction, with norms that differ between classes.

    Class ``c`` lies around the direction ``360·c/C`` degrees with Gaussian angular spread
    ``angle_spread_deg`` (degrees). Its norms are uniform in a class-specific slice of ``radius``
    (class 0 the shortest, class C-1 the longest), as deep features of easy and hard classes
    differ in norm, so a classifier can be right or wrong about *norm*, not only about angle.

    Shapes: returns x (N, 2) float32 and y (N,) int64 with N = n_classes * n_per_class.

    Raises:
        ValueError: n_classes < 2, n_per_class < 1, a negative spread or a bad radius range.

    Example:
        >>> x, y = make_blobs_2d(3, 5)
        >>> tuple(x.shape), tuple(y.shape), int(y.max())
        ((15, 2), (15,), 2)
    """
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    if not angle_spread_deg >= 0:
        raise ValueError(f"angle_spread_deg must be >= 0 degrees, got {angle_spread_deg!r}")
    r_lo, r_hi = radius
    if not 0 < r_lo < r_hi:
        raise ValueError(f"radius must be (low, high) with 0 < low < high, got {radius!r}")
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    centre = 2 * math.pi * y / n_classes
    theta = centre + math.radians(angle_spread_deg) * torch.randn(len(y), generator=gen)
    width = (r_hi - r_lo) / n_classes
    norm = r_lo + width * (y + 2 * torch.rand(len(y), generator=gen) - 0.5).clamp(0, n_classes)
    x = torch.stack([norm * torch.cos(theta), norm * torch.sin(theta)], dim=1)
    return x.float(), y


def linear_logits(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                  normalised: bool = False, s: float = 16.0) -> Tensor:
    """Softmax logits ``W x + b``, or normalised-softmax logits ``s · cos θ``.

    Shapes: x (N, D), weight (C, D), bias (C,) or None -> (N, C). ``normalised`` L2-normalises
    rows of x and W and ignores ``bias``: the logit is the cosine of the angle between feature
    and class weight, times the scale ``s``.
    """
    if normalised:
        return s * F.normalize(x, dim=1) @ F.normalize(weight, dim=1).T
    logits = x @ weight.T
    return logits if bias is None else logits + bias


def fit_linear_classifier(x: Tensor, y: Tensor, *, normalised: bool, s: float = 16.0,
                          steps: int = 300, lr: float = 0.05, seed: int = 0) -> dict[str, Tensor]:
    """Fit a linear softmax classifier on fixed features by full-batch Adam.

    ``normalised=False``: the slides' L1 (``W x + b``, cross-entropy). ``normalised=True``:
    NormFace / normalised softmax (``s cos θ``, no bias).

    Shapes: x (N, D), y (N,) int64 in [0, C) -> {"weight": (C, D), "bias": (C,) or absent}.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n_classes = int(y.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    weight = (0.1 * torch.randn(n_classes, x.shape[1], generator=gen)).requires_grad_()
    bias = None if normalised else torch.zeros(n_classes, requires_grad=True)
    params = [weight] + ([] if bias is None else [bias])
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(linear_logits(x, weight, bias, normalised=normalised, s=s), y)
        loss.backward()
        opt.step()
    out = {"weight": weight.detach()}
    if bias is not None:
        out["bias"] = bias.detach()
    return out


def scale_consistency(x: Tensor, predict, factors: tuple[float, ...] = (0.25, 4.0)) -> float:
    """Fraction of points whose predicted class is unchanged when the feature is rescaled.

    ``predict`` maps (N, D) features to (N,) class indices. A classifier that looks only at
    the angle scores exactly 1.0; one that also reads the norm scores less.
    """
    base = predict(x)
    same = torch.ones_like(base, dtype=torch.bool)
    for factor in factors:
        same &= predict(factor * x) == base
    return same.float().mean().item()
