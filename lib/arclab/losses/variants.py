"""Margins outside the unified m1/m2/m3 form: SphereFace's original ψ(θ) and Li-ArcFace.

Taught in: notebooks/02_margin_zoo.ipynb
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from arclab.losses.margins import check_inputs, safe_acos

__all__ = ["li_arcface_logits", "sphereface_lambda", "sphereface_psi", "sphereface_target_logit"]


def sphereface_psi(theta: Tensor, m: int = 4) -> Tensor:
    """SphereFace's original ψ(θ) = (−1)^k·cos(m·θ) − 2k for θ in [kπ/m, (k+1)π/m].

    Monotonically decreasing from 1 at θ = 0 to −(2m − 1) at θ = π, for integer m ≥ 1.

    Shapes: any. Units: θ in radians, in [0, π].

    Raises:
        ValueError: m not an integer >= 1.

    Example:
        >>> sphereface_psi(torch.tensor([0.0, math.pi]), m=4)
        tensor([ 1., -7.])
    """
    if not isinstance(m, numbers.Integral) or isinstance(m, bool) or m < 1:
        raise ValueError(f"m must be an integer >= 1 (SphereFace's original margin), got {m!r}")
    m = int(m)
    k = torch.floor(m * theta / math.pi).clamp(0, m - 1)
    sign = 1 - 2 * torch.remainder(k, 2)
    return sign * torch.cos(m * theta) - 2 * k


def sphereface_lambda(iteration: int, *, base: float = 1000.0, gamma: float = 0.12,
                      power: float = 1.0, lambda_min: float = 5.0) -> float:
    """SphereFace's annealing weight λ = max(λ_min, base·(1 + γ·iteration)^(−power)).

    Raises:
        ValueError: iteration not an integer >= 0.

    Example:
        >>> sphereface_lambda(0), sphereface_lambda(10**6)
        (1000.0, 5.0)
    """
    if isinstance(iteration, bool) or not isinstance(iteration, numbers.Integral) \
            or iteration < 0:
        raise ValueError(f"iteration must be an integer >= 0, got {iteration!r}")
    return max(lambda_min, base * (1 + gamma * iteration) ** (-power))


def sphereface_target_logit(cosine: Tensor, *, m: int = 4, lam: float = 0.0) -> Tensor:
    """SphereFace's annealed target logit (λ·cos θ + ψ(θ)) / (1 + λ), per unit feature norm.

    λ = 0 is the pure margin; large λ (early training) is nearly plain cos θ.

    Raises:
        ValueError: lam not a finite number >= 0; m not an integer >= 1; cosine not a
            floating-point tensor.
    """
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not math.isfinite(lam) \
            or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0 (not a bool), got {lam!r}")
    return (lam * cosine + sphereface_psi(safe_acos(cosine), m)) / (1 + lam)


def li_arcface_logits(cosine: Tensor, labels: Tensor, *, s: float = 64.0,
                      m: float = 0.45) -> Tensor:
    """Li-ArcFace: logits linear in the angle, s·(π − 2θ_j)/π, with s·(π − 2(θ_y + m))/π at
    the target.

    Shapes and label convention as :func:`margin_logits`. Units: m in radians.

    Raises:
        ValueError: as :func:`~arclab.losses.margins.check_inputs` (cosine, labels, s); m not a
            finite number.
    """
    check_inputs(cosine, labels, s)
    if isinstance(m, bool) or not isinstance(m, numbers.Real) or not math.isfinite(m):
        raise ValueError(f"m must be a finite number (radians, not a bool), got {m!r}")
    theta = safe_acos(cosine)
    shift = torch.zeros_like(theta)
    rows = (labels >= 0).nonzero().squeeze(1)
    shift[rows, labels[rows]] = m
    return s * (math.pi - 2 * (theta + shift)) / math.pi
