"""Headline records, their table, sentence and figure (arclab.book.resolution,
arclab.book.plotting.paired_intervals): each value checked against the comparison it came from
and against scale_to_resolve's own answer."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from arclab.book import plotting
from arclab.book.resolution import headline, headline_table, resolution_summary
from arclab.evaluation.paired import compare_paired, identity_resamples, scale_to_resolve


def _comparison(shift: float, seed_sd: float, n_seeds: int = 3, n_ids: int = 40, seed: int = 0):
    """A − B from simulated per-identity scores: a seed effect of sd ``seed_sd``."""
    rng = np.random.default_rng(seed)
    counts = identity_resamples(n_ids, 200, seed=1)
    diff = shift + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, 2.0, (n_seeds, n_ids))
    return compare_paired(diff.mean(1), np.zeros(n_seeds), diff @ counts.T / n_ids,
                          np.zeros((n_seeds, 200)), name_a="A", name_b="B")


def test_headline_record_carries_the_comparison_and_the_scale_that_would_meet_the_target():
    c = _comparison(0.3, 1.5)
    r = headline(c, target=0.5, paper="99.5 vs 99.2")
    assert (r["mean"], r["low"], r["high"], r["half_width"]) == (c.mean, c.low, c.high,
                                                                 c.half_width)
    assert r["verdict"] == c.verdict and r["better"] == c.better and r["n_seeds"] == 3
    assert r["met"] is (c.half_width <= 0.5) and r["met"] is False
    found = scale_to_resolve(c, 0.5)
    expected = ("beyond 20 seeds, 8× the test set" if found is None else
                f"{found[0]} seeds" + (f", {found[1]:g}× the test set" if found[1] != 1 else ""))
    assert r["to_resolve"] == expected
    wide = headline(c, target=10 * c.half_width)
    assert wide["met"] is True and wide["to_resolve"] == "met"
    assert headline(c, target=c.half_width)["met"] is True  # the boundary counts as met
    with pytest.raises(ValueError, match="target"):
        headline(c, target=0.0)
    one = _comparison(0.3, 1.5, n_seeds=1)
    assert headline(one, target=1e-3)["to_resolve"] == "needs 2+ seeds to tell"


def test_table_and_summary_name_the_widest_comparison_relative_to_its_target():
    a, b = _comparison(5.0, 0.2, seed=2), _comparison(0.0, 3.0, seed=3)
    recs = [headline(a, target=100.0, label="big"), headline(b, target=0.1, label="small")]
    t = headline_table(recs)
    assert list(t.index) == ["big", "small"]
    assert t.loc["small", "±"] == f"{b.half_width:.2f}"
    assert t.loc["big", "ours (points)"] == f"{a.mean:+.2f} [{a.low:+.2f}, {a.high:+.2f}]"
    text = str(resolution_summary(recs))
    resolved = sum(c.better is not None for c in (a, b))
    assert text.startswith(f"{resolved} of 2 headline comparisons resolved")
    assert "1 of 2 reach the target" in text and "*small*" in text
    assert f"±{b.half_width:.2f} points" in text and recs[1]["to_resolve"] in text
    with pytest.raises(ValueError, match="records"):
        resolution_summary([])


def test_paired_intervals_draws_each_interval_from_low_to_high_at_its_mean():
    recs = [headline(_comparison(s, 1.0, seed=k), target=1.0, label=f"c{k}")
            for k, s in enumerate((4.0, 0.0, -4.0))]
    fig = plotting.paired_intervals(recs)
    ax = fig.axes[0]
    bars, points = [], []
    for ln in ax.lines:  # seaborn: one marker line per hue, one bar (with caps) per point
        x = np.asarray(ln.get_xdata(), float)
        if len(x) == 8 and np.isfinite(x).any():
            bars.append((round(np.nanmin(x), 6), round(np.nanmax(x), 6)))
        elif len(x) == len(recs):
            points += [round(v, 6) for v in x[np.isfinite(x)]]
    assert sorted(bars) == sorted((round(r["low"], 6), round(r["high"], 6)) for r in recs)
    assert sorted(points) == sorted(round(r["mean"], 6) for r in recs)
    with pytest.raises(ValueError, match="unit"):
        plotting.paired_intervals([recs[0], {**recs[1], "unit": "AP"}])


def test_convergence_curves_draw_each_run_smoothed_and_shade_the_last_fifth():
    rng = np.random.default_rng(0)
    runs = {"arcface": {s: {"losses": list(5 + rng.normal(0, 1, 100)),
                            "target_angles": list(np.linspace(90, 30, 100))} for s in (0, 1)},
            "triplet": {0: {"losses": list(rng.normal(0, 1, 100)), "target_angles": []}}}
    fig = plotting.convergence_curves(runs, smooth=10)
    ax_loss, ax_theta = fig.axes[:2]
    assert len(ax_loss.lines) == 3 and len(ax_theta.lines) == 2  # triplet: no θ_y
    want = np.convolve(runs["arcface"][1]["losses"], np.ones(10) / 10, mode="valid")
    assert np.allclose(ax_loss.lines[1].get_ydata(), want)
    span = ax_loss.patches[0]
    assert (span.get_x(), span.get_x() + span.get_width()) == (80.0, 100.0)
    with pytest.raises(ValueError, match="runs"):
        plotting.convergence_curves({})
