"""Angle statistics of a learned embedding, as in the ArcFace paper's angle table.

All angles in degrees, between L2-normalised vectors:

- ``intra``: mean angle between a sample's feature and its class's feature centre (the mean of
  the class's normalised features, normalised);
- ``inter``: mean over classes of the smallest angle from the class's centre to another
  class's centre;
- with the classifier weights W (C, D): ``w_eq``, the mean angle between W_j and the feature
  centre of class j (how well the weights sit on the features), and ``w_inter``, the mean over
  classes of the smallest angle between W_j and another W_k.

:func:`pair_angles` (every pair of a labelled set) and :func:`listed_pair_angles` (the listed
pairs of a verification set, e.g. a ``.bin``) give the angle of each positive and negative
pair, for histograms.

The paper reports Intra/Inter on two test sets (its Intra1/Inter1 and Intra2/Inter2); here they
are computed on whichever features you pass (training images, or unseen identities).

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from arclab.evaluation._tiles import all_pair_scores

__all__ = ["angle_statistics", "class_centres", "listed_pair_angles", "pair_angles"]


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _deg(cos: Tensor) -> Tensor:
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def class_centres(features: Tensor | np.ndarray, labels) -> tuple[Tensor, Tensor]:
    """(classes (K,) ascending, centres (K, D)): the normalised mean of each class's
    normalised features, in float64.

    Raises:
        ValueError: features not (N, D) or labels not (N,).
    """
    x = _unit(torch.as_tensor(np.asarray(features), dtype=torch.float64))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if x.ndim != 2 or y.shape != (len(x),):
        raise ValueError(f"features must be (N, D) and labels (N,), got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    classes, index = torch.unique(y, return_inverse=True)
    sums = torch.zeros(len(classes), x.shape[1], dtype=torch.float64).index_add_(0, index, x)
    return classes, _unit(sums)


def _min_other(c: Tensor) -> Tensor:
    cos = c @ c.T
    cos.fill_diagonal_(-2.0)
    return _deg(cos.max(dim=1).values)


def angle_statistics(features: Tensor | np.ndarray, labels, *,
                     weight: Tensor | np.ndarray | None = None) -> dict[str, float]:
    """``{"intra", "inter"}`` (and ``"w_eq"``, ``"w_inter"`` given ``weight``) in degrees.

    ``weight`` rows are indexed by label: row j is class j, so labels must lie in
    [0, len(weight)). Needs at least two classes.

    Raises:
        ValueError: as :func:`class_centres`; labels naming fewer than two classes, or (given
            ``weight``) outside [0, len(weight)).

    Example:
        >>> f = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.0, 1.0], [0.0, 1.0]])
        >>> s = angle_statistics(f, [0, 0, 1, 1], weight=torch.eye(2))  # intra: atan(0.1)/2
        >>> round(s["intra"], 2), round(s["inter"], 1), round(s["w_eq"], 3), s["w_inter"]
        (2.86, 90.0, 0.0, 90.0)
    """
    classes, centres = class_centres(features, labels)
    if len(classes) < 2:
        raise ValueError("labels must name at least two classes")
    x = _unit(torch.as_tensor(np.asarray(features), dtype=torch.float64))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    own = centres[torch.searchsorted(classes, y)]
    out = {"intra": _deg((x * own).sum(1)).mean().item(),
           "inter": _min_other(centres).mean().item()}
    if weight is not None:
        w = _unit(torch.as_tensor(np.asarray(weight), dtype=torch.float64))
        if classes.min() < 0 or classes.max() >= len(w):
            raise ValueError(f"labels must lie in [0, {len(w)}) to index weight rows")
        out["w_eq"] = _deg((w[classes] * centres).sum(1)).mean().item()
        out["w_inter"] = _min_other(w).mean().item()
    return out


def pair_angles(features: Tensor | np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) of every pair i < j of a labelled set: (positive pairs, negative
    pairs), each a float64 array in :func:`~arclab.evaluation.all_pair_scores`' pair order,
    from its float32 cosines (the evaluator's tiles: memory O(N²), for small sets).

    Raises:
        ValueError: features not (N, D) or ids not of length N; features that
            :func:`~arclab.evaluation.all_pair_scores` refuses.

    Example:
        >>> pos, neg = pair_angles(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), [0, 0, 1])
        >>> pos.tolist(), neg.tolist()
        ([0.0], [90.0, 90.0])
    """
    shape, y = tuple(np.shape(features)), np.asarray(ids)
    if len(shape) != 2 or y.shape != (shape[0],):
        raise ValueError(f"features must be (N, D) and ids (N,), got {shape} and {y.shape}")
    i, j, cos = all_pair_scores(features)
    deg = _deg(cos).numpy().astype(np.float64)
    same = y[i.numpy()] == y[j.numpy()]
    return deg[same], deg[~same]


def listed_pair_angles(left: Tensor | np.ndarray, right: Tensor | np.ndarray, same
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Angles (degrees) of listed pairs, row k of ``left`` (P, D) with row k of ``right``:
    (those with ``same[k]`` true, the others), float64.

    Raises:
        ValueError: left and right of different shapes or not 2-D, or same not of length P.

    Example:
        >>> pos, neg = listed_pair_angles(torch.eye(2), torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
        ...                               [True, False])
        >>> pos.round(6).tolist(), neg.round(6).tolist()
        ([45.0], [90.0])
    """
    a = _unit(torch.as_tensor(np.asarray(left), dtype=torch.float64))
    b = _unit(torch.as_tensor(np.asarray(right), dtype=torch.float64))
    same = np.asarray(same, dtype=bool)
    if a.shape != b.shape or a.ndim != 2 or same.shape != (len(a),):
        raise ValueError(f"left and right must be (P, D) and same (P,), got {tuple(a.shape)}, "
                         f"{tuple(b.shape)} and {same.shape}")
    deg = _deg((a * b).sum(1)).numpy()
    return deg[same], deg[~same]
