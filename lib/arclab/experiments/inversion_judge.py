"""Judging inverted faces fairly: an independent model's verdict per identity, a validation
half to choose the prior's weight on and a test half to report it on, and a paired comparison
of two weights over the test identities.

Notebook 13 inverts one model (:mod:`arclab.experiments.inversion`) and asks a second,
independently trained one whether the images carry the identity. Choosing the BN prior's weight
by the very numbers it is then reported with would flatter it, so the weight is chosen on one
half of the identities (:func:`holdout_halves`, :func:`pick_weight`) and compared with no prior
on the other (:func:`compare_identities`).

Taught in: notebooks/13_inversion.ipynb
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclab.evaluation.paired import (
    Comparison,
    compare_paired,
    grouped_mean_boot,
    identity_resamples,
)
from arclab.models import embed_images

__all__ = ["compare_identities", "holdout_halves", "judge_images", "pick_weight"]


def judge_images(judge: nn.Module, images: np.ndarray, references: Tensor,
                 threshold: float) -> dict[str, Tensor]:
    """An independent model's verdict on one image per identity: the cosine of its feature to
    the mean of that identity's reference features ("cos to centre"), and the fraction of the
    (image, reference) pairs whose cosine exceeds ``threshold`` ("accepted").

    Shapes: images (N, H, W, 3) uint8; references (N, K, D) unit-norm features of K real
    photos of each identity -> two (N,) tensors.

    Raises:
        ValueError: references not (N, K, D) with N the number of images.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> refs = F.normalize(torch.randn(2, 4, 3), dim=2)
        >>> v = judge_images(net, np.zeros((2, 2, 2, 3), np.uint8), refs, threshold=1.0)
        >>> v["cos to centre"].shape, v["accepted"].tolist()
        (torch.Size([2]), [0.0, 0.0])
    """
    if references.ndim != 3 or len(references) != len(images):
        raise ValueError(f"references must be (N, K, D) with N = {len(images)} images, got "
                         f"{tuple(references.shape)}")
    f = F.normalize(embed_images(judge, images), dim=1)
    centre = F.normalize(references.mean(1), dim=1)
    cos = torch.einsum("nd,nkd->nk", f, references)
    return {"cos to centre": (f * centre).sum(1), "accepted": (cos > threshold).float().mean(1)}


def holdout_halves(n_invert: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the 2·``n_invert`` targets (``n_invert`` inside the training set, then as many
    outside) into a validation and a test half: alternate identities of each group, the odd
    positions for validation and the even ones for test, so both halves hold inside and
    outside identities. Choose a setting on the validation half, report it on the test half.

    Returns (validation indices, test indices) into the targets, ascending.

    Raises:
        ValueError: n_invert not an integer >= 2 (each half needs an identity of each group).

    Example:
        >>> holdout_halves(3)
        (array([1, 4]), array([0, 2, 3, 5]))
    """
    if isinstance(n_invert, bool) or not isinstance(n_invert, (int, np.integer)) \
            or n_invert < 2:
        raise ValueError(f"n_invert must be an integer >= 2, got {n_invert!r}")
    position = np.r_[np.arange(n_invert), np.arange(n_invert)]
    idx = np.arange(2 * n_invert)
    return idx[position % 2 == 1], idx[position % 2 == 0]


def pick_weight(scores: dict[float, np.ndarray | Tensor], rows: np.ndarray, *,
                exclude: tuple[float, ...] = (0.0,)) -> float:
    """The weight whose mean score over ``rows`` (e.g. the validation half) is highest, among
    the weights not in ``exclude`` (by default every weight but 0, i.e. the prior on); ties go
    to the smaller weight.

    Shapes: each score (N,) per target; rows integer indices into them.

    Raises:
        ValueError: no weight left to choose from, or no rows.

    Example:
        >>> pick_weight({0.0: np.array([.9, .9]), 0.3: np.array([.2, .6]), 1.0: np.array([.5, .1])},
        ...             np.array([1]))
        0.3
    """
    candidates = sorted(w for w in scores if w not in exclude)
    rows = np.asarray(rows)
    if not candidates or rows.size == 0:
        raise ValueError(f"need a weight outside {exclude} and at least one row, got "
                         f"{sorted(scores)} and {rows.tolist()}")
    means = [float(np.asarray(scores[w])[rows].mean()) for w in candidates]
    return candidates[int(np.argmax(means))]


def compare_identities(a, b, *, name_a: str, name_b: str, unit: str = "points",
                       n_boot: int = 200, seed: int = 0) -> Comparison:
    """Mean of ``a`` − mean of ``b`` over the same identities (one value each, e.g. the judge's
    cosine at two prior weights), with an identity-bootstrap interval: one run, so the
    interval covers which identities were drawn, not a re-run
    (:func:`arclab.evaluation.paired.compare_paired` with one seed).

    Shapes: a, b (N,) with N >= 2, item i of both the same identity.

    Raises:
        ValueError: a and b not (N,) of one length N >= 2, or not finite.

    Example:
        >>> c = compare_identities([0.5, 0.6, 0.7, 0.6], [0.2, 0.4, 0.3, 0.3], name_a="on",
        ...                        name_b="off", unit="cos")
        >>> c.better, round(c.mean, 2)
        ('on', 0.3)
    """
    a, b = (np.asarray(x.cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
            for x in (a, b))
    if a.ndim != 1 or a.shape != b.shape or len(a) < 2:
        raise ValueError(f"a and b must be (N,) of one length N >= 2, got {a.shape} and {b.shape}")
    counts = identity_resamples(len(a), n_boot, seed=seed)
    ids = np.arange(len(a))
    return compare_paired([a.mean()], [b.mean()], grouped_mean_boot(a, ids, counts)[None],
                          grouped_mean_boot(b, ids, counts)[None], name_a=name_a, name_b=name_b,
                          unit=unit)
