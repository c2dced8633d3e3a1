"""Classification heads that produce cosines for the margin losses.

Taught in: notebooks/01_softmax_to_arcface.ipynb
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclab.losses.margins import PRESETS

__all__ = ["NormLinear", "SubCenterNormLinear", "make_head"]


def _count(name: str, value: int) -> int:
    """``value`` as an int, checked to be a positive integer (numpy's too, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _std(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"init_std must be a finite number >= 0 (not a bool), got {value!r}")
    return float(value)


class NormLinear(nn.Module):
    """Cosine classifier: cos θ_j between the L2-normalised feature and class weight W_j.

    Shapes: input (N, D) -> (N, C) cosines in [−1, 1] (up to float rounding, which
    :func:`arclab.losses.margins.margin_logits` tolerates); weight (C, D). No bias: a bias
    would make the decision depend on more than the angle.

    Raises:
        ValueError: in_features or out_features not a positive integer, init_std not a number
            >= 0; in ``forward``, x not (N, in_features) or not finite.

    Example:
        >>> head = NormLinear(2, 3)
        >>> tuple(head(torch.randn(4, 2)).shape)
        (4, 3)

    Taught in: notebooks/01_softmax_to_arcface.ipynb
    """

    def __init__(self, in_features: int, out_features: int, *, init_std: float = 0.01) -> None:
        super().__init__()
        in_features, out_features = (_count("in_features", in_features),
                                     _count("out_features", out_features))
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * _std(init_std))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x must have shape (N, {self.weight.shape[1]}), got "
                             f"{tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x must be finite, got NaN or inf features")
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


class SubCenterNormLinear(nn.Module):
    """Sub-center cosine classifier: K sub-centers per class, class cosine = max over its K.

    Shapes: input (N, D) -> (N, C) cosines; weight (C·K, D), where row ``c·K + k`` is
    sub-center k of class c (a class's sub-centers are contiguous rows, so a class-sharded
    layer keeps them on one rank). :meth:`subcenter_cosines` gives all (N, C, K). The max is
    taken on the cosines, before any margin, so every margin of :mod:`arclab.losses.margins` applies
    to the chosen sub-center; the gradient reaches only the sub-center that won the max (for
    each sample and class). With K = 1 this is :class:`NormLinear`.

    Raises:
        ValueError: in_features, out_features or subcenters not a positive integer, init_std
            not a number >= 0; in ``forward``, x not (N, in_features) or not finite.

    Example:
        >>> head = SubCenterNormLinear(2, 3, subcenters=4)
        >>> tuple(head.weight.shape), tuple(head(torch.randn(5, 2)).shape)
        ((12, 2), (5, 3))

    Taught in: notebooks/06_subcenter_arcface.ipynb
    """

    def __init__(self, in_features: int, out_features: int, *, subcenters: int = 3,
                 init_std: float = 0.01) -> None:
        super().__init__()
        in_features, out_features, subcenters = (
            _count("in_features", in_features), _count("out_features", out_features),
            _count("subcenters", subcenters))
        self.out_features, self.subcenters = out_features, subcenters
        self.weight = nn.Parameter(torch.randn(out_features * subcenters, in_features)
                                   * _std(init_std))

    def subcenter_cosines(self, x: Tensor) -> Tensor:
        """(N, D) features -> (N, C, K) cosines to every sub-center."""
        d = self.weight.shape[1]
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"x must have shape (N, {d}), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x must be finite, got NaN or inf features")
        cos = F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T
        return cos.view(x.shape[0], self.out_features, self.subcenters)

    def forward(self, x: Tensor) -> Tensor:
        return self.subcenter_cosines(x).amax(dim=2)

    def extra_repr(self) -> str:
        return (f"in_features={self.weight.shape[1]}, out_features={self.out_features}, "
                f"subcenters={self.subcenters}")


def make_head(preset: str, in_features: int, out_features: int, *,
              subcenters: int = 1) -> nn.Module:
    """The head a preset needs: ``nn.Linear`` with bias for ``softmax``, else ``NormLinear``
    (``SubCenterNormLinear`` when ``subcenters`` > 1).

    Raises:
        ValueError: an unknown preset; in_features, out_features or subcenters not a positive
            integer; subcenters > 1 with the softmax preset.

    Example:
        >>> type(make_head("softmax", 2, 3)).__name__, type(make_head("arcface", 2, 3)).__name__
        ('Linear', 'NormLinear')
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    in_features, out_features, subcenters = (
        _count("in_features", in_features), _count("out_features", out_features),
        _count("subcenters", subcenters))
    if not PRESETS[preset].normalised:
        if subcenters != 1:
            raise ValueError(f"subcenters > 1 needs a cosine head; preset {preset!r} has "
                             "none (plain softmax)")
        return nn.Linear(in_features, out_features)
    if subcenters > 1:
        return SubCenterNormLinear(in_features, out_features, subcenters=subcenters)
    return NormLinear(in_features, out_features)
