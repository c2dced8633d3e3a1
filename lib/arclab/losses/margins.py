"""The unified margin s·(cos(m1·θ + m2) − m3) and its named members.

SphereFace is the m1 margin, ArcFace m2, CosFace m3 (slides, loss L4). The target logit of each
row gets the margin; every other logit stays s·cos θ. θ is in radians throughout.

SphereFace's original integer-m ψ(θ) and Li-ArcFace live in :mod:`arclab.losses.variants`.

Two choices the common public code makes silently are named options here:

- ``gradient``: ``"exact"`` differentiates the margin expression itself; ``"straight_through"``
  keeps its value but passes the gradient of s·cos θ, which is what editing the logits under
  ``no_grad`` (as arcface_torch does) amounts to.
- ``overflow``: what happens once m1·θ + m2 > π, where cos(m1·θ + m2) turns back up and the
  margin would *reward* a worse angle. See :func:`target_logit`.

Taught in: notebooks/02_margin_zoo.ipynb
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "COS_EPS",
    "PRESETS",
    "MarginLoss",
    "Margin",
    "check_inputs",
    "margin_logits",
    "overflow_angle",
    "safe_acos",
    "target_logit",
]

COS_EPS = 1e-7
"""The derivative of ``arccos``, −1/√(1 − c²), is infinite at ±1: arclab evaluates it at the
cosine clamped to [−1 + COS_EPS, 1 − COS_EPS], where it is finite (about −2,236 in float64,
−2,048 in float32), while the *values* use the exact arccos of the cosine clamped to [−1, 1]."""

COS_TOLERANCE = 1e-4
"""How far outside [−1, 1] an input cosine may be (rounding in the normalised product)."""

Gradient = Literal["exact", "straight_through"]
Overflow = Literal["monotonic", "raw", "easy"]


@dataclass(frozen=True)
class Margin:
    """One member of the margin family: target logit s·(cos(m1·θ + m2) − m3).

    ``normalised=False`` marks plain softmax (W·x + b on raw features), shown for contrast.
    """

    m1: float = 1.0
    m2: float = 0.0  # radians
    m3: float = 0.0
    normalised: bool = True
    label: str = ""


PRESETS: dict[str, Margin] = {
    "softmax": Margin(normalised=False, label="Softmax (W·x + b)"),
    "normface": Margin(1.0, 0.0, 0.0, label="NormFace (1, 0, 0)"),
    "sphereface": Margin(1.35, 0.0, 0.0, label="SphereFace (1.35, 0, 0)"),
    "cosface": Margin(1.0, 0.0, 0.35, label="CosFace (1, 0, 0.35)"),
    "arcface": Margin(1.0, 0.5, 0.0, label="ArcFace (1, 0.5, 0)"),
    "cm1": Margin(1.0, 0.3, 0.2, label="CM1 (1, 0.3, 0.2)"),
    "cm2": Margin(0.9, 0.4, 0.15, label="CM2 (0.9, 0.4, 0.15)"),
}
"""The settings of the ArcFace paper's margin ablation, as (m1, m2 in radians, m3)."""


def _real(name: str, value: float) -> float:
    """``value`` as a float, checked to be a finite real number (numpy's too, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (not a bool), got {value!r}")
    return float(value)


def _check_margin(m1: float, m2: float, m3: float) -> tuple[float, float, float]:
    """(m1, m2, m3) as floats, checked: finite real numbers, m1 > 0."""
    m1, m2, m3 = _real("m1", m1), _real("m2", m2), _real("m3", m3)
    if m1 <= 0:
        raise ValueError(f"m1 must be > 0 (a multiplicative angular margin), got {m1}")
    return m1, m2, m3


def safe_acos(cosine: Tensor) -> Tensor:
    """θ = arccos(cosine) in radians, exact in value, with a finite gradient at ±1 (COS_EPS).

    Raises:
        ValueError: ``cosine`` is not a floating-point tensor.

    Example:
        >>> c = torch.tensor([1.0, -1.0], requires_grad=True)
        >>> theta = safe_acos(c); theta.sum().backward()
        >>> [round(t, 5) for t in theta.tolist()], c.grad.tolist()
        ([0.0, 3.14159], [-2048.0, -2048.0])
    """
    if not isinstance(cosine, Tensor) or not cosine.is_floating_point():
        raise ValueError(f"cosine must be a floating-point tensor, got "
                         f"{getattr(cosine, 'dtype', type(cosine).__name__)}")
    value = torch.acos(cosine.clamp(-1.0, 1.0)).detach()
    inner = cosine + (cosine.clamp(-1 + COS_EPS, 1 - COS_EPS) - cosine).detach()
    grad_path = torch.acos(inner)
    return value + (grad_path - grad_path.detach())


def overflow_angle(m1: float = 1.0, m2: float = 0.0) -> float:
    """θ* = (π − m2) / m1 in radians: beyond it m1·θ + m2 > π and cos(m1·θ + m2) rises again.

    Raises:
        ValueError: m1 or m2 not a finite real number (booleans are not), or m1 <= 0.

    Example:
        >>> round(math.degrees(overflow_angle(1.0, 0.5)), 2)
        151.35
    """
    m1, m2, _ = _check_margin(m1, m2, 0.0)
    return (math.pi - m2) / m1


def target_logit(cosine: Tensor, *, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0,
                 overflow: Overflow = "monotonic") -> Tensor:
    """The target logit divided by s, cos(m1·θ + m2) − m3 with θ = arccos(cosine), elementwise.

    Overflow policies, for θ in [0, π]:

    - ``"raw"``: the formula everywhere, also where m1·θ + m2 > π and it increases with θ.
    - ``"easy"``: the formula where cos θ > 0, plain cos θ elsewhere (arcface_torch's
      ``easy_margin``); it jumps at θ = 90° whenever the margin is non-zero there.
    - ``"monotonic"`` (default): the formula up to θ* = (π − m2)/m1, then cos θ − δ with
      δ = cos θ* + 1 + m3, the no-margin curve shifted down to meet the formula at θ*. The result
      is continuous and non-increasing in θ; it never exceeds cos θ whenever the formula itself
      does not before θ* (true for every preset: m1·θ + m2 ≥ θ and m3 ≥ 0 there), and past θ*
      its gradient with respect to cos θ is 1, the same as without a margin.

    Shapes: any; returns the same shape and dtype (computed in at least float32).
    Units: θ and m2 in radians.

    Raises:
        ValueError: cosine not a floating-point tensor; m1, m2, m3 not finite real numbers
            (booleans are not) or m1 <= 0; an unknown ``overflow``.

    Example:
        >>> target_logit(torch.tensor([1.0, 0.0]), m3=0.35).tolist()
        [0.6499999761581421, -0.3500000238418579]
    """
    m1, m2, m3 = _check_margin(m1, m2, m3)
    if overflow not in ("monotonic", "raw", "easy"):
        raise ValueError(f"overflow must be 'monotonic', 'raw' or 'easy', got {overflow!r}")
    if not isinstance(cosine, Tensor) or not cosine.is_floating_point():
        raise ValueError(f"cosine must be a floating-point tensor, got "
                         f"{getattr(cosine, 'dtype', type(cosine).__name__)}")
    c = cosine.to(torch.promote_types(cosine.dtype, torch.float32))
    theta = safe_acos(c)
    angle = m1 * theta + m2
    value = torch.cos(angle) - m3
    if overflow == "easy":
        value = torch.where(c > 0, value, c)
    elif overflow == "monotonic":
        theta_star = (math.pi - m2) / m1
        if theta_star < math.pi:
            delta = math.cos(theta_star) + 1 + m3
            value = torch.where(angle <= math.pi, value, c - delta)
    return value.to(cosine.dtype)


def _check_labels(labels: Tensor, n: int, c: int) -> None:
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != (n,):
        raise ValueError(f"labels must be an int64 tensor of shape ({n},), got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} of shape "
                         f"{tuple(getattr(labels, 'shape', ()))}")
    if n:
        lo, hi = torch.aminmax(labels)
        if lo < -1 or hi >= c:
            raise ValueError(f"labels must be in [-1, {c}) (-1: no target in this row), got "
                             f"values in [{int(lo)}, {int(hi)}]")


def _check_matrix(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point (N, C) tensor, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} of shape "
                         f"{tuple(getattr(x, 'shape', ()))}")


def _check_scale(s: float) -> float:
    if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s) or s <= 0:
        raise ValueError(f"s must be a finite number > 0 (not a bool), got {s!r}")
    return float(s)


def _logit_reach(m1: float, m2: float, m3: float, overflow: Overflow) -> float:
    """The largest |logit| / s any cosine in [−1 − COS_TOLERANCE, 1 + COS_TOLERANCE] gives.

    The formula stays in [−1 − m3, 1 − m3]; past θ* the monotonic policy goes lower, down to
    its value at cos θ = −1 (it is non-increasing in θ). Also checks the options.
    """
    ends = target_logit(torch.tensor([-1.0, 1.0], dtype=torch.float64), m1=m1, m2=m2, m3=m3,
                        overflow=overflow)
    return max(1.0 + abs(m3), float(ends.abs().max())) + COS_TOLERANCE


def _check_range(s: float, reach: float, dtype: torch.dtype, what: str) -> None:
    """Refuse an s for which ``what`` (up to s·reach) would overflow ``dtype``."""
    big = torch.finfo(dtype).max
    if s * reach > big:
        raise ValueError(f"s = {s:g} is too large for {dtype}: the {what} could reach "
                         f"{s * reach:.4g}, beyond its largest finite value {big:.4g}; use a "
                         f"smaller s or float32 cosines")


def check_inputs(cosine: Tensor, labels: Tensor, s: float) -> None:
    """Check a margin's inputs: cosine (N, C) finite in [-1, 1], labels (N,) in [-1, C), s > 0.

    Raises:
        ValueError: naming the argument that is wrong and what was expected (s: a finite real
            number > 0, numpy's included, not a bool).

    Example:
        >>> check_inputs(torch.zeros(2, 3), torch.tensor([0, -1]), 64.0)  # passes silently
    """
    _check_matrix(cosine, "cosine")
    _check_labels(labels, *cosine.shape)
    _check_scale(s)
    if cosine.numel() == 0:
        return
    lo, hi = torch.aminmax(cosine.detach())
    if not (lo >= -1 - COS_TOLERANCE and hi <= 1 + COS_TOLERANCE):  # also catches NaN and inf
        raise ValueError(f"cosine must be finite and in [-1, 1] (tolerance {COS_TOLERANCE}), got "
                         f"values in [{lo.item()}, {hi.item()}]")


def margin_logits(cosine: Tensor, labels: Tensor, *, s: float = 64.0, m1: float = 1.0,
                  m2: float = 0.0, m3: float = 0.0, gradient: Gradient = "exact",
                  overflow: Overflow = "monotonic") -> Tensor:
    """Target logit s·(cos(m1·θ_y + m2) − m3); every other logit s·cos θ_j.

    Args:
        cosine: (N, C) cosines between normalised features and class weights, in [−1, 1].
        labels: (N,) int64 in [−1, C); −1 means this row has no target here (its class lives on
            another shard in sharded / partial FC), so the row is only scaled.
        s: scale (> 0). m1, m2 (radians), m3: the margins.
        gradient: ``"exact"`` (derivative of the expression above) or ``"straight_through"``
            (same values, gradient of s·cos θ_y at the target, like arcface_torch).
        overflow: ``"monotonic"`` | ``"raw"`` | ``"easy"``; see :func:`target_logit`.

    Returns:
        (N, C) logits, ready for cross-entropy.

    Raises:
        ValueError: labels out of [−1, C), cosine outside [−1 − 1e-4, 1 + 1e-4] or not finite,
            wrong shapes or dtypes, s ≤ 0, m1 ≤ 0, a bool for a number, an unknown option,
            or an s for which the logits overflow the cosine's dtype (float16: s·(1 + |m3|)
            and more under the monotonic policy must stay below 65504).

    Example:
        >>> cos = torch.tensor([[0.5, 0.0], [0.0, 0.5]])
        >>> margin_logits(cos, torch.tensor([0, -1]), s=2.0, m2=0.5).round(decimals=4)
        tensor([[0.0472, 0.0000],
                [0.0000, 1.0000]])

    Taught in: notebooks/02_margin_zoo.ipynb
    """
    check_inputs(cosine, labels, s)
    s, (m1, m2, m3) = float(s), _check_margin(m1, m2, m3)
    if gradient not in ("exact", "straight_through"):
        raise ValueError(f"gradient must be 'exact' or 'straight_through', got {gradient!r}")
    _check_range(s, _logit_reach(m1, m2, m3, overflow), cosine.dtype, "logits")
    return _MarginLogits.apply(cosine, labels, s, (m1, m2, m3, overflow), gradient == "exact")


class _MarginLogits(torch.autograd.Function):
    """s·cosine with the target entries replaced, in one pass forward and one backward.

    Autograd through ``cosine[rows, cols]`` and an index_put would build and add two more full
    (N, C) tensors in the backward pass (about 2x the time of plain cross-entropy at C = 100k);
    the derivative of the target logit only concerns N entries, so it is taken on those alone.
    """

    @staticmethod
    def forward(ctx, cosine, labels, s, margin, exact):  # noqa: ANN001, ANN205
        m1, m2, m3, overflow = margin
        rows = (labels >= 0).nonzero().squeeze(1)
        cols = labels[rows]
        slope = None
        with torch.enable_grad():
            cos_y = cosine.detach()[rows, cols].requires_grad_()
            target = target_logit(cos_y, m1=m1, m2=m2, m3=m3, overflow=overflow)
            if ctx.needs_input_grad[0] and exact and rows.numel():
                (slope,) = torch.autograd.grad(target.sum(), cos_y)  # elementwise: the slopes
        logits = cosine * s
        logits[rows, cols] = s * target.detach()
        ctx.save_for_backward(rows, cols, slope)
        ctx.s = s
        return logits

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        rows, cols, slope = ctx.saved_tensors
        grad_cosine = grad * ctx.s  # d(s·cos θ)/d cos θ everywhere; straight-through stops here
        if slope is not None:
            grad_cosine[rows, cols] *= slope  # d target / d cos θ_y at the N target entries
        return grad_cosine, None, None, None, None


class MarginLoss(nn.Module):
    """Cross-entropy over margin logits, for a preset or explicit (m1, m2, m3).

    ``forward(x, labels)`` takes (N, C) cosines (plain logits for the ``softmax`` preset) and
    (N,) int64 labels; rows labelled −1 are ignored. The mean is over the other rows; with none
    left the loss is 0 (not NaN) and still backpropagates.

    Raises:
        ValueError: at construction, an unknown preset, s or a margin not a finite real
            number (booleans are not), s <= 0 or m1 <= 0; in ``forward``, every case of
            :func:`margin_logits`, or an s for which the loss overflows the cosines' dtype
            (float16: a row's loss, up to about 2·s·(1 + |m3|) + ln C, must stay below 65504,
            and so must the sum of the rows' losses that the mean adds up in float16).

    Example:
        >>> loss = MarginLoss("arcface", s=64.0)
        >>> loss.margin
        Margin(m1=1.0, m2=0.5, m3=0.0, normalised=True, label='ArcFace (1, 0.5, 0)')
        >>> float(loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))) < 1e-10
        True

    Taught in: notebooks/01_softmax_to_arcface.ipynb
    """

    def __init__(self, preset: str | None = None, *, s: float = 64.0, m1: float = 1.0,
                 m2: float = 0.0, m3: float = 0.0, gradient: Gradient = "exact",
                 overflow: Overflow = "monotonic") -> None:
        super().__init__()
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
            margin = PRESETS[preset]
        else:
            label = f"({m1}, {m2}, {m3})"
            margin = Margin(*_check_margin(m1, m2, m3), label=label)
        self.margin, self.s, self.gradient, self.overflow = margin, _check_scale(s), gradient, \
            overflow

    def logits(self, x: Tensor, labels: Tensor) -> Tensor:
        """The logits the loss applies cross-entropy to, (N, C)."""
        if not self.margin.normalised:  # plain softmax: x are logits W·x + b
            _check_matrix(x, "logits")
            _check_labels(labels, *x.shape)
            if not bool(torch.isfinite(x).all()):
                raise ValueError("logits must be finite, got NaN or inf")
            return x
        m = self.margin
        return margin_logits(x, labels, s=self.s, m1=m.m1, m2=m.m2, m3=m.m3,
                             gradient=self.gradient, overflow=self.overflow)

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        logits = self.logits(x, labels)
        if not bool((labels >= 0).any()):
            return logits.sum() * 0.0
        if not self.margin.normalised:
            return F.cross_entropy(logits, labels, ignore_index=-1)
        m = self.margin  # a row's loss <= max logit − target logit + ln C
        reach = 2 * _logit_reach(m.m1, m.m2, m.m3, self.overflow)
        _check_range(self.s, reach + math.log(max(x.shape[1], 1)) / self.s, x.dtype, "loss")
        loss = F.cross_entropy(logits, labels, ignore_index=-1)
        if loss.dtype == torch.float16 and not bool(torch.isfinite(loss)):  # not under autocast
            raise ValueError(f"s = {self.s:g} is too large for {x.dtype}: every row's loss fits "
                             f"but their sum, which the mean adds up in float16 here, "
                             f"overflows; use a smaller s or float32 cosines")
        return loss

    def extra_repr(self) -> str:
        return f"{self.margin.label or self.margin}, s={self.s}, gradient={self.gradient}, " \
               f"overflow={self.overflow}"
