"""Scoring a challenge submission as the organisers do (read the participant's feature file,
check it against the private test list, score every pair with the private labels), and the
tables of TPR at FPR the challenge paper reports.

Taught in: notebooks/09_lightweight_challenge.ipynb
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from torch import Tensor

from arclab.evaluation.allpairs import tpr_at_fpr
from arclab.evaluation.fileformat import read_features

__all__ = ["ci_above", "score_submission", "tpr_rows"]


def score_submission(path: str | os.PathLike, labels: np.ndarray | Tensor,
                     fprs: Sequence[float], *, max_dim: int = 512, mask=None,
                     rule: str = "strict", progress: bool = False) -> dict[float, dict]:
    """TPR at each FPR of a submitted feature file over all pairs of the test set.

    The file is the challenge's binary matrix (:func:`~arclab.evaluation.read_features`, which
    refuses a malformed or non-finite file), one row per item of the organisers' list in its
    order (an image for the image track, a video for the video track); ``labels`` are the
    private identities of those rows. Both tracks cap the feature dimension at 512.

    Args:
        path: the submitted file.
        labels: (N,) integer identity of each listed item, in list order.
        fprs: target FPRs, each in (0, 1].
        max_dim: the largest feature dimension accepted (the rules' 512).
        mask, rule, progress: as in :func:`~arclab.evaluation.tpr_at_fpr`.

    Returns:
        :func:`~arclab.evaluation.tpr_at_fpr`'s {fpr: {"tpr", "tpr_ci", "fpr_achieved",
        "threshold", "n_pos", "n_neg", ...}}.

    Raises:
        ValueError: labels not 1-D; the file's rows differ from len(labels), or its columns
            exceed max_dim; a file :func:`~arclab.evaluation.read_features` refuses; fprs,
            mask or rule as :func:`~arclab.evaluation.tpr_at_fpr` refuses them.
        OSError: the file cannot be opened (as :func:`~arclab.evaluation.read_features`).
    """
    feats = read_features(path)
    labels = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (one identity per listed item), got shape "
                         f"{labels.shape}")
    if feats.shape[0] != len(labels):
        raise ValueError(f"path {str(path)!r} has {feats.shape[0]} rows; the test list has "
                         f"{len(labels)} items, one row each, in list order")
    if feats.shape[1] > max_dim:
        raise ValueError(f"path {str(path)!r} has {feats.shape[1]}-d features; the rules allow "
                         f"at most {max_dim}")
    return tpr_at_fpr(feats, labels, list(fprs), mask=mask, rule=rule, progress=progress)


def ci_above(a: dict, b: dict) -> bool:
    """Whether result ``a`` is above ``b`` beyond their confidence intervals: the lower end
    of a's TPR interval exceeds the upper end of b's (entries of
    :func:`~arclab.evaluation.tpr_at_fpr`'s answer).

    Example:
        >>> ci_above({"tpr_ci": (0.6, 0.8)}, {"tpr_ci": (0.3, 0.5)})
        True
        >>> ci_above({"tpr_ci": (0.6, 0.8)}, {"tpr_ci": (0.3, 0.65)})
        False
    """
    return float(a["tpr_ci"][0]) > float(b["tpr_ci"][1])


def tpr_rows(results: dict[str, dict], fprs: Sequence[float],
             reference: dict[str, dict[float, float]] | None = None) -> dict[str, dict]:
    """Rows for a TPR-at-FPR table in the shape of the challenge paper's Tables 6–9: for each
    named result (:func:`~arclab.evaluation.tpr_at_fpr`'s answer) its TPR per FPR and a row
    with its confidence interval as text, then each reference row (``{fpr: tpr}``, NaN where
    it has no value). Columns are the FPRs written ``1e-04``.

    Example:
        >>> r = {1e-4: {"tpr": 0.5, "tpr_ci": (0.4, 0.6)}}
        >>> for name, row in tpr_rows({"ours": r}, [1e-4], {"paper": {1e-4: 0.98}}).items():
        ...     print(repr(name), row)
        'ours' {'1e-04': 0.5}
        '  95% CI of ours' {'1e-04': '0.400-0.600'}
        'paper' {'1e-04': 0.98}
    """
    rows: dict[str, dict] = {}
    for name, res in results.items():
        rows[name] = {f"{f:.0e}": res[f]["tpr"] for f in fprs}
        rows[f"  95% CI of {name}"] = {f"{f:.0e}": "{:.3f}-{:.3f}".format(*res[f]["tpr_ci"])
                                      for f in fprs}
    for name, row in (reference or {}).items():
        rows[name] = {f"{f:.0e}": row.get(f, float("nan")) for f in fprs}
    return rows
