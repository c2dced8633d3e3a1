"""The LFW verification protocol: 10 folds, threshold chosen on nine, accuracy on the tenth.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["verification_accuracy_10fold"]


def _as_2d(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double()
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (P, D) array, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return t


def verification_accuracy_10fold(emb1, emb2, issame, *, n_folds: int = 10,
                                 thresholds=None) -> dict:
    """Pair accuracy by the LFW rule on cosine similarity.

    The pairs are cut into ``n_folds`` contiguous folds (as insightface's ``KFold`` without
    shuffling); for each fold the threshold with the best accuracy on the other folds is picked
    from ``thresholds`` (default −1 … 1 in steps of 0.001, cosine) and applied to it. A pair
    counts as "same" when its cosine is strictly above the threshold.

    Shapes: emb1, emb2 (P, D); issame (P,) bool.

    Returns:
        {"mean", "std" (population std over folds, like insightface), "fold_accuracy" (list),
        "thresholds" (the chosen threshold per fold)}; accuracies in [0, 1].

    Raises:
        ValueError: shapes differ, non-finite embeddings, fewer pairs than folds.

    Example:
        >>> e = torch.eye(4)
        >>> r = verification_accuracy_10fold(e, e, [True] * 4, n_folds=2)
        >>> r["mean"]
        1.0
    """
    a, b = _as_2d(emb1, "emb1"), _as_2d(emb2, "emb2")
    same = np.asarray(issame, dtype=bool)
    if a.shape != b.shape or same.shape != (len(a),):
        raise ValueError(f"emb1, emb2 and issame must describe the same pairs, got "
                         f"{tuple(a.shape)}, {tuple(b.shape)} and {same.shape}")
    if not isinstance(n_folds, int) or not 2 <= n_folds <= len(a):
        raise ValueError(f"n_folds must be an integer in [2, {len(a)}], got {n_folds!r}")
    sims = torch.nn.functional.cosine_similarity(a, b, dim=1).numpy()
    grid = np.arange(-1.0, 1.0, 0.001) if thresholds is None else np.asarray(thresholds)
    correct = (sims[:, None] > grid[None, :]) == same[:, None]  # (P, T)
    folds = np.array_split(np.arange(len(a)), n_folds)
    accs, chosen = [], []
    for test in folds:
        train = np.setdiff1d(np.arange(len(a)), test)
        best = int(np.argmax(correct[train].mean(0)))
        chosen.append(float(grid[best]))
        accs.append(float(correct[test, best].mean()))
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "fold_accuracy": accs,
            "thresholds": chosen}
