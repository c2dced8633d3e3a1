"""Exact TPR at FPR over all N(N-1)/2 pairs of a feature set, in O(N·D + bins + tile²) memory.

The lightweight-recognition challenge scores every pair of its 1.8M test images (seed 001,
Table 2: 11,039,533 positive and 330,145,575,217 negative pairs) and reports TPR at FPR = 1e-8.
No score vector of that size fits in memory, so :func:`tpr_at_fpr` works tile by tile:

1. pass 1 scores the upper triangle i < j in tiles (float32 matmul), counts every negative
   score in a fine histogram (:data:`DEFAULT_BINS` bins over [-1, 1]), keeps the positive
   scores, which are few (sum over ids of C(n_id, 2)), and notes each tile's highest negative;
2. the histogram says which bin holds the threshold; a second pass over the tiles that reach
   that bin, with the same float32 ops, collects the negatives in those few bins and selects
   exactly.

To save the second pass, pass 1 already collects the bins that a small row sample predicts;
the second pass runs only for the bins the prediction missed. Either way the answer equals a
brute-force sort of the same float32 scores (see :func:`all_pair_scores`).

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from arclab.evaluation._passes import (
    SPECULATION_BUDGET,
    counts_of,
    scan,
    speculate,
    tiles_reaching,
    to_cache,
)
from arclab.evaluation._select import missing, nearest_step, nearest_window, strict_answer, wilson
from arclab.evaluation._tiles import DEFAULT_BINS, PairMask, prepare

__all__ = ["DEFAULT_BINS", "check_fprs", "roc_curve_allpairs", "tpr_at_fpr"]

Features = Tensor | np.ndarray
Mask = np.ndarray | Tensor | PairMask | None


def check_fprs(fprs: float | Sequence[float] | np.ndarray | Tensor) -> list[float]:
    """The target rates as a list of floats, each checked to be in (0, 1].

    Raises:
        ValueError: ``fprs`` is not a number or a 1-D list of numbers (booleans are not), or
            one is outside (0, 1].

    Example:
        >>> check_fprs(np.float32(0.5)), check_fprs([1e-6, 1])
        ([0.5], [1e-06, 1.0])
    """
    if isinstance(fprs, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in fprs):
        raise ValueError(f"fprs must be a number or a 1-D list of numbers, got {fprs!r}")
    values = np.atleast_1d(np.asarray(fprs.cpu() if isinstance(fprs, Tensor) else fprs))
    if values.ndim != 1 or values.size == 0 or not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"fprs must be a number or a 1-D list of numbers, got {fprs!r}")
    bad = values[~((values > 0) & (values <= 1))]
    if bad.size:
        raise ValueError(f"fprs must be in (0, 1], got {float(bad[0])!r}")
    return [float(v) for v in values]


def _evaluate(features: Features, ids: Tensor | np.ndarray, fprs, *, block_size: int | None,
              device: str | torch.device | None, mask: Mask, rule: str, ci: float,
              progress: bool, bins: int = DEFAULT_BINS, speculative: bool = True
              ) -> tuple[dict[float, dict], dict]:
    """:func:`tpr_at_fpr` plus a record of the work: passes, bins collected on speculation."""
    if rule not in ("strict", "nearest"):
        raise ValueError(f"rule must be 'strict' or 'nearest', got {rule!r}")
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0 < ci < 1:
        raise ValueError(f"ci must be a confidence level in (0, 1), got {ci!r}")
    ci = float(ci)
    targets = list(dict.fromkeys(check_fprs(fprs)))
    prob = prepare(features, ids, block_size=block_size, device=device, mask=mask)
    if prob.pos_flat.numel() == 0:
        raise ValueError("ids must repeat at least one id (no positive pair), got all distinct")
    lut = speculate(prob, targets, rule, bins) if speculative else None
    first = scan(prob, bins, lut, histogram=True, progress=progress, desc="pairs: pass 1",
                 cap=2 * SPECULATION_BUDGET)
    c = counts_of(first)
    if len(c.pos) == 0:
        raise ValueError("mask must keep at least one positive pair, got none")
    if c.m == 0:
        raise ValueError("ids must leave at least one negative pair (two different ids), "
                         "got none")
    cache = to_cache(first["store"], lut, c, prob.x.device) if first["store"] is not None else {}
    info = {"passes": 1, "speculated_bins": len(cache), "collected_bins": 0,
            "tiles": len(prob.tiles), "tiles_reread": 0}
    answers: dict[float, dict] = {}
    windows: dict[float, tuple[int, int]] = {}
    while len(answers) < len(targets):
        need: set[int] = set()
        for f in targets:
            if f in answers:
                continue
            if rule == "strict":
                got = strict_answer(f, c, cache)
            else:
                got, windows[f] = nearest_step(f, c, cache, windows.get(f) or nearest_window(f, c))
                got = got if got is not None else missing(c, cache, windows[f])
            if isinstance(got, dict):
                answers[f] = got
            else:
                need |= got
        if need:
            wanted = np.array(sorted(need), dtype=np.int64)
            visit = tiles_reaching(first["top_key"], wanted)
            more = scan(prob, bins, wanted, histogram=False, progress=progress,
                        desc=f"pairs: pass {info['passes'] + 1}", visit=visit)
            cache.update(to_cache(more["store"], wanted, c, prob.x.device))
            info["passes"] += 1
            info["collected_bins"] += len(wanted)
            info["tiles_reread"] += len(visit)
    n_pos = len(c.pos)
    results = {}
    for f in check_fprs(fprs):
        a = answers[f]
        results[f] = {"tpr": a["accepted"] / n_pos, "fpr_achieved": a["fpr_achieved"],
                      "threshold": a["threshold"], "tpr_ci": wilson(a["accepted"], n_pos, ci),
                      "n_pos": n_pos, "n_neg": c.m}
    return results, info


def tpr_at_fpr(features: Features, ids: Tensor | np.ndarray,
               fprs: float | Sequence[float] | np.ndarray, *, block_size: int | None = None,
               device: str | torch.device | None = None, mask: Mask = None,
               rule: Literal["strict", "nearest"] = "strict", ci: float = 0.95,
               progress: bool = True) -> dict[float, dict]:
    """Exact TPR at each target FPR over all unordered pairs i < j, scored by cosine.

    A pair is positive when its two ids match. ``rule="strict"``: with k = floor(f · n_neg)
    (exact for the decimal f shows, so 1e-6 of 10**6 negatives is k = 1), the threshold t is
    the (k+1)-th largest negative score and TPR = #(positive scores > t) / n_pos, so the
    achieved FPR #(negatives > t) / n_neg is at most f; k >= n_neg gives t = -inf and TPR 1.
    ``rule="nearest"`` reports what insightface's IJB evaluation prints: sklearn's ``roc_curve``
    (score >= threshold, ``drop_intermediate=True``) over all pairs, then the TPR of the ROC
    point whose FPR is nearest f, taking the argmin of |fpr - f| over the flipped arrays as
    insightface does (so among equally near points, the one with the larger FPR and TPR).

    Work: two passes over the tiles at most (one when a row sample predicted the threshold
    bins; the nearest rule may need a few more on long straight stretches of the ROC), each a
    float32 matmul of the upper triangle. Memory: O(N·D + bins + tile² + n_pos) plus the
    distinct scores of the bins read. The answer equals a sort of the scores that
    :func:`all_pair_scores` gives for the same ``block_size``.

    Args:
        features: (N, D) real array or tensor, N >= 2; rows are L2-normalised here.
        ids: (N,) integer identity labels.
        fprs: one target FPR or a sequence of them, each in (0, 1].
        block_size: tile side (rows and columns); default 1024 on the CPU, 4096 elsewhere.
        device: where to compute; default the device of ``features`` (CPU for arrays).
        mask: pairs to leave out of both counts. ``None``; or an (N,) integer array of group
            ids, excluding every pair within a group (same image, template or video, as the
            challenge's mask matrix does); or a callable ``mask(i, j)`` given global row indices
            ``i`` of shape (m, 1) and ``j`` of shape (1, n) on the device, returning a bool
            tensor broadcastable to (m, n) that is True for pairs to exclude. It is called once
            per tile (and on a row sample with i <= j), so it must depend on (i, j) only.
        rule: ``"strict"`` or ``"nearest"``, as above.
        ci: confidence level of the Wilson score interval on the TPR.
        progress: show a tqdm progress bar over the tiles (it disappears when done).

    Returns:
        ``{f: {"tpr", "fpr_achieved", "threshold", "tpr_ci": (lo, hi), "n_pos", "n_neg"}}`` in
        the order of ``fprs``. ``threshold``: strict, the score a pair must exceed; nearest,
        sklearn's threshold (score >= threshold), ``inf`` for the point (0, 0).

    Shapes: features (N, D), ids (N,); n_pos + n_neg <= N(N-1)/2 (equal without a mask).
    Units: scores and thresholds are cosines; rates are fractions in [0, 1].

    Raises:
        ValueError: features not (N, D) with N >= 2, NaN/inf or zero rows; ids not (N,)
            integers; fprs outside (0, 1]; no positive or no negative pair; a bad rule, ci,
            block_size or mask (a callable that returns anything but a bool tensor
            broadcastable to (m, n) included). Numbers may be numpy scalars, not booleans.
        RuntimeError: two passes disagree about the pairs of a bin: a mask callable that
            depends on more than (i, j) (or a device whose matmul is not deterministic).

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
        >>> r = tpr_at_fpr(x, [0, 0, 1, 1], [0.1, 0.25], progress=False)  # negatives .96 .6 .6 0
        >>> [(f, v["tpr"], v["fpr_achieved"], round(v["threshold"], 2)) for f, v in r.items()]
        [(0.1, 0.0, 0.0, 0.96), (0.25, 1.0, 0.25, 0.6)]

    Taught in: notebooks/08_trillion_pairs.ipynb
    """
    return _evaluate(features, ids, fprs, block_size=block_size, device=device, mask=mask,
                     rule=rule, ci=ci, progress=progress)[0]


def roc_curve_allpairs(features: Features, ids: Tensor | np.ndarray, *, n_points: int = 200,
                       fpr_min: float | None = None, block_size: int | None = None,
                       device: str | torch.device | None = None, mask: Mask = None,
                       progress: bool = True) -> dict:
    """The all-pairs ROC at log-spaced FPRs (strict rule), for plotting.

    Calls :func:`tpr_at_fpr` once on ``np.logspace(log10(fpr_min), 0, n_points)``.

    Args:
        features, ids, block_size, device, mask, progress: as for :func:`tpr_at_fpr`.
        n_points: number of FPRs, at least 2.
        fpr_min: smallest FPR; default 1 / (N(N-1)/2), the FPR of a single pair.

    Returns:
        ``{"fpr", "tpr", "fpr_achieved", "threshold"}`` (arrays of n_points), ``"n_pos"``,
        ``"n_neg"``.

    Shapes: features (N, D), ids (N,) -> arrays (n_points,).
    Units: rates are fractions, thresholds cosines.

    Raises:
        ValueError: features not (N, D) with N >= 2 (checked first: the default fpr_min
            needs N); n_points not an integer >= 2, fpr_min not a number in (0, 1) (numpy
            scalars count, booleans do not), and every case of :func:`tpr_at_fpr`.
        RuntimeError: as for :func:`tpr_at_fpr`.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
        >>> roc = roc_curve_allpairs(x, [0, 0, 1, 1], n_points=3, progress=False)
        >>> roc["fpr"].round(3).tolist(), roc["tpr"].tolist(), roc["n_neg"]
        ([0.167, 0.408, 1.0], [0.0, 1.0, 1.0], 4)

    Taught in: notebooks/08_trillion_pairs.ipynb
    """
    if isinstance(n_points, bool) or not isinstance(n_points, numbers.Integral) or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points!r}")
    shape = tuple(features.shape if hasattr(features, "shape") else np.shape(features))
    if len(shape) != 2 or shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2 (one pair at least), "
                         f"got shape {shape}")
    n = shape[0]
    if fpr_min is None:  # N = 2 has one pair, never a positive and a negative: tpr_at_fpr says so
        fpr_min = min(2.0 / (n * (n - 1)), 0.5)
    if isinstance(fpr_min, bool) or not isinstance(fpr_min, numbers.Real) \
            or not 0 < fpr_min < 1:
        raise ValueError(f"fpr_min must be a number in (0, 1), got {fpr_min!r}")
    grid = np.logspace(math.log10(fpr_min), 0.0, int(n_points))
    grid[-1] = 1.0
    res = tpr_at_fpr(features, ids, grid, block_size=block_size, device=device, mask=mask,
                     progress=progress)
    rows = [res[float(f)] for f in grid]
    return {"fpr": grid, "tpr": np.array([r["tpr"] for r in rows]),
            "fpr_achieved": np.array([r["fpr_achieved"] for r in rows]),
            "threshold": np.array([r["threshold"] for r in rows]),
            "n_pos": rows[0]["n_pos"], "n_neg": rows[0]["n_neg"]}
