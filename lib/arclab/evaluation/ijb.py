"""IJB-B / IJB-C 1:1 template verification as insightface's ``eval_ijbc.py`` does it.

The files are read by :mod:`arclab.evaluation.ijb_layout` (the layout is described there).

The pipeline is ``eval_ijbc.py``'s default (TestMode N1 D1 F2): each loose crop aligned to the
ArcFace 112x112 template from its 5 points and rounded to uint8, embedded with its mirror and
the two features added (F2; ``flip=False`` embeds the image alone), features kept unnormalised
(N1) and multiplied by the detector score (D1); then a mean over the images of each media, a
mean over the medias of each template, L2 normalisation, the cosine of each listed pair, and
TAR at FAR 1e-6 .. 1e-1 by :func:`~arclab.evaluation.verification.tar_at_far` (``"nearest"``:
sklearn's ROC and the flipped argmin that ``eval_ijbc.py`` prints; ``"strict"``: arclab's rule).

Command line: :mod:`arclab.evaluation.eval_ijbc`.

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from arclab.evaluation.ijb_layout import IJBCrops, IJBSet, read_ijb
from arclab.evaluation.verification import tar_at_far
from arclab.models.embed import extract_embeddings

__all__ = ["IJB_FARS", "ijb_embed", "ijb_template_features", "ijb_verification"]

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
"""The FARs of ``eval_ijbc.py``'s TAR table."""


def ijb_embed(model: nn.Module, ijb: IJBSet, *, flip: bool = True, batch_size: int = 128,
              workers: int = 0, progress: bool = True) -> Tensor:
    """Features (N, D) float32 of every image row, unnormalised: model(crop) + model(mirror)
    with ``flip`` (``eval_ijbc.py``'s F2), on the model's device, pixels scaled to [-1, 1].

    Args:
        workers: DataLoader processes that read and align the images (0: this process).

    Raises:
        ValueError: batch_size < 1 or workers < 0; an unreadable image.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    loader = DataLoader(IJBCrops(ijb), batch_size=batch_size, num_workers=workers)
    return extract_embeddings(model, (x.float() / 127.5 - 1 for x in loader), flip=flip,
                              progress=progress)


def ijb_template_features(features: np.ndarray | Tensor, templates: np.ndarray | Sequence[int],
                          medias: np.ndarray | Sequence[int],
                          det_scores: np.ndarray | Sequence[float] | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """One L2-normalised feature per template: features times the detector score (if given),
    averaged over the images of each media, then over the medias of the template.

    As ``eval_ijbc.py``'s ``image2template_feature`` (which sums the media means: the same
    direction), in float64. A media id is pooled within its template only.

    Shapes: features (N, D); templates, medias, det_scores (N,) -> (ids (T,) int64 ascending,
        (T, D) float64 unit rows).
    Units: none.

    Raises:
        ValueError: features not (N, D) finite reals; templates or medias not (N,) integers;
            det_scores not (N,) finite and >= 0; a template whose pooled feature is zero.

    Example:
        >>> f = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> ids, t = ijb_template_features(f, [5, 5, 5], [1, 2, 2])  # media 2 counts once
        >>> ids.tolist(), t.round(4).tolist()
        ([5], [[0.7071, 0.7071]])
    """
    x = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features)
    if x.ndim != 2 or x.shape[0] < 1 or x.dtype == bool or not np.issubdtype(x.dtype, np.number) \
            or np.iscomplexobj(x):
        raise ValueError(f"features must be a real (N, D) array, got shape {x.shape}, dtype "
                         f"{x.dtype}")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"features must be finite, got NaN or inf in row "
                         f"{int(np.flatnonzero(~np.isfinite(x).all(1))[0])}")
    ids = {}
    for arg, v in (("templates", templates), ("medias", medias)):
        a = np.asarray(v)
        if a.shape != (len(x),) or a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{arg} must be ({len(x)},) integers, got shape {a.shape}, dtype "
                             f"{a.dtype}")
        ids[arg] = a.astype(np.int64)
    if det_scores is not None:
        s = np.asarray(det_scores, dtype=np.float64)
        if s.shape != (len(x),) or not (np.isfinite(s) & (s >= 0)).all():
            raise ValueError(f"det_scores must be ({len(x)},) finite numbers >= 0, got shape "
                             f"{s.shape}")
        x = x * s[:, None]
    keys, media_of = np.unique(np.stack([ids["templates"], ids["medias"]], 1), axis=0,
                               return_inverse=True)
    media = _means(x, media_of.reshape(-1), len(keys))
    uniq, template_of = np.unique(keys[:, 0], return_inverse=True)
    pooled = _means(media, template_of.reshape(-1), len(uniq))
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    if (norms[:, 0] == 0).any():
        raise ValueError(f"templates must pool to nonzero features, got zero for template "
                         f"{int(uniq[norms[:, 0] == 0][0])}")
    return uniq, pooled / norms


def _means(x: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """Row means of ``x`` per group 0 .. n-1 (every group non-empty)."""
    total = torch.zeros(n, x.shape[1], dtype=torch.float64).index_add_(
        0, torch.from_numpy(group), torch.from_numpy(x))
    return (total / torch.from_numpy(np.bincount(group, minlength=n))[:, None]).numpy()


def ijb_verification(model: nn.Module, root: str | Path, name: str = "IJBC", *,
                     fars: Sequence[float] = IJB_FARS, flip: bool = True,
                     detector_score: bool = True,
                     rule: Literal["nearest", "strict"] = "nearest", batch_size: int = 128,
                     workers: int = 0, progress: bool = True) -> dict:
    """IJB-B/C 1:1 verification of ``model``: :func:`read_ijb`, :func:`ijb_embed`,
    :func:`ijb_template_features`, then :func:`~arclab.evaluation.verification.tar_at_far` over
    the pair list. The model runs on its own device, in eval mode.

    Args:
        detector_score: weight each image by its detector score (``eval_ijbc.py``'s D1).
        rule: ``"nearest"`` reports what ``eval_ijbc.py`` prints; ``"strict"`` arclab's rule.

    Returns:
        ``{"tar": {far: TAR}, "rows": tar_at_far's rows (threshold, achieved FAR, interval),
        "n_images", "n_medias", "n_templates", "n_pairs", "n_pos", "n_neg", "name", "rule",
        "flip", "detector_score", "template_ids" (T,), "template_features" (T, D)}``.

    Raises:
        ValueError: anything :func:`read_ijb`, :func:`ijb_embed`, ``tar_at_far`` refuse.
    """
    ijb = read_ijb(root, name)
    feats = ijb_embed(model, ijb, flip=flip, batch_size=batch_size, workers=workers,
                      progress=progress)
    tids, tfeats = ijb_template_features(feats, ijb.templates, ijb.medias,
                                         ijb.det_scores if detector_score else None)
    rows = tar_at_far(tfeats, tids, ijb.pairs[:, 0], ijb.pairs[:, 1], ijb.labels, list(fars),
                      rule=rule)
    n_medias = len(np.unique(np.stack([ijb.templates, ijb.medias], 1), axis=0))
    return {"tar": {f: r["tpr"] for f, r in rows.items()}, "rows": rows,
            "n_images": len(ijb.images), "n_medias": n_medias, "n_templates": len(tids),
            "n_pairs": len(ijb.labels), "n_pos": int(ijb.labels.sum()),
            "n_neg": int((ijb.labels == 0).sum()), "name": ijb.name, "rule": rule, "flip": flip,
            "detector_score": detector_score, "template_ids": tids, "template_features": tfeats}
