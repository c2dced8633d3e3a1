"""Has a run converged? The rule the ablation notebooks check before they compare models.

A comparison between two barely-trained networks says nothing about the methods, so every
compared run must first pass :func:`convergence`: over the last fifth of training the training
loss and the mean target angle θ_y have flattened (the last tenth's mean within a tolerance of
the tenth before it), and validation, when there is some, has stopped rising.

Units: losses as logged (nats); angles in degrees; validation scores as fractions or percent,
whatever the validator reports (the tolerance is in the same unit).

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["convergence"]


def _flat(values: Sequence[float], tol: float, relative: bool) -> tuple[bool, float]:
    """(flat?, change) of the last tenth's mean against the tenth before it."""
    v = np.asarray(values, dtype=np.float64)
    n = max(1, len(v) // 10)
    last, before = float(v[-n:].mean()), float(v[-2 * n:-n].mean())
    change = (last - before) / max(abs(before), 1e-12) if relative else last - before
    return abs(change) <= tol, change


def convergence(losses: Sequence[float], target_angles: Sequence[float] | None = None,
                validation: Sequence[float] | None = None, *, loss_tol: float = 0.05,
                angle_tol_deg: float = 1.0, validation_tol: float = 0.01) -> dict:
    """Check the notebooks' convergence rule on one run's curves.

    Args:
        losses: (T,) training loss per step, T >= 20.
        target_angles: (T,) mean angle θ_y between each sample's feature and its class weight,
            in degrees, per step (None: not checked, e.g. for the triplet loss).
        validation: validation scores in order (higher is better; None or fewer than 3: not
            checked).
        loss_tol: the largest relative change of the mean loss, last tenth against the tenth
            before (0.05 = 5%).
        angle_tol_deg: the largest change of the mean θ_y between those tenths, in degrees.
        validation_tol: how much the last validation score may exceed the best before it and
            still count as "no longer rising" (same unit as the scores).

    Returns:
        {"converged": bool, "loss_change": relative change, "angle_change_deg": change or
        None, "validation_gain": last minus best earlier or None, "reasons": list of the rules
        that failed, each a sentence}.

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
        reasons.append(f"the loss still moves {loss_change:+.1%} between the last two tenths "
                       f"(allowed ±{loss_tol:.0%})")
    angle_change = None
    if target_angles is not None:
        ok, angle_change = _flat(target_angles, angle_tol_deg, relative=False)
        if not ok:
            reasons.append(f"the target angle still moves {angle_change:+.1f}° between the last "
                           f"two tenths (allowed ±{angle_tol_deg:g}°)")
    gain = None
    if validation is not None and len(validation) >= 3:
        gain = float(validation[-1]) - max(float(v) for v in validation[:-1])
        if gain > validation_tol:
            reasons.append(f"validation still rises ({gain:+.3g} over the best before, "
                           f"allowed {validation_tol:g})")
    return {"converged": not reasons, "loss_change": loss_change,
            "angle_change_deg": angle_change, "validation_gain": gain, "reasons": reasons}
