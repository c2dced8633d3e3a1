"""Figures of paired comparisons: each headline difference with its 95% interval.

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["paired_intervals"]


def paired_intervals(records: Sequence[dict], *, title: str = "", ax=None) -> Figure:
    """A seaborn point plot of the headline differences A − B, bars from the interval's low to
    its high end, a line at 0 and the target half-width drawn as a band around each point.

    Args:
        records: :func:`arclab.book.resolution.headline` records (same unit).
        title: the figure's title (default: what is shown).

    Raises:
        ValueError: no records, or records in different units.
    """
    import pandas as pd
    import seaborn as sns

    if not records:
        raise ValueError("records must hold at least one headline comparison")
    units = {r["unit"] for r in records}
    if len(units) != 1:
        raise ValueError(f"records must share one unit, got {sorted(units)}")
    rows = [{"comparison": r["comparison"], "value": r[k], "resolved": r["better"] is not None}
            for r in records for k in ("low", "mean", "high")]
    data = pd.DataFrame(rows)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(records) + 1.4))
    fig = ax.figure
    # the median of (low, mean, high) is the mean; the 100% percentile interval is [low, high]
    sns.pointplot(data=data, x="value", y="comparison", hue="resolved", estimator="median",
                  errorbar=("pi", 100), linestyle="none", capsize=0.25, ax=ax,
                  hue_order=[True, False], palette={True: "C0", False: "C7"})
    for i, r in enumerate(records):
        ax.plot([r["mean"] - r["target"], r["mean"] + r["target"]], [i, i], color="C2",
                lw=6, alpha=0.25, solid_capstyle="butt", zorder=0)
    ax.axvline(0.0, color="C3", lw=0.9, ls="--")
    ax.set(xlabel=f"A − B ({units.pop()}), 95% interval; green: ± target", ylabel="",
           title=title or "Paired differences over seeds")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles, ["resolved", "not resolved"][:len(handles)], fontsize=8,
              loc="best")
    return fig
