"""Toy data and tiny networks for seeing softmax, NormFace and ArcFace geometry by eye.

Taught in: notebooks/00_tour.ipynb and notebooks/01_softmax_to_arcface.ipynb
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclab.losses.heads import make_head
from arclab.losses.margins import MarginLoss

__all__ = ["angles_to_centres", "angular_stats", "embedding_mlp", "fit_embedding",
           "fit_linear_classifier", "linear_logits", "make_blobs_2d", "make_identities",
           "scale_consistency"]


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


def make_identities(n_classes: int = 8, n_per_class: int = 100, *, dim: int = 32,
                    noise: float = 0.6, quality: tuple[float, float] = (0.3, 1.0),
                    seed: int = 0) -> tuple[Tensor, Tensor]:
    """Toy "face images": one random prototype per identity, plus noise, times a quality.

    Sample = q · (prototype + noise · ε): prototypes are random unit vectors, ε ~ N(0, I/dim)
    (so ``noise`` is the typical noise norm relative to the prototype's) and q is uniform in
    ``quality`` (low-quality samples are fainter, as blurred faces give low-norm features).

    Shapes: returns x (N, dim) float32 and y (N,) int64, N = n_classes · n_per_class.

    Example:
        >>> x, y = make_identities(3, 4, dim=8)
        >>> tuple(x.shape), y.tolist()[:5]
        ((12, 8), [0, 0, 0, 0, 1])
    """
    for name, value in (("n_classes", n_classes), ("n_per_class", n_per_class), ("dim", dim)):
        if not isinstance(value, int) or value < (2 if name == "n_classes" else 1):
            raise ValueError(f"{name} must be a positive integer (n_classes >= 2), got {value!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    if not 0 < quality[0] <= quality[1]:
        raise ValueError(f"quality must be (low, high) with 0 < low <= high, got {quality!r}")
    gen = torch.Generator().manual_seed(seed)
    prototypes = F.normalize(torch.randn(n_classes, dim, generator=gen), dim=1)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    eps = torch.randn(len(y), dim, generator=gen) / math.sqrt(dim)
    q = quality[0] + (quality[1] - quality[0]) * torch.rand(len(y), 1, generator=gen)
    return (q * (prototypes[y] + noise * eps)).float(), y


def embedding_mlp(in_dim: int, emb_dim: int, hidden: int = 64) -> nn.Sequential:
    """A tiny backbone: in_dim -> hidden -> hidden -> emb_dim, ReLU between, no final activation.

    Shapes: (N, in_dim) -> (N, emb_dim).
    """
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, emb_dim))


def fit_embedding(x: Tensor, y: Tensor, *, preset: str, emb_dim: int = 2, s: float = 16.0,
                  steps: int = 600, lr: float = 0.01, seed: int = 0) -> dict:
    """Train ``embedding_mlp`` + the preset's head with its margin loss, full batch, Adam.

    Args:
        preset: a key of ``arclab.losses.margins.PRESETS`` (``softmax`` uses a linear head
            with bias).
        s: the scale of normalised presets (ignored by ``softmax``).

    Returns:
        {"features": (N, emb_dim) embeddings after training, "weight": (C, emb_dim) class
        weights, "losses": one float per step, "model", "head"}.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    model, head = embedding_mlp(x.shape[1], emb_dim), make_head(preset, emb_dim, int(y.max()) + 1)
    loss_fn = MarginLoss(preset, s=s)
    opt = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(head(model(x)), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        features = model(x)
    return {"features": features, "weight": head.weight.detach().clone(), "losses": losses,
            "model": model, "head": head}


def _centres(f: Tensor, y: Tensor) -> Tensor:
    n_classes = int(y.max()) + 1
    return F.normalize(torch.stack([f[y == c].mean(0) for c in range(n_classes)]), dim=1)


def angles_to_centres(features: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample: the angle to its own class centre and to the nearest other centre, degrees.

    Class centres are the normalised means of each class's normalised features (the same
    definition for every loss, softmax included). Shapes: (N, D), (N,) -> (N,), (N,).
    """
    f = F.normalize(features.double(), dim=1)
    to_centres = torch.rad2deg(torch.acos((f @ _centres(f, y).T).clamp(-1, 1)))
    own = to_centres.gather(1, y[:, None]).squeeze(1)
    others = to_centres.scatter(1, y[:, None], float("inf")).min(1).values
    return own, others


def angular_stats(features: Tensor, y: Tensor) -> dict[str, float]:
    """Angles that describe how compact and how separated the classes are, in degrees.

    Returns:
        intra_deg: mean angle between a feature and its own class centre;
        nearest_centre_deg: mean angle between a feature and the nearest *other* centre;
        centre_min_deg: smallest angle between two class centres;
        gap_deg: smallest angle between two features of different classes;
        accuracy: share of features closer to their own centre than to any other.
    """
    f = F.normalize(features.double(), dim=1)
    own, others = angles_to_centres(f, y)
    centres = _centres(f, y)
    between = torch.rad2deg(torch.acos((centres @ centres.T).clamp(-1, 1)))
    between.fill_diagonal_(float("inf"))
    pair = torch.rad2deg(torch.acos((f @ f.T).clamp(-1, 1)))
    pair[y[:, None] == y[None, :]] = float("inf")
    return {"intra_deg": own.mean().item(), "nearest_centre_deg": others.mean().item(),
            "centre_min_deg": between.min().item(), "gap_deg": pair.min().item(),
            "accuracy": (own < others).double().mean().item()}
