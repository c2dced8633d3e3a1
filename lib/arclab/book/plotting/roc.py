"""Figures of verification results: accuracy against nuisance strength.

Taught in: notebooks/03_synthfaces.ipynb, notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from arclab.book.plotting.style import axes_or_new, class_colours

__all__ = ["difficulty_curves", "roc_log_fpr", "tpr_against_negatives"]

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


def roc_log_fpr(curves: dict[str, dict], *, marks: dict[str, float] | None = None,
                ax=None) -> Figure:
    """ROC curves on a log-FPR axis. ``curves`` maps a name to a dict with arrays ``fpr`` and
    ``tpr`` and the count ``n_neg``; a dotted vertical line marks each curve's floor 1/n_neg,
    below which no FPR can be measured. ``marks``: named FPRs drawn as grey lines."""
    fig, ax = axes_or_new(ax, figsize=(6.4, 3.8))
    for colour, (name, c) in zip(class_colours(len(curves)), curves.items()):
        ax.semilogx(c["fpr"], 100 * np.asarray(c["tpr"]), color=colour, lw=1.8, label=name)
        ax.axvline(1 / c["n_neg"], color=colour, lw=0.9, ls=":")
    for label, f in (marks or {}).items():
        ax.axvline(f, color="0.6", lw=0.8, ls="--")
        ax.text(f, 2, f" {label}", fontsize=7, color="0.4", rotation=90, va="bottom")
    ax.set(xlabel="false positive rate (log scale)", ylabel="true positive rate (%)",
           ylim=(0, 101), title="All-pairs ROC; dotted: 1 / #negatives, the smallest FPR")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def tpr_against_negatives(rows: list[dict], *, fpr: float, ax=None) -> Figure:
    """TPR at ``fpr`` (with its Wilson interval) against the number of negative pairs of
    nested subsets. ``rows``: [{"n_neg", "tpr", "tpr_ci": (lo, hi)}, ...]. The shaded region
    is n_neg < 1/fpr, where not even one negative may pass and the "TPR at fpr" is the TPR
    above the single highest negative score."""
    fig, ax = axes_or_new(ax, figsize=(6.0, 3.6))
    n = np.array([r["n_neg"] for r in rows], dtype=float)
    tpr = 100 * np.array([r["tpr"] for r in rows])
    lo, hi = (100 * np.array([r["tpr_ci"][k] for r in rows]) for k in (0, 1))
    ax.fill_between(n, lo, hi, color="C0", alpha=0.25, lw=0, label="95% Wilson interval")
    ax.semilogx(n, tpr, "o-", color="C0", lw=1.8, label=f"TPR at FPR = {fpr:g}")
    ax.axvspan(n.min() / 2, 1 / fpr, color="C3", alpha=0.08,
               label=f"#negatives < 1/FPR = {1 / fpr:.0e}")
    ax.set(xlabel="negative pairs in the set (log scale)", ylabel="TPR (%)",
           xlim=(n.min() / 2, n.max() * 2), title=f"TPR at FPR = {fpr:g} as the set grows")
    ax.legend(fontsize=7)
    return fig
