"""tpr_resamples: the all-pairs TPR on identity resamples from genuine pairs and top impostors,
checked against the brute force that holds every pair (allpairs_tpr_boot on all_pair_scores)
and against the evaluator's strict TPR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arclab.evaluation import (
    all_pair_scores,
    allpairs_tpr_boot,
    identity_resamples,
    resampled_tpr,
    tpr_at_fpr,
)
from arclab.evaluation.resampled_tpr import tpr_resamples


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal arrays, NaN where the other has NaN."""
    return bool(np.array_equal(np.isnan(a), np.isnan(b)) and (a[~np.isnan(a)] ==
                                                              b[~np.isnan(b)]).all())


@pytest.mark.parametrize("trial", range(6))
def test_equals_the_brute_force_on_every_resample(trial):
    rng = np.random.default_rng(trial)
    n_ids = int(rng.integers(5, 30))
    ids = np.repeat(np.arange(n_ids), int(rng.integers(1, 6)))
    ids = rng.permutation(ids[: int(rng.integers(n_ids, len(ids) + 1))]) * 3 + 7  # any labels
    labels, who = np.unique(ids, return_inverse=True)
    f = torch.randn(n_ids, 6, generator=torch.Generator().manual_seed(trial))[who] \
        + torch.randn(len(ids), 6, generator=torch.Generator().manual_seed(99 + trial))
    if trial % 2:
        f = torch.round(f * 2) / 2  # many tied scores
    counts = identity_resamples(len(labels), 40, seed=trial)
    fprs = {"a": 1e-3, "b": 0.05, "c": 0.3, "d": 1.0}
    for block in (7, None):
        scores = all_pair_scores(f, block_size=block)
        values, boots = tpr_resamples(f, ids, fprs, counts, block_size=block)
        for name, fpr in fprs.items():
            assert same(boots[name], allpairs_tpr_boot(scores, ids, fpr, counts)), name
            assert same(np.array([values[name]]), allpairs_tpr_boot(scores, ids, fpr))
            if len(np.unique(ids)) < len(ids):  # the evaluator needs a genuine pair
                assert values[name] == tpr_at_fpr(f, ids, [fpr], block_size=block,
                                                  progress=False)[fpr]["tpr"]


def test_keeps_only_the_top_impostors_and_widens_when_a_resample_needs_more(monkeypatch):
    n_ids = 300
    ids = np.repeat(np.arange(n_ids), 4)
    g = torch.Generator().manual_seed(0)
    f = torch.randn(n_ids, 16, generator=g)[ids] + 1.2 * torch.randn(len(ids), 16, generator=g)
    f[ids == 1] = -f[ids == 0]  # identities 0 and 1 look opposite: their impostors score low
    # a resample that draws identity 0 many times and 1 once: its only impostor weight lies on
    # pairs far below the first pass's top impostors, so wider passes must follow
    counts = identity_resamples(n_ids, 30, seed=1)
    counts[0] = 0
    counts[0, :2] = [n_ids - 1, 1]
    fprs = {"1e-3": 1e-3, "1e-4": 1e-4}
    kept, scan = [], resampled_tpr._scan
    monkeypatch.setattr(resampled_tpr, "_scan", lambda x, who, block, keep: (
        kept.append(keep), scan(x, who, block, keep))[1])
    values, boots = tpr_resamples(f, ids, fprs, counts, block_size=128)
    assert len(kept) >= 2 and all(b == 4 * a for a, b in zip(kept, kept[1:]))
    scores = all_pair_scores(f, block_size=128)
    for name, fpr in fprs.items():
        assert same(boots[name], allpairs_tpr_boot(scores, ids, fpr, counts)), name
        assert values[name] == tpr_at_fpr(f, ids, [fpr], block_size=128,
                                          progress=False)[fpr]["tpr"]


@pytest.mark.parametrize("bad, match", [
    (dict(ids=np.zeros(6, int)), "at least two identities"),
    (dict(ids=np.arange(5)), "ids must have shape"),
    (dict(counts=np.ones((3, 2), int)), "counts must be"),
    (dict(counts=-np.ones((3, 3), int)), "counts must be"),
    (dict(fprs={"x": 0.0}), r"fprs\['x'\] must be in \(0, 1\]"),
    (dict(fprs={"x": True}), r"fprs\['x'\]"),
    (dict(features=torch.zeros(6, 2)), "nonzero rows"),
])
def test_bad_input_is_named(bad, match):
    args = dict(features=torch.randn(6, 3), ids=np.repeat(np.arange(3), 2),
                fprs={"x": 0.1}, counts=np.ones((3, 3), int)) | bad
    with pytest.raises(ValueError, match=match):
        tpr_resamples(args["features"], args["ids"], args["fprs"], args["counts"])
