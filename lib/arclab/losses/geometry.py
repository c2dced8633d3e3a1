"""What a margin does to angles: binary decision boundaries, angular gaps, gradients vs θ.

All angles in and out are in degrees unless the name ends in ``_rad``.

Taught in: notebooks/02_margin_zoo.ipynb
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from arclab.losses.margins import Gradient, Margin, Overflow, margin_logits, target_logit

__all__ = ["angular_margin_deg", "angular_margin_table", "decision_boundary_deg", "max_rise",
           "target_gradient"]


def decision_boundary_deg(theta1_deg: Tensor, *, m1: float = 1.0, m2: float = 0.0,
                          m3: float = 0.0, overflow: Overflow = "monotonic") -> Tensor:
    """Binary case: the smallest θ2 at which class 1 still wins a sample at angle θ1 to W1.

    Class 1 wins when its target logit beats the other logit: cos(m1·θ1 + m2) − m3 > cos θ2,
    i.e. θ2 > arccos(target). Where the target logit is below −1 no θ2 ≤ 180° suffices and the
    boundary is 180°.

    Shapes: any -> same. Units: degrees in and out (m2 in radians).

    Raises:
        ValueError: m1, m2, m3 not finite numbers, m1 <= 0, or an unknown overflow policy (as
            :func:`~arclab.losses.margins.target_logit`).

    Example:
        >>> import math
        >>> decision_boundary_deg(torch.tensor([30.0]), m2=math.radians(20)).round()
        tensor([50.])
    """
    cos1 = torch.cos(torch.deg2rad(theta1_deg.double()))
    target = target_logit(cos1, m1=m1, m2=m2, m3=m3, overflow=overflow)
    return torch.rad2deg(torch.acos(target.clamp(-1.0, 1.0))).to(theta1_deg.dtype)


def angular_margin_deg(theta1_deg: Tensor, **margin: float) -> Tensor:
    """θ2_boundary − θ1 in degrees: how much farther the *other* class must be.

    ArcFace's is the constant m2 (in degrees) until θ1 + m2 reaches 180°; CosFace's varies with
    θ1; SphereFace's, (m1 − 1)·θ1, vanishes at θ1 = 0.

    Raises:
        ValueError: a margin or overflow policy :func:`decision_boundary_deg` refuses.
    """
    return decision_boundary_deg(theta1_deg, **margin) - theta1_deg


def target_gradient(theta_deg: Tensor, *, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                    s: float = 1.0, gradient: Gradient = "exact",
                    overflow: Overflow = "monotonic") -> Tensor:
    """d(target logit)/dθ in logit units per radian, by autograd through ``margin_logits``.

    Exact: −s·m1·sin(m1·θ + m2) where the formula holds. Straight-through: −s·sin θ (the
    no-margin gradient) whatever the margin.

    Shapes: (T,) -> (T,).

    Raises:
        ValueError: s, a margin, gradient or overflow that
            :func:`~arclab.losses.margins.margin_logits` refuses.
    """
    theta_rad = torch.deg2rad(theta_deg.double()).requires_grad_()
    cosine = torch.cos(theta_rad)[:, None]
    labels = torch.zeros(len(theta_deg), dtype=torch.int64)
    logits = margin_logits(cosine, labels, s=s, m1=m1, m2=m2, m3=m3, gradient=gradient,
                           overflow=overflow)
    (grad,) = torch.autograd.grad(logits.sum(), theta_rad)
    return grad


def angular_margin_table(presets: dict[str, Margin],
                         probe_deg: tuple[float, ...] = (10.0, 30.0, 60.0, 90.0)
                         ) -> dict[str, dict[str, float]]:
    """{preset: {"θ1=10°": margin in degrees, ...}}: :func:`angular_margin_deg` at a few θ1.

    Raises:
        ValueError: a preset whose margins :func:`decision_boundary_deg` refuses.
    """
    probe = torch.tensor(probe_deg, dtype=torch.float64)
    return {name: {f"θ1={t:g}°": v for t, v in zip(probe_deg, angular_margin_deg(
        probe, m1=m.m1, m2=m.m2, m3=m.m3).tolist())} for name, m in presets.items()}


def max_rise(presets: dict[str, Margin], *, points: int = 721,
             policies: tuple[str, ...] = ("raw", "easy", "monotonic")
             ) -> dict[str, dict[str, float]]:
    """Largest increase of target logit / s between neighbouring angles on a θ grid over
    [0°, 180°] (0 when the curve never rises), per preset and overflow policy.

    Raises:
        ValueError: points not an integer >= 2; an unknown policy, or a preset whose margins
            :func:`~arclab.losses.margins.target_logit` refuses.
    """
    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or points < 2:
        raise ValueError(f"points must be an integer >= 2, got {points!r}")
    cos = torch.cos(torch.deg2rad(torch.linspace(0, 180, int(points), dtype=torch.float64)))
    return {name: {p: target_logit(cos, m1=m.m1, m2=m.m2, m3=m.m3, overflow=p).diff().max()
                   .clamp(min=0).item() for p in policies} for name, m in presets.items()}
