"""Has a run converged? The rule the ablation notebooks check before they compare models.

A comparison between two barely-trained networks says nothing about the methods, so every
compared run must first pass :func:`convergence`: over the last fifth of training the training
loss and the mean target angle θ_y no longer move (their drift across that fifth, fitted to
ten block means, is within a tolerance, or its 95% interval holds 0: per-step noise alone
never fails a run), and validation, when there is some, has stopped rising.

What the rule cannot see: a run whose learning rate has decayed flattens whatever its level,
so a schedule too short for the task passes. :func:`convergence_table` therefore also applies
the same flatness test to the stretch just before the last decay (``last_decay``): a run that
was still moving there flattened only because the rate dropped (schedule-limited). The
notebooks show the curves and the final θ_y beside the verdicts for the same reason.

Units: losses as logged (nats); angles in degrees; validation scores as fractions or percent,
whatever the validator reports (the tolerance is in the same unit).

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["convergence", "convergence_table", "schedule_limited"]

LOSS_TOL, ANGLE_TOL_DEG = 0.05, 1.0
"""The default tolerances of the rule: relative loss drift and θ_y drift (degrees) across the
last fifth that still count as flat."""


def _flat(values: Sequence[float], tol: float, relative: bool) -> tuple[bool, float]:
    """(flat?, drift) over the last fifth: the least-squares line through ten block means,
    drift = its slope × the fifth's length (relative to the fifth's mean level when
    ``relative``). Still moving only when |drift| > tol and its 95% t interval (8 df)
    excludes 0."""
    v = np.asarray(values, dtype=np.float64)
    tail = v[-max(10, len(v) // 5):]
    blocks = np.array_split(tail, 10)
    y = np.array([b.mean() for b in blocks])
    x = np.array([(k + 0.5) * len(tail) / 10 for k in range(10)])
    xc = x - x.mean()
    slope = float(xc @ (y - y.mean()) / (xc @ xc))
    resid = y - y.mean() - slope * xc
    se = math.sqrt(float(resid @ resid) / 8 / float(xc @ xc)) * len(tail)
    drift, level = slope * len(tail), float(tail.mean())
    if relative:
        drift, se = drift / max(abs(level), 1e-12), se / max(abs(level), 1e-12)
    moving = abs(drift) > tol and abs(drift) > stats.t.ppf(0.975, 8) * se
    return not moving, drift


def convergence(losses: Sequence[float], target_angles: Sequence[float] | None = None,
                validation: Sequence[float] | None = None, *, loss_tol: float = LOSS_TOL,
                angle_tol_deg: float = ANGLE_TOL_DEG, validation_tol: float = 0.01) -> dict:
    """Check the notebooks' convergence rule on one run's curves.

    Args:
        losses: (T,) training loss per step, T >= 20.
        target_angles: (T,) mean angle θ_y between each sample's feature and its class weight,
            in degrees, per step (None: not checked, e.g. for the triplet loss).
        validation: validation scores in order (higher is better; None or fewer than 3: not
            checked).
        loss_tol: the largest relative drift of the loss across the last fifth (0.05 = 5%)
            that still counts as flat; a larger one fails only if its interval excludes 0.
        angle_tol_deg: the same for the mean θ_y, in degrees.
        validation_tol: how much the last validation score may exceed the best before it and
            still count as "no longer rising" (same unit as the scores).

    Returns:
        {"converged": bool, "loss_change": relative drift across the last fifth,
        "angle_change_deg": drift in degrees or None, "validation_gain": last minus best
        earlier or None, "reasons": list of the rules that failed, each a sentence}.

    Raises:
        ValueError: fewer than 20 losses, a non-finite value, or curves of different lengths.

    Example:
        >>> flat = [2.0 - min(t, 80) / 50 for t in range(100)]
        >>> convergence(flat)["converged"], convergence(list(range(100, 0, -1)))["converged"]
        (True, False)
    """
    if len(losses) < 20:
        raise ValueError(f"losses must hold at least 20 steps, got {len(losses)}")
    curves = {"losses": losses, "target_angles": target_angles, "validation": validation}
    for name, values in curves.items():
        if values is not None and not all(math.isfinite(float(x)) for x in values):
            raise ValueError(f"{name} must be finite, got a NaN or inf")
    if target_angles is not None and len(target_angles) != len(losses):
        raise ValueError(f"target_angles must have one value per step ({len(losses)}), got "
                         f"{len(target_angles)}")
    reasons = []
    ok, loss_change = _flat(losses, loss_tol, relative=True)
    if not ok:
        reasons.append(f"the loss still moves {loss_change:+.1%} across the last fifth "
                       f"(allowed ±{loss_tol:.0%})")
    angle_change = None
    if target_angles is not None:
        ok, angle_change = _flat(target_angles, angle_tol_deg, relative=False)
        if not ok:
            reasons.append(f"the target angle still moves {angle_change:+.1f}° across the last "
                           f"fifth (allowed ±{angle_tol_deg:g}°)")
    gain = None
    if validation is not None and len(validation) >= 3:
        gain = float(validation[-1]) - max(float(v) for v in validation[:-1])
        if gain > validation_tol:
            reasons.append(f"validation still rises ({gain:+.3g} over the best before, "
                           f"allowed {validation_tol:g})")
    return {"converged": not reasons, "loss_change": loss_change,
            "angle_change_deg": angle_change, "validation_gain": gain, "reasons": reasons}


def _flat_before(run: dict, last_decay: float, tolerances: dict) -> bool | None:
    """The flatness test on the steps before the last learning-rate decay (θ_y where the run
    logs it, else the loss); None when fewer than 20 steps precede the decay."""
    cut = int(math.floor(last_decay * len(run["losses"])))
    if cut < 20:
        return None
    angles = run.get("target_angles") or None
    if angles is not None:
        return _flat(angles[:cut], tolerances.get("angle_tol_deg", ANGLE_TOL_DEG),
                     relative=False)[0]
    return _flat(run["losses"][:cut], tolerances.get("loss_tol", LOSS_TOL), relative=True)[0]


def convergence_table(runs: dict[str, dict], *, last_decay: float | None = None,
                      **tolerances) -> dict[str, dict]:
    """The rule on every run of an ablation: one row per (name, seed).

    Args:
        runs: {name: {seed: {"losses": (T,), "target_angles": (T,) or empty/None, ...}}}, as
            the ablation functions return them (other keys are ignored).
        last_decay: the fraction of the steps where the learning rate last drops (the last
            milestone, e.g. 0.75); adds the column "flat before the last decay": the same
            test on the steps before it (θ_y, or the loss without a class weight). False marks
            a run that flattened only because the rate dropped.
        tolerances: :func:`convergence`'s keyword arguments.

    Returns:
        {"name, seed s": {"converged", "loss drift (%)", "θ_y drift (°)", "final θ_y (°)",
        ["flat before the last decay",] "why not"}}; None where a run logs no target angle
        (e.g. the triplet loss) or too few steps precede the decay; a run of fewer than 20
        steps is not converged, "why not" says it was too short to judge.

    Raises:
        ValueError: a run without "losses", ``last_decay`` outside (0, 1], and
            :func:`convergence`'s.

    Example:
        >>> flat = {"losses": [1.0] * 50, "target_angles": [20.0] * 50}
        >>> convergence_table({"arcface": {0: flat}})["arcface, seed 0"]["converged"]
        True
    """
    if last_decay is not None and not 0 < last_decay <= 1:
        raise ValueError(f"last_decay must be a fraction of the steps in (0, 1], got "
                         f"{last_decay!r}")
    rows = {}
    for name, by_seed in runs.items():
        for seed, run in by_seed.items():
            if "losses" not in run:
                raise ValueError(f"runs[{name!r}][{seed!r}] must hold 'losses'")
            angles = run.get("target_angles") or None
            if len(run["losses"]) < 20:  # too short to judge: shown as not converged
                c = {"converged": False, "loss_change": None, "angle_change_deg": None,
                     "reasons": [f"{len(run['losses'])} steps: too few to judge (20 or more)"]}
            else:
                c = convergence(run["losses"], angles, **tolerances)
            rows[f"{name}, seed {seed}"] = {
                "converged": c["converged"],
                "loss drift (%)": None if c["loss_change"] is None else 100 * c["loss_change"],
                "θ_y drift (°)": c["angle_change_deg"],
                "final θ_y (°)": None if angles is None else float(np.mean(angles[-10:]))}
            if last_decay is not None:
                rows[f"{name}, seed {seed}"]["flat before the last decay"] = _flat_before(
                    run, last_decay, tolerances)
            rows[f"{name}, seed {seed}"]["why not"] = "; ".join(c["reasons"])
    return rows


def schedule_limited(rows: dict[str, dict]) -> str:
    """The sentence the notebooks print under a table of :func:`convergence_table` with
    ``last_decay``: how many of the runs long enough to judge were still moving just before the
    last learning-rate decay, and which; "" when no run could be judged.

    Example:
        >>> print(schedule_limited({"a, seed 0": {"flat before the last decay": False},
        ...                         "a, seed 1": {"flat before the last decay": True}})[:42])
        1 of the 2 runs long enough to judge was s
        >>> schedule_limited({"a, seed 0": {"flat before the last decay": False}}).endswith(
        ...     "(schedule-limited, not converged): a, seed 0.")
        True
    """
    judged = [k for k, r in rows.items() if r.get("flat before the last decay") is not None]
    if not judged:
        return ""
    limited = [k for k in judged if not rows[k]["flat before the last decay"]]
    return (f"{len(limited) or 'None'} of the {len(judged)} runs long enough to judge "
            f"{'was' if len(limited) < 2 else 'were'} still moving just before the last "
            "learning-rate decay (schedule-limited, not converged)"
            + (": " + ", ".join(limited) if limited else "") + ".")
