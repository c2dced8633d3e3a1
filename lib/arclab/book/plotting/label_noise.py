"""Figures of sub-center ArcFace: where clean and noisy samples sit, what a drop threshold
keeps and removes.

Taught in: notebooks/06_subcenter_arcface.ipynb
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["drop_tradeoff", "subcenter_angle_histograms"]

_NAMES = {0: "clean", 1: "closed-set flip", 2: "open-set outlier"}


def subcenter_angle_histograms(angle_dominant, angle_other, noise, *,
                               threshold_deg: float | None = 75.0,
                               bins: np.ndarray | None = None) -> Figure:
    """Two panels: each sample's angle (degrees) to its class's dominant sub-center (left) and
    to the nearest non-dominant one (right), as densities per noise code (0 clean, 1 closed-set
    flip, 2 open-set outlier); the drop threshold as a vertical line on the left."""
    noise = np.asarray(noise)
    bins = np.linspace(0, 180, 61) if bins is None else bins
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, values, title in ((axes[0], angle_dominant, "to the dominant sub-center"),
                              (axes[1], angle_other, "to the nearest non-dominant one")):
        values = np.asarray(values, dtype=float)
        for code in np.unique(noise):
            sel = values[noise == code]
            ax.hist(sel, bins=bins, density=True, histtype="step", lw=1.5,
                    color=f"C{int(code)}", label=f"{_NAMES.get(int(code), code)} ({len(sel)})")
        ax.set_xlabel("angle (degrees)")
        ax.set_title(title, fontsize=10)
    if threshold_deg is not None:
        axes[0].axvline(threshold_deg, color="k", ls=":", lw=1,
                        label=f"drop > {threshold_deg:g}°")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.suptitle("Training samples' angles to their own class's sub-centers", y=1.02)
    fig.tight_layout()
    return fig


def drop_tradeoff(rows: list[dict], *, mark_deg: float | None = 75.0) -> Figure:
    """From :func:`arclab.losses.subcenter.threshold_sweep` rows: the share of clean samples kept
    against the share of each noise type removed, as the threshold moves (left), and both
    against the threshold (right)."""
    t = np.array([r["threshold_deg"] for r in rows])
    clean = np.array([r["clean_kept"] for r in rows])
    types = [k for k in rows[0]["by_type"] if k != "clean"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for i, name in enumerate(types, start=1):
        removed = np.array([r["by_type"].get(name, {"recall": 0.0})["recall"] for r in rows])
        a.plot(removed, clean, "-o", ms=2, color=f"C{i}", label=name)
        b.plot(t, removed, color=f"C{i}", label=f"{name} removed")
    noise_all = np.array([r["recall"] for r in rows])
    a.plot(noise_all, clean, "--", color="k", lw=1, label="all noise")
    b.plot(t, clean, color="C0", label="clean kept")
    if mark_deg is not None:
        b.axvline(mark_deg, color="k", ls=":", lw=1)
        j = int(np.argmin(np.abs(t - mark_deg)))
        a.plot(noise_all[j], clean[j], "k*", ms=9, label=f"{t[j]:g}°")
    a.set_xlabel("share of noisy samples removed")
    a.set_ylabel("share of clean samples kept")
    a.set_title("What a threshold trades", fontsize=10)
    a.legend(fontsize=8)
    b.set_xlabel("drop threshold (degrees)")
    b.set_ylabel("share of samples")
    b.set_title("Kept and removed against the threshold", fontsize=10)
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig
