"""arclab.book.claims: sentences from results and claims whose verdicts follow their rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arclab.book import claims
from arclab.evaluation.paired import compare_paired, identity_resamples


def comparison(shift: float, seeds: int = 5, ids: int = 40, noise: float = 1.0, seed: int = 0):
    """Per-identity accuracies of B and of A = B + shift, with seed noise, compared paired."""
    rng = np.random.default_rng(seed)
    base = rng.normal(80, 5, ids)
    acc_b = base + rng.normal(0, noise, (seeds, ids))
    acc_a = base + shift + rng.normal(0, noise, (seeds, ids))
    counts = identity_resamples(ids, 200, seed=1)
    boot = lambda acc: acc @ counts.T / counts.sum(1)  # noqa: E731
    return compare_paired(acc_a.mean(1), acc_b.mean(1), boot(acc_a), boot(acc_b),
                          name_a="ArcFace", name_b="NormFace")


def test_say_formats_and_displays_as_markdown():
    text = claims.say("{name} reached {tpr:.1f} % at {fpr:.0e}", name="ArcFace", tpr=83.456,
                      fpr=1e-3)
    assert text == "ArcFace reached 83.5 % at 1e-03"
    assert text._repr_markdown_() == str(text) and repr(text) == str(text)
    with pytest.raises(ValueError, match=r"\{tpr\}.*\['name'\]"):
        claims.say("{tpr}", name="x")
    with pytest.raises(ValueError, match="template"):
        claims.say(3.0)


def test_span_is_the_range_of_the_values_as_formatted():
    assert claims.span([0.935, 0.86, 0.9]) == "0.86–0.94"  # 0.935 rounds up: the stale 0.93
    assert claims.span([1.0, 1.001], ".1f", " %") == "1.0 %"
    with pytest.raises(ValueError, match="values"):
        claims.span([1.0, math.nan])
    with pytest.raises(ValueError, match="values"):
        claims.span([])


def test_check_verdicts_follow_the_boolean_and_refuse_non_booleans():
    ok = claims.check("c", np.bool_(True), paper="p", ours="o", rule="r")
    bad = claims.check("c", False, paper="p", ours="o", rule="r")
    assert (ok.verdict, ok.passed, bad.verdict, bad.passed) == (
        "reproduces", True, "does not reproduce", False)
    assert bad.as_dict()["verdict"] == "does not reproduce" and bad.as_dict()["passed"] is False
    with pytest.raises(ValueError, match="passed"):
        claims.check("c", 1, paper="p", ours="o", rule="r")
    with pytest.raises(ValueError, match="paper"):
        claims.check("c", True, paper=2.0, ours="o", rule="r")
    with pytest.raises(ValueError, match="outcome"):
        claims.Claim("c", "p", "o", "r", "", "better")


@pytest.mark.parametrize("shift, expect, outcome", [
    (3.0, "ArcFace", "reproduces"),     # A clearly better, the paper says A
    (3.0, "NormFace", "reversed"),      # A clearly better, the paper says B
    (-3.0, "ArcFace", "reversed"),
    (0.0, "ArcFace", "unresolved"),     # no difference: the interval holds 0
])
def test_from_comparison_takes_the_intervals_side(shift, expect, outcome):
    c = comparison(shift)
    claim = claims.from_comparison("ArcFace beats NormFace", c, expect=expect, paper="99.5 vs 98.6")
    assert claim.outcome == outcome
    # the verdict agrees with the comparison's own rule: the interval's side of zero
    inside = c.low <= 0 <= c.high
    assert (outcome == "unresolved") == inside
    if outcome == "unresolved":
        h = f"{c.half_width:.{c.decimals}f}"
        assert claim.verdict == f"not resolved at this scale (±{h} points)"
        assert c.verdict.startswith(claim.verdict)  # the same words as Comparison.sentence
    assert f"{c.mean:+.{c.decimals}f}" in claim.ours
    assert "one seed" not in claim.rule
    with pytest.raises(ValueError, match="expect"):
        claims.from_comparison("x", c, expect="CosFace", paper="")
    single = claims.from_comparison("x", comparison(shift, seeds=1), expect=expect, paper="")
    assert single.rule.endswith("(test-set interval only: one seed)")


def test_timing_ratio_matches_welch_on_log_times_and_covers():
    ref, new = [2.0, 2.2, 1.9, 2.1], [1.0, 1.1, 0.9]
    r, lo, hi = claims.timing_ratio(ref, new)
    a, b = np.log(ref), np.log(new)
    assert r == pytest.approx(math.exp(a.mean() - b.mean()))
    # independent: Welch's t via scipy on the log times gives the same interval
    from scipy import stats

    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((math.exp(ci.low), math.exp(ci.high)), rel=1e-9)
    # coverage of the true ratio 1.5 over simulated noisy timings: about 95%
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        t_ref = 1.5 * np.exp(rng.normal(0, 0.1, 5))
        t_new = np.exp(rng.normal(0, 0.1, 5))
        _, lo, hi = claims.timing_ratio(t_ref, t_new)
        hits += lo <= 1.5 <= hi
    assert 0.92 <= hits / 400 <= 0.98
    with pytest.raises(ValueError, match="times_new"):
        claims.timing_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="times_ref"):
        claims.timing_ratio([1.0, -2.0], [1.0, 1.0])


def test_from_ratio_needs_the_whole_interval_above_one():
    noisy_gain = claims.from_ratio("faster", [1.2, 0.8, 1.3, 0.7], [1.0, 0.9, 1.1, 0.8], paper="2x")
    assert noisy_gain.outcome == "unresolved"  # a mean gain above 1 is not enough
    clear = claims.from_ratio("faster", [2.0, 2.1, 1.9], [1.0, 1.02, 0.98], paper="2x")
    slower = claims.from_ratio("faster", [1.0, 1.02, 0.98], [2.0, 2.1, 1.9], paper="2x")
    assert (clear.outcome, slower.outcome) == ("reproduces", "reversed")


def test_table_and_summary_show_every_claim_with_its_verdict():
    cs = [claims.check("a", True, paper="1", ours="1", rule="x"),
          claims.check("b", False, paper="2", ours="0.3", rule="y > 0.9"),
          claims.from_comparison("c", comparison(0.0), expect="ArcFace", paper="3")]
    table = claims.claims_table(cs)
    assert list(table.index) == ["a", "b", "c"]
    assert list(table["verdict"]) == [c.verdict for c in cs]
    text = claims.claims_summary(cs)
    assert text.startswith("1 of 3 claims reproduces at this scale.")
    assert "Does not reproduce: *b* (0.3; rule: y > 0.9)." in text
    assert "Not resolved at this scale: *c*" in text
    assert claims.claims_summary(cs[:1]) == "1 of 1 claim reproduces at this scale."
    with pytest.raises(ValueError, match="claims"):
        claims.claims_table([])
    with pytest.raises(ValueError, match="non-Claim"):
        claims.claims_summary([{"claim": "a"}])
