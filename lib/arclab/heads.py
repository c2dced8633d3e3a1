"""Classification heads that produce cosines for the margin losses.

Taught in: notebooks/01_softmax_to_arcface.ipynb
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclab.margins import PRESETS

__all__ = ["NormLinear", "make_head"]


class NormLinear(nn.Module):
    """Cosine classifier: cos θ_j between the L2-normalised feature and class weight W_j.

    Shapes: input (N, D) -> (N, C) cosines in [−1, 1] (up to float rounding, which
    :func:`arclab.margins.margin_logits` tolerates); weight (C, D). No bias: a bias would make
    the decision depend on more than the angle.

    Example:
        >>> head = NormLinear(2, 3)
        >>> tuple(head(torch.randn(4, 2)).shape)
        (4, 3)

    Taught in: notebooks/01_softmax_to_arcface.ipynb
    """

    def __init__(self, in_features: int, out_features: int, *, init_std: float = 0.01) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * init_std)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x must have shape (N, {self.weight.shape[1]}), got "
                             f"{tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x must be finite, got NaN or inf features")
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"


def make_head(preset: str, in_features: int, out_features: int) -> nn.Module:
    """The head a preset needs: ``nn.Linear`` with bias for ``softmax``, else ``NormLinear``.

    Example:
        >>> type(make_head("softmax", 2, 3)).__name__, type(make_head("arcface", 2, 3)).__name__
        ('Linear', 'NormLinear')
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if not PRESETS[preset].normalised:
        return nn.Linear(in_features, out_features)
    return NormLinear(in_features, out_features)
