"""The 10-fold LFW rule against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arclab.evaluation.verification import verification_accuracy_10fold


def test_ten_fold_accuracy_by_hand():
    # 1-D embeddings as angles: cosine between (cos a, sin a) and (1, 0) is cos a
    angles = np.array([0.1, 0.2, 1.5, 1.6, 0.3, 1.4, 0.5, 1.0])
    issame = np.array([True, True, False, False, True, False, True, True])
    e1 = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1))
    e2 = torch.tensor([[1.0, 0.0]] * 8)
    grid = np.array([0.0, 0.5, 0.6, 0.95])
    r = verification_accuracy_10fold(e1, e2, issame, n_folds=2, thresholds=grid)
    # fold 1 = pairs 0-3 tested with the best threshold on pairs 4-7, and vice versa
    sims = np.cos(angles)
    def acc(idx, t):
        return np.mean((sims[idx] > t) == issame[idx])
    best1 = grid[np.argmax([acc(np.arange(4, 8), t) for t in grid])]
    best2 = grid[np.argmax([acc(np.arange(0, 4), t) for t in grid])]
    assert r["thresholds"] == [best1, best2]
    assert r["fold_accuracy"] == [acc(np.arange(4), best1), acc(np.arange(4, 8), best2)]
    assert r["mean"] == pytest.approx(np.mean(r["fold_accuracy"]))


def test_bad_inputs():
    e = torch.randn(20, 4)
    with pytest.raises(ValueError, match="same pairs"):
        verification_accuracy_10fold(e, e[:10], [True] * 20)
    with pytest.raises(ValueError, match="finite"):
        verification_accuracy_10fold(e * float("nan"), e, [True] * 20)
    with pytest.raises(ValueError, match="n_folds"):
        verification_accuracy_10fold(e[:5], e[:5], [True] * 5)
