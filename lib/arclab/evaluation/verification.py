"""Verification over given pairs: LFW 10-fold accuracy, template features, IJB-style TAR@FAR.

Scores are cosine similarities throughout; "same" means similarity > threshold. insightface's
LFW code thresholds the squared distance of normalised embeddings, ||a - b||² = 2 - 2·cos, with
"same" when the distance is below the threshold, so its distance threshold d is the cosine
threshold 1 - d/2 here.

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from arclab.data.splits import contiguous_folds
from arclab.evaluation._select import decimal_rank, wilson
from arclab.evaluation._tiles import as_features, as_ids
from arclab.evaluation.allpairs import check_fprs

__all__ = ["tar_at_far", "template_features",
           "verification_accuracy_10fold"]


def _numpy(a, name: str) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def _as_labels(labels, n: int, name: str) -> np.ndarray:
    a = _numpy(labels, name)
    if a.shape != (n,) or not (a.dtype == bool or np.isin(a, (0, 1)).all()):
        raise ValueError(f"{name} must be ({n},) booleans or 0/1, got shape {a.shape}, "
                         f"dtype {a.dtype}")
    return a.astype(bool)


def verification_accuracy_10fold(emb1: np.ndarray | Tensor, emb2: np.ndarray | Tensor,
                                 issame: np.ndarray | Tensor | Sequence[bool], *,
                                 thresholds: np.ndarray | None = None) -> dict:
    """LFW-protocol accuracy: 10 contiguous folds, threshold picked on the other nine.

    As insightface's ``calculate_roc`` with ``KFold(10, shuffle=False)``: fold k is a
    contiguous block (the first P mod 10 folds one pair longer); on the other nine folds the
    first threshold of the grid with the best accuracy is chosen, and the held-out fold is
    scored with it. Cosine similarity of the L2-normalised embeddings (float64), "same" when
    similarity > threshold.

    Args:
        emb1, emb2: (P, D) embeddings of the two sides of each pair.
        issame: (P,) booleans (or 0/1): whether pair p is the same identity.
        thresholds: cosine thresholds to try; default ``np.arange(-1, 1, 0.001)``.

    Returns:
        ``{"mean", "std"}`` (population std, as insightface) of the 10 fold accuracies,
        ``"accuracies"``, ``"thresholds"``: arrays (10,) per fold, and ``"correct"``: (P,)
        bool, each pair judged at its fold's threshold (for identity-level resampling with
        :func:`arclab.evaluation.paired.grouped_mean_boot`).

    Shapes: emb1, emb2 (P, D) with P >= 10; issame (P,).
    Units: accuracies are fractions; thresholds cosines.

    Raises:
        ValueError: shapes differ or P < 10, NaN/inf or zero embeddings, issame not (P,)
            booleans, thresholds empty or not finite.

    Example:
        >>> e = np.eye(10, 2) + 1.0
        >>> r = verification_accuracy_10fold(e, e, np.ones(10, bool), thresholds=[0.5, 2.0])
        >>> r["mean"], r["thresholds"].tolist()
        (1.0, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])

    Taught in: notebooks/03_synthfaces.ipynb
    """
    a, b = _numpy(emb1, "emb1").astype(np.float64), _numpy(emb2, "emb2").astype(np.float64)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 10:
        raise ValueError(f"emb1 and emb2 must have the same shape (P, D) with P >= 10, got "
                         f"{a.shape} and {b.shape}")
    for name, e in (("emb1", a), ("emb2", b)):
        bad = ~np.isfinite(e).all(axis=1) | (np.linalg.norm(e, axis=1) == 0)
        if bad.any():
            raise ValueError(f"{name} must be finite with nonzero rows, got row "
                             f"{int(np.flatnonzero(bad)[0])}")
    same = _as_labels(issame, a.shape[0], "issame")
    sims = np.sum(a / np.linalg.norm(a, axis=1, keepdims=True)
                  * (b / np.linalg.norm(b, axis=1, keepdims=True)), axis=1)
    grid = np.arange(-1, 1, 0.001) if thresholds is None else np.asarray(thresholds, np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
        raise ValueError(f"thresholds must be a non-empty 1-D list of finite numbers, got "
                         f"{thresholds!r}")
    fold = contiguous_folds(len(sims))

    def accuracy(idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        pos, neg = np.sort(sims[idx][same[idx]]), np.sort(sims[idx][~same[idx]])
        accepted = len(pos) - np.searchsorted(pos, t, side="right")
        rejected = np.searchsorted(neg, t, side="right")
        return (accepted + rejected) / len(idx)

    accs, best = np.zeros(10), np.zeros(10)
    for k in range(10):
        test, train = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        best[k] = grid[int(np.argmax(accuracy(train, grid)))]
        accs[k] = accuracy(test, best[k:k + 1])[0]
    correct = (sims > best[fold]) == same
    return {"mean": float(accs.mean()), "std": float(accs.std()), "accuracies": accs,
            "thresholds": best, "correct": correct}


def template_features(features: np.ndarray | Tensor, template_ids: np.ndarray | Tensor, *,
                      weighting: Literal["mean", "norm3"] = "mean") -> tuple[Tensor, Tensor]:
    """One L2-normalised feature per template (or video) from its images (or frames).

    ``"mean"``: the mean of the L2-normalised features (the challenge baseline's "feature
    centre of all frames"). ``"norm3"``: the weighted mean of the *raw* features with weights
    ∝ ||f||³, the quality-aware aggregation of the challenge's video entries (seed 001: "the
    cube of the norm of each feature as the weight", without normalising frames first).
    Either is then L2-normalised; computed in float64, returned as float32.

    Args:
        features: (N, D) image or frame features, raw (not normalised).
        template_ids: (N,) integer template (or video) of each row.
        weighting: ``"mean"`` or ``"norm3"``, as above.

    Returns:
        (template ids, template features), one row per distinct id in ascending order.

    Shapes: features (N, D), template_ids (N,) -> (ids (T,) int64 ascending, (T, D) float32),
        T the number of distinct ids, on the device of ``features``.
    Units: none; output rows have unit L2 norm.

    Raises:
        ValueError: features not (N, D) or not finite; template_ids not (N,) integers; a
            zero feature under "mean"; a template whose aggregate is zero; unknown weighting.

    Example:
        >>> f = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
        >>> ids, t = template_features(f, [7, 7, 9], weighting="norm3")
        >>> ids.tolist(), t.double().numpy().round(4).tolist()  # 7: (27·[3, 0] + [0, 1]) / 28
        ([7, 9], [[0.9999, 0.0123], [0.0, 1.0]])

    Taught in: notebooks/08_trillion_pairs.ipynb
    """
    if weighting not in ("mean", "norm3"):
        raise ValueError(f"weighting must be 'mean' or 'norm3', got {weighting!r}")
    x = features.detach() if isinstance(features, Tensor) else torch.as_tensor(
        np.asarray(features))
    if x.ndim != 2 or x.shape[0] < 1 or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"features must be a real (N, D) array, got shape {tuple(x.shape)} "
                         f"and dtype {x.dtype}")
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"features must be finite, got NaN or inf in row "
                         f"{int((~torch.isfinite(x).all(1)).nonzero()[0])}")
    ids = torch.as_tensor(as_ids(template_ids, x.shape[0], "template_ids"), device=x.device)
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    if weighting == "mean":
        if (norms == 0).any():
            raise ValueError(f"features must have nonzero rows for weighting='mean', got a zero "
                             f"row at index {int((norms[:, 0] == 0).nonzero()[0])}")
        x, w = x / norms, torch.ones_like(norms)
    else:
        w = norms**3
    uniq, row = torch.unique(ids, return_inverse=True)
    total = torch.zeros(len(uniq), x.shape[1], dtype=x.dtype, device=x.device)
    total.index_add_(0, row, x * w)
    weight = torch.zeros(len(uniq), 1, dtype=x.dtype, device=x.device).index_add_(0, row, w)
    agg = total / weight
    agg_norm = torch.linalg.vector_norm(agg, dim=1, keepdim=True)
    bad = ~(agg_norm[:, 0] > 0)
    if bad.any():
        raise ValueError(f"template_ids must name templates whose features do not cancel out "
                         f"(zero aggregate), got template {int(uniq[bad][0])}")
    return uniq, (agg / agg_norm).to(torch.float32)


def tar_at_far(template_feats: np.ndarray | Tensor, template_ids: np.ndarray | Tensor,
               pairs_p: np.ndarray | Tensor, pairs_q: np.ndarray | Tensor,
               labels: np.ndarray | Tensor, fars: float | Sequence[float], *,
               rule: Literal["strict", "nearest"] = "strict", ci: float = 0.95
               ) -> dict[float, dict]:
    """IJB-style 1:1 verification over a given list of template pairs.

    Scores are float32 cosines of the L2-normalised template features (as
    :func:`~arclab.evaluation.allpairs.tpr_at_fpr` computes them, but only for the listed
    pairs, which must fit in memory). ``rule`` as in ``tpr_at_fpr``: ``"strict"`` thresholds at
    the (k+1)-th largest negative, k = floor(far · n_neg); ``"nearest"`` is insightface's IJB
    evaluation (sklearn ``roc_curve``, flipped argmin of |fpr - far|).

    Args:
        template_feats: (T, D) template features (normalised here).
        template_ids: (T,) distinct integer id of each row of ``template_feats``.
        pairs_p, pairs_q: (Q,) template ids of the two sides of each pair.
        labels: (Q,) 1 (or True) for a same-identity pair, 0 otherwise.
        fars: one target FAR or a sequence of them, each in (0, 1].
        rule: ``"strict"`` or ``"nearest"``.
        ci: confidence level of the Wilson interval on the TAR.

    Returns:
        ``{far: {"tpr", "fpr_achieved", "threshold", "tpr_ci", "n_pos", "n_neg"}}``, as
        :func:`~arclab.evaluation.allpairs.tpr_at_fpr` (TAR is the "tpr").

    Shapes: template_feats (T, D); template_ids (T,) distinct; pairs_p, pairs_q, labels (Q,).
    Units: rates are fractions, thresholds cosines.

    Raises:
        ValueError: shapes or dtypes wrong, duplicate template_ids, a pair naming an unknown
            template, labels not 0/1, no positive or no negative pair, fars outside (0, 1].

    Example:
        >>> t = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
        >>> r = tar_at_far(t, [10, 11, 12], [10, 10, 11], [11, 12, 12], [1, 0, 0], [0.5])
        >>> r[0.5]["tpr"], r[0.5]["threshold"], r[0.5]["n_neg"]
        (1.0, 0.0, 2)

    Taught in: notebooks/08_trillion_pairs.ipynb
    """
    if rule not in ("strict", "nearest"):
        raise ValueError(f"rule must be 'strict' or 'nearest', got {rule!r}")
    if isinstance(ci, bool) or not isinstance(ci, (int, float)) or not 0 < ci < 1:
        raise ValueError(f"ci must be a confidence level in (0, 1), got {ci!r}")
    targets = check_fprs(fars)
    feats = as_features(template_feats, None, name="template_feats")
    tids = as_ids(template_ids, feats.shape[0], "template_ids")
    order = np.argsort(tids, kind="stable")
    dup = np.diff(tids[order]) == 0
    if dup.any():
        raise ValueError(f"template_ids must be distinct, got {int(tids[order][1:][dup][0])} "
                         f"twice")
    n_pairs = _numpy(pairs_p, "pairs_p").shape[0] if np.ndim(_numpy(pairs_p, "pairs_p")) else -1
    p = as_ids(pairs_p, n_pairs, "pairs_p")
    q = as_ids(pairs_q, len(p), "pairs_q")
    same = _as_labels(labels, len(p), "labels")
    rows = [_template_rows(name, side, tids, order) for name, side in
            (("pairs_p", p), ("pairs_q", q))]
    scores = _pair_scores(feats, *(torch.as_tensor(r, device=feats.device) for r in rows))
    return _tar_rows(scores.cpu().numpy().astype(np.float64), same, targets, rule, ci)


def _template_rows(name: str, side: np.ndarray, tids: np.ndarray, order: np.ndarray
                   ) -> np.ndarray:
    """The row of ``tids`` holding each template id of ``side`` (raises if one is unknown)."""
    at = np.minimum(np.searchsorted(tids[order], side), len(tids) - 1)
    if side.size and (tids[order][at] != side).any():
        raise ValueError(f"{name} must name templates in template_ids, got "
                         f"{int(side[tids[order][at] != side][0])}")
    return order[at]


def _pair_scores(feats: Tensor, rows_p: Tensor, rows_q: Tensor, chunk: int = 1 << 20
                 ) -> Tensor:
    """Cosines (Q,) of the listed pairs of (normalised) rows, ``chunk`` pairs at a time."""
    return torch.cat([(feats[rows_p[i:i + chunk]] * feats[rows_q[i:i + chunk]]).sum(1)
                      for i in range(0, len(rows_p), chunk)] or [torch.zeros(0)])


def _tar_rows(s: np.ndarray, same: np.ndarray, targets: list[float], rule: str, ci: float
              ) -> dict[float, dict]:
    """TAR at each target FAR from the pair scores ``s`` (float64) and labels ``same``."""
    pos, neg = np.sort(s[same]), np.sort(s[~same])[::-1]
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"labels must include positive and negative pairs, got {pos.size} "
                         f"and {neg.size}")
    if rule == "nearest":
        from sklearn.metrics import roc_curve  # imported here: it is slow to import

        fpr, tpr, thr = (v[::-1] for v in roc_curve(same, s))
    out = {}
    for f in targets:
        if rule == "strict":
            k = decimal_rank(f, neg.size)
            t = neg[k] if k < neg.size else -math.inf
            accepted = pos.size - int(np.searchsorted(pos, t, side="right"))
            achieved = float((neg > t).sum() / neg.size)
        else:
            i = int(np.argmin(np.abs(fpr - f)))
            t, achieved = float(thr[i]), float(fpr[i])
            accepted = pos.size - int(np.searchsorted(pos, t, side="left"))
        out[f] = {"tpr": accepted / pos.size, "fpr_achieved": achieved, "threshold": float(t),
                  "tpr_ci": wilson(accepted, pos.size, ci), "n_pos": int(pos.size),
                  "n_neg": int(neg.size)}
    return out
