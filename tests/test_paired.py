"""Paired comparisons over seeds: coverage and power on simulated runs, the half-width
predictor, the identity-level resamples (pair-list and all-pairs TPR) and bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from arclab.evaluation import all_pair_scores, tpr_at_fpr
from arclab.evaluation.paired import (
    allpairs_tpr_boot,
    compare_paired,
    grouped_mean_boot,
    identity_resamples,
    predict_half_width,
    scale_to_resolve,
)

N_IDS, N_BOOT, N_SIMS = 200, 200, 1000
# (σ_u, σ_c, σ_e) in points at N_IDS test identities: seed effect, test-set effect shared by
# the seeds, seed-specific test-set effect
REGIMES = {"seed": (1.0, 0.2, 0.2), "test_shared": (0.1, 1.0, 0.3),
           "test_per_seed": (0.1, 0.2, 1.0), "mixed": (0.6, 0.5, 0.6)}


def simulate(rng, n_seeds, sds, delta, *, n_ids=N_IDS):
    """One paired experiment: per-identity scores of A and B for each seed, then the full
    test-set metric and its bootstrap over one identity resample shared by every run.

    The difference of identity i under seed s is δ + u_s + a_i + b_si, so the test-set mean
    has shared variance var(a)/n_ids = σ_c² (at N_IDS) and per-seed variance σ_e²."""
    su, sc, se = sds
    counts = identity_resamples(n_ids, N_BOOT, seed=rng)
    base = 80 + 5 * rng.standard_normal(n_ids) + 3 * rng.standard_normal((n_seeds, n_ids))
    diff = (delta + su * rng.standard_normal((n_seeds, 1))
            + sc * math.sqrt(N_IDS) * rng.standard_normal(n_ids)
            + se * math.sqrt(N_IDS) * rng.standard_normal((n_seeds, n_ids)))
    per_a, per_b = base + diff, base
    return (per_a.mean(1), per_b.mean(1), per_a @ counts.T / n_ids, per_b @ counts.T / n_ids)


def run_many(regime, n_seeds, delta, n=N_SIMS, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [compare_paired(*simulate(rng, n_seeds, REGIMES[regime], delta), **kw)
            for _ in range(n)]


@pytest.mark.parametrize("n_seeds", [3, 5])
@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_interval_covers_and_resolves_twice_its_width(regime, n_seeds):
    null = run_many(regime, n_seeds, 0.0, seed=1)
    coverage = np.mean([c.low <= 0 <= c.high for c in null])
    assert 0.93 <= coverage <= 0.97, coverage
    h = np.mean([c.half_width for c in null])
    power = run_many(regime, n_seeds, 2 * h, seed=2)
    assert np.mean([c.better == "A" for c in power]) >= 0.8
    for c in null + power:  # never "better" while the interval covers 0
        assert (c.better is None) == (c.low <= 0 <= c.high)
        assert ("better" in c.verdict) == (c.better is not None)


def test_b_better_and_lower_is_better_mirror():
    rng = np.random.default_rng(3)
    called = 0
    for _ in range(200):
        a, b, a_boot, b_boot = simulate(rng, 3, REGIMES["mixed"], 4.0)  # about 2 half-widths
        ab = compare_paired(a, b, a_boot, b_boot, name_a="ArcFace", name_b="NormFace")
        ba = compare_paired(b, a, b_boot, a_boot, name_a="NormFace", name_b="ArcFace")
        err = compare_paired(a, b, a_boot, b_boot, name_a="ArcFace", name_b="NormFace",
                             higher_is_better=False)  # the same numbers as an error rate
        assert ba.mean == pytest.approx(-ab.mean) and ba.half_width == pytest.approx(ab.half_width)
        assert ba.better == ab.better
        assert err.better == {"ArcFace": "NormFace", None: None}[ab.better]
        called += ab.better == "ArcFace"
    assert called > 160
    h = f"{err.half_width:.{err.decimals}f}"
    assert err.verdict in ("NormFace better", f"not resolved at this scale (±{h} points)")


def test_no_shared_test_noise_gives_the_t_interval():
    d = np.array([1.0, 3.0, 2.5, 0.5])
    boot = np.tile(d[:, None], (1, 50)) + np.linspace(0, 1, 50)  # same shift for all seeds
    c = compare_paired(d, np.zeros(4), boot, np.zeros((4, 50)), unit="AP")
    t_half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert c.var_test_shared == pytest.approx(1 / 12 * 50 / 49, rel=0.05)  # the shared shift
    plain = compare_paired(d, np.zeros(4), np.tile(d[:, None], (1, 5)), np.zeros((4, 5)))
    assert plain.half_width == pytest.approx(t_half, rel=1e-3)
    assert plain.df == pytest.approx(3, rel=0.01)
    assert c.half_width > plain.half_width and 3 < c.df < math.inf
    same = compare_paired(d, d, np.zeros((4, 5)), np.zeros((4, 5)))
    assert same.half_width == 0 and same.df == math.inf and same.better is None


def test_seeds_that_agree_by_chance_keep_the_test_set_interval():
    # accuracies in 2.5-point steps: two seeds with the same difference (s² = 0), while each
    # seed's test-set resamples vary independently (σ_c² clamps to 0): the interval must still
    # hold the test-set noise of the mean difference, z·√V_S, not shrink to nothing
    rng = np.random.default_rng(0)
    d = np.array([-2.5, -2.5])
    d_boot = d[:, None] + rng.normal(0, 3.0, (2, 400))
    c = compare_paired(d, np.zeros(2), d_boot, np.zeros((2, 400)))
    v_s = d_boot.mean(axis=0).var(ddof=1)
    assert c.half_width == pytest.approx(stats.norm.ppf(0.975) * math.sqrt(v_s), rel=1e-6)
    assert c.half_width > 3 and c.better is None  # without the floor: ±0, "B better"


def test_one_seed_gives_the_test_set_interval_and_says_so():
    rng = np.random.default_rng(4)
    a, b, a_boot, b_boot = simulate(rng, 1, REGIMES["mixed"], 5.0)
    c = compare_paired(a, b, a_boot, b_boot, name_a="ArcFace", name_b="NormFace")
    v1 = (a_boot - b_boot).var(ddof=1)
    assert c.test_only and math.isnan(c.var_seed)
    assert c.half_width == pytest.approx(stats.norm.ppf(0.975) * math.sqrt(v1), rel=1e-6)
    assert c.verdict.endswith("(test-set interval only: one seed)")
    assert c.sentence().startswith(f"ArcFace − NormFace: {c.mean:+.{c.decimals}f} points (95%")
    assert "1 paired seed)" in c.sentence()
    with pytest.raises(ValueError, match="comparison"):
        predict_half_width(c, 5)


def test_sentence_reads_as_the_notebook_prints_it():
    c = compare_paired([2.0, 1.2, 1.0, 1.4, 0.9], [0.5, 0.1, 0.0, 0.2, 0.0],
                       np.zeros((5, 3)), np.zeros((5, 3)), name_a="ArcFace", name_b="NormFace",
                       decimals=1)
    assert c.sentence() == (f"ArcFace − NormFace: +1.1 points (95% interval ±{c.half_width:.1f}, "
                            "5 paired seeds): ArcFace better")


@pytest.mark.parametrize("regime", ["mixed", "test_shared"])
def test_predicted_half_width_matches_a_larger_experiment(regime):
    # measured at 3 seeds and 200 identities, predicted for 10 seeds and 4x the identities
    base = run_many(regime, 3, 0.0, n=80, seed=5)
    predicted = np.mean([predict_half_width(c, 10, test_scale=4) for c in base])
    rng = np.random.default_rng(6)
    measured = np.mean([compare_paired(*simulate(rng, 10, REGIMES[regime], 0.0,
                                                 n_ids=4 * N_IDS)).half_width
                        for _ in range(200)])
    assert predicted == pytest.approx(measured, rel=0.15)
    c = base[0]
    assert predict_half_width(c, 20, 8) < predict_half_width(c, 10, 4) < predict_half_width(c, 3)
    target = predict_half_width(c, 10, 4)
    best = scale_to_resolve(c, target, seeds=(2, 5, 10, 20), test_scales=(1, 4))
    grid = [(n, k) for n in (2, 5, 10, 20) for k in (1, 4)]  # fewest seeds, then smallest k
    assert best <= (10, 4) and predict_half_width(c, *best) <= target
    assert all(predict_half_width(c, n, k) > target for n, k in grid[:grid.index(best)])
    assert scale_to_resolve(c, 1e-6) is None


def test_identity_resamples_are_reproducible_counts():
    counts = identity_resamples(50, 300, seed=7)
    assert counts.shape == (300, 50) and (counts.sum(1) == 50).all()
    assert np.array_equal(counts, identity_resamples(50, 300, seed=7))
    assert abs(counts.mean() - 1) < 1e-12 and 0.9 < counts.var() < 1.1  # multinomial
    assert not np.array_equal(counts, identity_resamples(50, 300, seed=8))


def test_grouped_mean_equals_the_copied_items():
    rng = np.random.default_rng(9)
    values, groups = rng.integers(0, 2, 40).astype(float), rng.integers(0, 6, 40)
    counts = identity_resamples(6, 20, seed=rng)
    got = grouped_mean_boot(values, groups, counts)
    for r, row in enumerate(counts):
        copied = np.concatenate([np.repeat(values[groups == g], row[g]) for g in range(6)])
        assert got[r] == pytest.approx(copied.mean())


def brute_force_tpr(scores, ids, fpr, count):
    """Materialise count_p copies of identity p's images; form every pair except those between
    two copies of one identity; apply the strict rule."""
    images = [(i, copy) for i in range(len(ids)) for copy in range(count[ids[i]])]
    pos, neg = [], []
    for x in range(len(images)):
        for y in range(x + 1, len(images)):
            (i, ci), (j, cj) = images[x], images[y]
            if i == j or (ids[i] == ids[j] and ci != cj):
                continue
            (pos if ids[i] == ids[j] else neg).append(scores[min(i, j), max(i, j)])
    neg = sorted(neg, reverse=True)
    k = math.floor(Fraction(repr(fpr)) * len(neg))
    threshold = -math.inf if k >= len(neg) else neg[k]
    return sum(s > threshold for s in pos) / len(pos)


def test_weighted_allpairs_tpr_equals_the_brute_force_expansion():
    rng = np.random.default_rng(10)
    ids = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])
    scores = np.round(rng.uniform(-1, 1, (10, 10)), 1)  # rounded: ties at the threshold
    counts = np.vstack([[1, 1, 1, 1], [2, 0, 1, 3], [0, 3, 1, 1], [3, 1, 0, 0]])
    for fpr in (0.01, 0.1, 0.25, 0.5, 1.0):
        got = allpairs_tpr_boot(scores, ids, fpr, counts)
        want = [brute_force_tpr(scores, ids, fpr, row) for row in counts]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_weighted_allpairs_tpr_with_unit_counts_is_tpr_at_fpr():
    gen = torch.Generator().manual_seed(11)
    ids = torch.arange(37).repeat_interleave(3)[:110]  # 36 ids of 3 images, one of 2
    x = torch.randn(110, 8, generator=gen) + 1.5 * torch.randn(40, 8, generator=gen)[ids]
    i, j, s = all_pair_scores(x)
    matrix = np.zeros((110, 110), np.float32)
    matrix[i.numpy(), j.numpy()] = s.numpy()
    fprs = [1e-3, 1e-2, 0.1, 0.5, 1.0]
    exact = tpr_at_fpr(x, ids, fprs, progress=False)
    for f in fprs:
        assert allpairs_tpr_boot((i, j, s), ids.numpy(), f)[0] == exact[f]["tpr"]
        ones = np.ones((2, 37), int)
        assert allpairs_tpr_boot(matrix, ids.numpy(), f, ones)[1] == exact[f]["tpr"]
    boot = allpairs_tpr_boot(matrix, ids.numpy(), 1e-2, identity_resamples(37, 50, seed=0))
    assert boot.shape == (50,) and 0 < boot.std() and abs(boot.mean() - exact[1e-2]["tpr"]) < 0.1


def test_bad_input_names_the_argument():
    a, boot = np.zeros(3), np.zeros((3, 10))
    for kwargs, name in [
        (dict(b=np.zeros(4)), "b must"), (dict(a_boot=np.zeros((4, 10))), "a_boot"),
        (dict(b_boot=np.zeros((3, 11))), "b_boot"), (dict(a=[0.0, np.nan, 0.0]), "a must"),
        (dict(b_boot=np.full((3, 10), np.inf)), "b_boot"), (dict(a=np.zeros((3, 1))), "a must"),
        (dict(a_boot=np.zeros((3, 1)), b_boot=np.zeros((3, 1))), "a_boot"),
        (dict(level=95), "level"),
    ]:
        args = dict(a=a, b=a, a_boot=boot, b_boot=boot) | kwargs
        level = args.pop("level", 0.95)
        with pytest.raises(ValueError, match=name):
            compare_paired(**args, level=level)
    c = compare_paired(a + [0, 1, 2], a, boot, boot)
    for call, name in [(lambda: predict_half_width(c, 1), "n_seeds"),
                       (lambda: predict_half_width(c, 3, 0), "test_scale"),
                       (lambda: scale_to_resolve(c, 0), "target"),
                       (lambda: identity_resamples(1, 5), "n_ids"),
                       (lambda: grouped_mean_boot([1.0, 0], [0, 3], np.ones((2, 3), int)),
                        "groups"),
                       (lambda: grouped_mean_boot([1.0, 0], [0, 1], np.ones((2, 3))), "counts"),
                       (lambda: grouped_mean_boot([1.0, np.nan], [0, 1], np.ones((2, 3), int)),
                        "values"),
                       (lambda: allpairs_tpr_boot(np.zeros((3, 3)), [0, 0, 1.5], 0.1), "ids"),
                       (lambda: allpairs_tpr_boot(np.zeros((3, 4)), [0, 0, 1], 0.1), "scores"),
                       (lambda: allpairs_tpr_boot((np.array([0, 0, 0]), np.array([1, 2, 2]),
                                                   np.zeros(3)), [0, 0, 1], 0.1), "scores"),
                       (lambda: allpairs_tpr_boot(np.zeros((3, 3)), [0, 0, 1], 0.0), "fpr"),
                       (lambda: allpairs_tpr_boot(np.zeros((3, 3)), [0, 0, 1], 0.1, [[1, 1, 1]]),
                        "counts")]:
        with pytest.raises(ValueError, match=name):
            call()
