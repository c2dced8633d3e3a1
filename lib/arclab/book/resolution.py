"""Headline comparisons of an ablation and whether the experiment resolves them.

An ablation notebook states, per headline comparison, the paired difference over seeds with
its interval (:func:`arclab.evaluation.paired.compare_paired`), the verdict of that interval,
and the resolution the question needs (a target half-width, e.g. 1.0 point). Where the
achieved half-width misses the target, the notebook says so and, from the measured variance
parts, which scale would meet it (:func:`arclab.evaluation.paired.scale_to_resolve`).

- :func:`headline` turns one :class:`~arclab.evaluation.paired.Comparison` into a plain record
  (the results JSON keeps it: mean, interval, half-width, verdict, target, met, scale);
- :func:`headline_table` shows the records beside the paper's column;
- :func:`resolution_summary` is the sentence under the table (generated, never typed);
- :func:`arclab.book.plotting.paired_intervals` draws them.

Units: whatever the comparison's unit is (percentage points, AP points); the target is in it.

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from arclab.book.claims import Prose, say
from arclab.evaluation.paired import Comparison, scale_to_resolve

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["headline", "headline_table", "resolution_summary"]


def _scale_text(comparison: Comparison, target: float) -> str:
    """What would reach ``target``: "5 seeds, 2× the test set", or why it cannot be said."""
    if comparison.half_width <= target:
        return "met"
    if comparison.test_only:
        return "needs 2+ seeds to tell"
    found = scale_to_resolve(comparison, target)
    if found is None:
        return "beyond 20 seeds, 8× the test set"
    seeds, k = found
    return f"{seeds} seeds" + (f", {k:g}× the test set" if k != 1 else "")


def headline(comparison: Comparison, *, target: float, paper: str = "-",
             label: str | None = None) -> dict:
    """One headline comparison as a record for the results JSON and :func:`headline_table`.

    Args:
        comparison: A − B over paired seeds.
        target: the half-width the question needs, in ``comparison.unit`` (> 0).
        paper: the paper's values or ordering for this comparison, as text.
        label: the row's name (default "A − B").

    Returns:
        {"comparison", "a", "b", "unit", "mean", "low", "high", "half_width", "verdict",
        "better" (A's or B's name, or None), "n_seeds", "target", "met" (half-width within the
        target), "to_resolve" ("met" or the scale that would meet it), "paper"}; floats are
        plain Python floats.

    Raises:
        ValueError: target not > 0.

    Example:
        >>> import numpy as np
        >>> from arclab.evaluation.paired import compare_paired
        >>> boot = np.zeros((3, 4)) + [[0.1, -0.1, 0.2, -0.2]]
        >>> c = compare_paired([80.0, 81, 82], [79.0, 79.5, 80], boot, boot, name_a="K=3",
        ...                    name_b="K=1")
        >>> r = headline(c, target=5.0)
        >>> r["better"], r["met"], r["to_resolve"]
        ('K=3', True, 'met')
    """
    if not (isinstance(target, (int, float)) and target > 0 and math.isfinite(target)):
        raise ValueError(f"target must be a finite half-width > 0, got {target!r}")
    c = comparison
    return {"comparison": label or f"{c.name_a} − {c.name_b}", "a": c.name_a, "b": c.name_b,
            "unit": c.unit, "mean": float(c.mean), "low": float(c.low), "high": float(c.high),
            "half_width": float(c.half_width), "verdict": c.verdict, "better": c.better,
            "n_seeds": int(c.n_seeds), "target": float(target),
            "met": bool(c.half_width <= target), "to_resolve": _scale_text(c, target),
            "paper": str(paper)}


def headline_table(records: Sequence[dict], digits: int = 2) -> pd.DataFrame:
    """The headline records as a table: paper, ours with its 95% interval, ±, verdict, target.

    Raises:
        ValueError: no records.
    """
    import pandas as pd

    if not records:
        raise ValueError("records must hold at least one headline comparison")
    rows = {}
    for r in records:
        rows[r["comparison"]] = {
            "paper": r["paper"],
            f"ours ({r['unit']})": f"{r['mean']:+.{digits}f} [{r['low']:+.{digits}f}, "
                                   f"{r['high']:+.{digits}f}]",
            "±": f"{r['half_width']:.{digits}f}", "verdict": r["verdict"],
            "target ±": f"{r['target']:g}", "scale to meet it": r["to_resolve"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def resolution_summary(records: Sequence[dict]) -> Prose:
    """One sentence: how many headline comparisons are resolved, how many meet the target
    resolution, and the widest interval with the scale that would bring it to target.

    Raises:
        ValueError: no records.

    Example:
        >>> r = [{"comparison": "a − b", "better": "a", "met": True, "half_width": 0.5,
        ...       "target": 1.0, "unit": "points", "to_resolve": "met", "n_seeds": 3}]
        >>> resolution_summary(r).endswith("1 of 1 reach the target resolution.")
        True
    """
    if not records:
        raise ValueError("records must hold at least one headline comparison")
    n = len(records)
    resolved = sum(r["better"] is not None for r in records)
    met = [r for r in records if r["met"]]
    text = say("{r} of {n} headline comparisons resolved (interval excludes 0); {m} of {n} "
               "reach the target resolution.", r=resolved, n=n, m=len(met))
    if len(met) == n:
        return text
    worst = max(records, key=lambda r: r["half_width"] / r["target"])
    return say("{t} The widest, *{c}*, has ±{h:.2f} {u} with {s} seeds against a target of "
               "±{g:g}; from its variance parts, the scale that would meet it: {scale}.",
               t=text, c=worst["comparison"], h=worst["half_width"], u=worst["unit"],
               s=worst["n_seeds"], g=worst["target"], scale=worst["to_resolve"])
