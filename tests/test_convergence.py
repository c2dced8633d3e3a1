"""The convergence rule the ablations check before comparing runs (arclab.train.convergence)."""

from __future__ import annotations

import numpy as np
import pytest

from arclab.train.convergence import convergence


def _curve(steps: int, tau: float, start: float, end: float, noise: float, seed: int = 0):
    t = np.arange(steps)
    rng = np.random.default_rng(seed)
    return list(end + (start - end) * np.exp(-t / tau) + noise * rng.standard_normal(steps))


def test_a_curve_that_has_flattened_passes_and_one_still_falling_fails():
    # exp(-t/tau): over the last fifth the curve moves by about (end-start)*exp(-0.8T/tau)
    done = convergence(_curve(800, 60, 12.0, 4.0, 0.2))
    assert done["converged"] and abs(done["loss_change"]) < 0.01
    falling = convergence(_curve(800, 600, 12.0, 4.0, 0.2))  # 8 * e^-1.2 * (1-e^-1/7.5) ~ 0.3
    assert not falling["converged"]
    assert falling["loss_change"] < -0.02 and "loss" in falling["reasons"][0]


def test_the_angle_rule_is_in_degrees():
    losses = [1.0] * 200
    moving = list(np.linspace(90, 30, 200))  # 60 degrees over 200 steps: 12 over the last 40
    out = convergence(losses, moving)
    assert not out["converged"] and out["angle_change_deg"] == pytest.approx(-12.0, rel=0.02)
    flat = list(np.r_[np.linspace(90, 17, 150), np.full(50, 17.0)])
    assert convergence(losses, flat, angle_tol_deg=1.0)["converged"]
    assert not convergence(losses, flat[:-40] + list(np.linspace(17, 14, 40)),
                           angle_tol_deg=1.0)["converged"]


def test_validation_that_still_rises_fails_and_a_plateau_passes():
    losses = [1.0] * 100
    assert not convergence(losses, validation=[0.6, 0.7, 0.8, 0.9])["converged"]
    assert convergence(losses, validation=[0.6, 0.9, 0.89, 0.905], validation_tol=0.01)[
        "converged"]
    assert convergence(losses, validation=[0.5, 0.9])["validation_gain"] is None  # too few


@pytest.mark.parametrize("kwargs, match", [
    ({"losses": [1.0] * 10}, "at least 20"),
    ({"losses": [1.0] * 30 + [float("nan")]}, "losses must be finite"),
    ({"losses": [1.0] * 30, "target_angles": [1.0] * 29}, "one value per step"),
    ({"losses": [1.0] * 30, "validation": [0.5, float("inf"), 0.6]}, "validation must be"),
])
def test_bad_curves_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        convergence(**kwargs)


def test_noise_alone_never_fails_a_run_but_a_trend_beyond_it_does():
    rng = np.random.default_rng(1)
    level = 4.0 + 0.6 * rng.standard_normal((200, 500))  # 15% per-step noise, no trend
    passed = [convergence(list(c))["converged"] for c in level]
    # the fixed tolerance of 5% is about 2.3 standard errors of the drift here, and moving
    # needs it beyond the t interval too: false alarms well under the nominal 5%
    assert np.mean(passed) >= 0.97
    trend = 4.0 * (1 - 0.3 * np.arange(500) / 500)  # -30% over the run: -6% over the last fifth
    caught = [not convergence(list(trend + 0.02 * rng.standard_normal(500)))["converged"]
              for _ in range(50)]
    assert all(caught)
    out = convergence(list(trend))
    slope = -4.0 * 0.3 / 500  # per step; drift over the last 100 steps, relative to their mean
    assert out["loss_change"] == pytest.approx(slope * 100 / np.mean(trend[-100:]), rel=1e-9)


def test_the_table_applies_the_rule_to_every_run_and_names_why():
    from arclab.train.convergence import convergence_table
    steps = 300
    done = {"losses": _curve(steps, 20, 8.0, 2.0, 0.01), "target_angles": [20.0] * steps}
    still = {"losses": [1.0] * steps, "target_angles": list(np.linspace(90, 40, steps))}
    rows = convergence_table({"a": {0: done, 1: still}, "triplet": {0: {
        "losses": [1.0] * steps, "target_angles": []}}})
    assert rows["a, seed 0"]["converged"] and rows["a, seed 0"]["final θ_y (°)"] == 20.0
    assert not rows["a, seed 1"]["converged"] and "target angle" in rows["a, seed 1"]["why not"]
    assert rows["a, seed 1"]["θ_y drift (°)"] == pytest.approx(-50 * 60 / (steps - 1), rel=1e-6)
    assert rows["triplet, seed 0"]["final θ_y (°)"] is None
    short = convergence_table({"a": {0: {"losses": [1.0] * 19, "target_angles": [5.0] * 19}}})
    assert not short["a, seed 0"]["converged"] and "too few" in short["a, seed 0"]["why not"]
    with pytest.raises(ValueError, match="losses"):
        convergence_table({"a": {0: {"target_angles": []}}})


def test_a_run_flattened_only_by_the_last_decay_is_marked_schedule_limited():
    from arclab.train.convergence import convergence_table
    steps = 200  # last decay at 0.75: step 150
    limited = list(np.linspace(90, 60, 150)) + [60.0] * 50  # falls until the decay, then flat
    early = list(np.linspace(90, 30, 60)) + [30.0] * 140  # flat long before the decay
    runs = {name: {0: {"losses": [1.0] * steps, "target_angles": angles}}
            for name, angles in (("limited", limited), ("early", early))}
    runs["triplet"] = {0: {"losses": list(np.linspace(3, 1, 150)) + [1.0] * 50}}
    rows = convergence_table(runs, last_decay=0.75)
    # both pass the rule on the last fifth; only one was flat before the rate dropped
    assert rows["limited, seed 0"]["converged"] and rows["early, seed 0"]["converged"]
    assert rows["limited, seed 0"]["flat before the last decay"] is False
    assert rows["early, seed 0"]["flat before the last decay"] is True
    # without a class weight the loss decides: it fell 2/3 across the stretch before the decay
    assert rows["triplet, seed 0"]["flat before the last decay"] is False
    assert "flat before the last decay" not in convergence_table(runs)["early, seed 0"]
    short = convergence_table({"a": {0: {"losses": [1.0] * 25}}}, last_decay=0.5)
    assert short["a, seed 0"]["flat before the last decay"] is None  # 12 steps before it


def test_the_schedule_sentence_counts_only_runs_long_enough_to_judge():
    from arclab.train.convergence import schedule_limited
    rows = {"a, seed 0": {"flat before the last decay": False},
            "a, seed 1": {"flat before the last decay": None},
            "b, seed 0": {"flat before the last decay": False},
            "b, seed 1": {"flat before the last decay": True}}
    assert schedule_limited(rows) == (
        "2 of the 3 runs long enough to judge were still moving just before the last "
        "learning-rate decay (schedule-limited, not converged): a, seed 0, b, seed 0.")
    assert schedule_limited({"b, seed 1": rows["b, seed 1"]}).startswith(
        "None of the 1 runs long enough to judge was still moving")
    assert schedule_limited({"a, seed 1": rows["a, seed 1"]}) == ""
    assert schedule_limited({"x": {"converged": True}}) == ""  # table made without last_decay
