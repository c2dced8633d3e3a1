"""Figures of verification results: accuracy against nuisance strength.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["difficulty_curves"]

_UNITS = {"yaw_deg": "yaw spread (degrees)", "blur_px": "largest blur σ (px at 112)",
          "occlusion_rate": "share of occluded images", "noise": "largest noise σ (of 1)",
          "age_jitter": "age spread (0..1 scale)"}


def difficulty_curves(sweeps: dict[str, tuple[list[float], list[float]]], *,
                      chance: float = 0.5, ceiling: float = 0.995) -> Figure:
    """One panel per nuisance knob: accuracy (%) against the knob's level, with chance and
    the 99.5% "saturated" line. ``sweeps`` maps knob -> (levels, accuracies in [0, 1])."""
    n = len(sweeps)
    if n == 0:
        raise ValueError("sweeps must not be empty")
    fig, axes = plt.subplots(1, n, figsize=(2.9 * n, 3.0), sharey=True, squeeze=False)
    for ax, (knob, (levels, acc)) in zip(axes[0], sweeps.items()):
        ax.plot(levels, [100 * a for a in acc], "o-", color="C0", lw=1.8)
        ax.axhline(100 * chance, color="C3", lw=0.8, ls=":", label="chance")
        ax.axhline(100 * ceiling, color="C2", lw=0.8, ls="--", label="99.5% (saturated)")
        ax.set(xlabel=_UNITS.get(knob, knob), title=knob)
    axes[0, 0].set_ylabel("10-fold accuracy (%)")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Pixels + PCA baseline against each nuisance alone (all others off)", y=1.03)
    return fig
