"""Sub-center ArcFace analysis: dominant sub-centers, angles to them, which samples to drop.

A sub-center head (:class:`arclab.losses.heads.SubCenterNormLinear`) gives each class K sub-centers
(weight rows ``c·K + k``). After training, most clean samples of a class pick the same
sub-center, the *dominant* one; hard and mislabelled samples gather at the others or sit far
from all of them. The TPAMI paper drops the samples whose angle to their class's dominant
sub-center exceeds 75° (:func:`drop_noisy`) and retrains a K = 1 model on the rest
(:func:`arclab.experiments.ablations.run_subcenter_table`).

Angles are in degrees throughout. Features (N, D) are L2-normalised inside.

Taught in: notebooks/06_subcenter_arcface.ipynb
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["NOISE_NAMES", "drop_noisy", "drop_quality", "dominant_subcenters", "threshold_sweep"]

NOISE_NAMES = {0: "clean", 1: "closed-set flip", 2: "open-set outlier"}
"""The codes of :func:`arclab.data.splits.inject_label_noise`."""


def _weight_of(head: nn.Module | Tensor, subcenters: int | None) -> tuple[Tensor, int]:
    if isinstance(head, nn.Module):
        weight = head.weight
        k = int(getattr(head, "subcenters", 1))
        if subcenters is not None and subcenters != k:
            raise ValueError(f"subcenters ({subcenters}) differs from the head's ({k})")
    else:
        weight, k = head, 1 if subcenters is None else subcenters
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"subcenters must be an integer >= 1, got {k!r}")
    weight = torch.as_tensor(weight).detach()
    if weight.ndim != 2 or weight.shape[0] % k:
        raise ValueError(f"weight must have shape (C*K, D) with K = {k}, got "
                         f"{tuple(weight.shape)}")
    return weight, k


def dominant_subcenters(features: Tensor | np.ndarray, labels, head: nn.Module | Tensor, *,
                        subcenters: int | None = None) -> dict:
    """Each class's dominant sub-center and each sample's angles to its own class's ones.

    Args:
        features: (N, D) float embeddings of the training samples.
        labels: (N,) int training labels in [0, C).
        head: a :class:`~arclab.losses.heads.SubCenterNormLinear` (or
            :class:`~arclab.losses.heads.NormLinear`, K = 1), or its weight (C·K, D) with
            ``subcenters`` = K.

    Returns:
        numpy arrays: ``nearest`` (N,) the own-class sub-center each sample is closest to;
        ``dominant`` (C,) the sub-center most of a class's samples pick (ties: the lowest
        index; a class without samples: 0); ``counts`` (C, K) how many pick each;
        ``angle`` (N,) degrees to the own class's dominant sub-center; ``angle_nearest`` (N,)
        degrees to the nearest own sub-center; ``angle_other`` (N,) degrees to the nearest
        non-dominant own sub-center (None when K = 1); ``angles`` (N, K) degrees to each own
        sub-center; ``is_dominant`` (N,) whether the nearest is the dominant one.

    Raises:
        ValueError: K < 1, labels out of [0, C), wrong shapes, non-finite features.
    """
    weight, k = _weight_of(head, subcenters)
    x = torch.as_tensor(features).detach().to(torch.float64)
    y = torch.as_tensor(np.asarray(labels)).to(torch.int64)
    c = weight.shape[0] // k
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"features must have shape (N, {weight.shape[1]}), got "
                         f"{tuple(x.shape)}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.shape[0] and (int(y.min()) < 0 or int(y.max()) >= c):
        raise ValueError(f"labels must be in [0, {c}) (the head's classes), got "
                         f"[{int(y.min())}, {int(y.max())}]")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features must be finite, got NaN or inf")
    w = F.normalize(weight.to(torch.float64), dim=1).view(c, k, -1)
    own = torch.einsum("nd,nkd->nk", F.normalize(x, dim=1), w[y])  # (N, K) cosines
    angles = torch.rad2deg(torch.arccos(own.clamp(-1, 1))).numpy()
    nearest = own.argmax(1).numpy()
    counts = np.zeros((c, k), dtype=np.int64)
    np.add.at(counts, (y.numpy(), nearest), 1)
    dominant = counts.argmax(1)  # argmax takes the first of equal counts
    rows = np.arange(len(nearest))
    dom = dominant[y.numpy()]
    other = None
    if k > 1:
        masked = angles.copy()
        masked[rows, dom] = np.inf
        other = masked.min(1)
    return {"nearest": nearest, "dominant": dominant, "counts": counts,
            "angle": angles[rows, dom], "angle_nearest": angles[rows, nearest],
            "angle_other": other, "angles": angles, "is_dominant": nearest == dom}


def drop_noisy(features: Tensor | np.ndarray, labels, head: nn.Module | Tensor, *,
               subcenters: int | None = None, threshold_deg: float = 75.0) -> dict:
    """Keep the samples whose angle to their class's dominant sub-center is at most
    ``threshold_deg`` (the TPAMI paper's purification step; retrain K = 1 on ``keep``).

    Returns:
        :func:`dominant_subcenters`'s arrays plus ``keep`` and ``drop`` (sorted indices),
        ``threshold_deg`` and ``stats`` {"n", "kept", "dropped", "kept_fraction",
        "dominant_fraction" (share of samples whose nearest sub-center is the dominant one)}.

    Raises:
        ValueError: threshold outside (0°, 180°), and as :func:`dominant_subcenters`.

    Example:
        >>> w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])          # one class, K = 2
        >>> x = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0]])
        >>> drop_noisy(x, [0, 0, 0], w, subcenters=2)["keep"].tolist()
        [0, 1]
    """
    if isinstance(threshold_deg, bool) or not isinstance(threshold_deg, (int, float)) \
            or not 0 < threshold_deg < 180:
        raise ValueError(f"threshold_deg must be in (0, 180) degrees, got {threshold_deg!r}")
    out = dominant_subcenters(features, labels, head, subcenters=subcenters)
    kept = out["angle"] <= threshold_deg
    n = len(kept)
    out.update(keep=np.flatnonzero(kept), drop=np.flatnonzero(~kept),
               threshold_deg=float(threshold_deg),
               stats={"n": n, "kept": int(kept.sum()), "dropped": int(n - kept.sum()),
                      "kept_fraction": float(kept.mean()) if n else 0.0,
                      "dominant_fraction": float(out["is_dominant"].mean()) if n else 0.0})
    return out


def drop_quality(dropped, noise) -> dict:
    """How well a drop mask finds the known noise.

    Args:
        dropped: (N,) bool, True where a sample was dropped (or an index array of them).
        noise: (N,) int codes, 0 clean and > 0 noisy (1 closed-set flip, 2 open-set outlier).

    Returns:
        {"precision": noisy share of the dropped (NaN-free: 0 when nothing is dropped),
        "recall": share of all noisy samples dropped, "clean_kept": share of clean samples
        kept, "by_type": {name: {"n", "dropped", "recall"}} per code present}.

    Raises:
        ValueError: a bool ``dropped`` whose shape differs from ``noise``'s.

    Example:
        >>> q = drop_quality([True, True, False, False], [1, 0, 2, 0])
        >>> q["precision"], q["recall"], q["clean_kept"]
        (0.5, 0.5, 0.5)
    """
    noise = np.asarray(noise)
    d = np.asarray(dropped)
    if d.dtype != bool:
        mask = np.zeros(len(noise), dtype=bool)
        mask[d.astype(np.int64)] = True
        d = mask
    if d.shape != noise.shape:
        raise ValueError(f"dropped must have shape {noise.shape} (one flag per sample), got "
                         f"{d.shape}")
    noisy = noise > 0

    def share(a: np.ndarray, b: np.ndarray) -> float:
        return float((a & b).sum() / b.sum()) if b.any() else 0.0

    by_type = {NOISE_NAMES.get(int(c), str(int(c))): {
        "n": int((noise == c).sum()), "dropped": int((d & (noise == c)).sum()),
        "recall": share(d, noise == c)} for c in np.unique(noise)}
    return {"precision": share(noisy, d), "recall": share(d, noisy),
            "clean_kept": share(~d, ~noisy), "by_type": by_type}


def threshold_sweep(angles, noise, thresholds_deg) -> list[dict]:
    """For each threshold: the kept fraction, the clean share kept, and the noise removed,
    overall and per noise type (rows of :func:`drop_quality` plus ``threshold_deg`` and
    ``kept_fraction``).

    Raises:
        ValueError: ``noise`` not one code per angle (as :func:`drop_quality`).
    """
    angles = np.asarray(angles, dtype=np.float64)
    rows = []
    for t in thresholds_deg:
        dropped = angles > t
        rows.append({"threshold_deg": float(t), "kept_fraction": float((~dropped).mean()),
                     **drop_quality(dropped, noise)})
    return rows
