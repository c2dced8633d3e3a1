"""Scores with identity resamples and paired comparisons of runs (arclab.experiments.ablations):
the values are the evaluators' own, the resamples are the test set's, and the verdicts are
compare_paired's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arclab.data.params import SynthConfig
from arclab.evaluation import tpr_at_fpr, verification_accuracy_10fold
from arclab.evaluation.paired import compare_paired, identity_resamples
from arclab.experiments import ablations
from arclab.models import get_model
from arclab.train.validation import build_validator


def _features(n_ids=12, per_id=5, dim=16, noise=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_ids, dim, generator=g)
    ids = np.repeat(np.arange(100, 100 + n_ids), per_id)  # labels need not start at 0
    feats = centres.repeat_interleave(per_id, 0) + noise * torch.randn(len(ids), dim,
                                                                       generator=g)
    return feats, ids


def test_score_features_values_are_the_evaluators_and_resamples_are_of_identities():
    feats, ids = _features()
    counts = identity_resamples(12, 50, seed=3)
    left = np.arange(0, 60, 2)[:30] % 60
    right = (left + np.tile([1, 7], 15)) % 60  # genuine (same identity block) and impostors
    same = ids[left] == ids[right]
    values, boots = ablations.score_features(feats, ids, fprs={"t": 0.05}, counts=counts,
                                             pairs=(left, right, same))
    assert values["t"] == pytest.approx(tpr_at_fpr(feats, ids, [0.05], progress=False)
                                        [0.05]["tpr"], abs=1e-12)
    acc = verification_accuracy_10fold(feats[left], feats[right], same)
    assert values["10-fold acc"] == pytest.approx(acc["mean"])  # 30 pairs: equal folds
    assert boots["t"].shape == boots["10-fold acc"].shape == (50,)
    # a resample that draws every identity once is the whole set again
    ones = np.ones((2, 12), np.int64)
    v1, b1 = ablations.score_features(feats, ids, fprs={"t": 0.05}, counts=ones,
                                      pairs=(left, right, same))
    assert b1["t"] == pytest.approx([values["t"]] * 2)
    assert b1["10-fold acc"] == pytest.approx([values["10-fold acc"]] * 2)
    # a resample of one identity only scores that identity's pairs (by left image)
    only = np.zeros((1, 12), np.int64)
    only[0, 4] = 12
    mine = ids[left] == 104
    assert ablations.score_features(feats, ids, fprs={}, counts=only, pairs=(
        left, right, same))[1]["10-fold acc"][0] == pytest.approx(acc["correct"][mine].mean())


def test_protocol_scores_match_the_training_validator(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path))
    validation = {"lfw": {"n_identities": 12, "pairs_per_fold": 2},
                  "agedb": {"n_identities": 12, "n_pairs": 20}}
    data = {"source": "synthfaces", "n_identities": 4, "n_per_identity": 2,
            "synth": {"seed": 0}}
    torch.manual_seed(0)
    model = get_model("mbf", embedding_size=32, input_size=32).eval()
    protocols = ablations.pair_protocols(validation, SynthConfig(seed=0), 32, n_boot=30)
    values, boots = ablations.protocol_scores(model, protocols)
    assert values == pytest.approx(build_validator(validation, data, 32)(model), abs=1e-12)
    for name, p in protocols.items():
        assert len(p["same"]) == len(p["left"]) == len(p["groups"]) == 20
        assert p["counts"].shape[0] == 30 and p["counts"].shape[1] == p["groups"].max() + 1
        assert boots[name].shape == (30,) and np.isfinite(boots[name]).all()
    assert not np.array_equal(protocols["lfw"]["counts"][:, :5],
                              protocols["agedb"]["counts"][:, :5])  # a resample set each


def _runs(means, seeds=(0, 1, 2), spread=0.004, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    shared = rng.normal(0, noise, 40)  # one test set: the same resample effects for every run
    return {name: {s: {"acc": m + rng.normal(0, spread), "boot": {
        "acc": m + rng.normal(0, spread) + shared}} for s in seeds}
        for name, m in means.items()}


def test_compare_runs_is_compare_paired_over_the_common_seeds():
    runs = _runs({"a": 0.80, "b": 0.70})
    del runs["b"][2]
    c = ablations.compare_runs(runs["a"], runs["b"], "acc", name_a="A", name_b="B")
    ref = compare_paired(*(100 * np.array([runs[n][s]["acc"] for s in (0, 1)]) for n in "ab"),
                         *(100 * np.array([runs[n][s]["boot"]["acc"] for s in (0, 1)])
                           for n in "ab"), name_a="A", name_b="B")
    assert c == ref and c.n_seeds == 2 and c.unit == "points"
    with pytest.raises(ValueError, match="share no seed"):
        ablations.compare_runs(runs["a"], {7: runs["b"][0]}, "acc", name_a="A", name_b="B")


def test_paired_orderings_keeps_reverses_or_leaves_unresolved():
    runs = _runs({"hi": 0.90, "mid": 0.70, "close": 0.7005, "lo": 0.75})
    paper = {"hi": 3.0, "mid": 2.0, "close": 1.0, "lo": 1.0, "absent": 5.0}
    rows = {r["pair"]: r for r in ablations.paired_orderings(paper, runs, "acc")}
    assert set(rows) == {"hi > mid", "hi > close", "hi > lo", "mid > close", "mid > lo"}
    assert rows["hi > mid"]["outcome"] == "kept"  # 20 points apart
    assert rows["mid > lo"]["outcome"] == "reversed"  # ours 5 points the other way
    assert rows["mid > close"]["outcome"] == "unresolved"  # 0.05 points apart
    for r in rows.values():
        hi, lo = r["pair"].split(" > ")
        assert r["our_gap"] == r["comparison"].mean and r["paper_gap"] == paper[hi] - paper[lo]
