"""Exact TPR at a target FPR from a negative-score histogram and the contents of a few bins.

After the histogram pass the evaluator knows how many negatives fall in each bin; the exact
answer then needs the multiset of negative scores in a few bins only (the *cache*: bin ->
distinct values in descending order and their multiplicities). Each function here either
answers or names the bins it still needs, which the next pass collects.

Ranks are 1-based and descending: n_1 >= n_2 >= ... >= n_M are the negative scores.
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

__all__ = ["Counts", "decimal_rank", "float_neighbours", "missing", "nearest_step",
           "nearest_window", "strict_answer", "widen", "wilson"]

Cache = dict[int, tuple[np.ndarray, np.ndarray]]
Window = tuple[int, int]


class Counts(NamedTuple):
    """What the histogram pass learnt."""

    hist: np.ndarray      # (bins,) int64: negatives per bin
    above: np.ndarray     # (bins,) int64: negatives in bins above b
    m: int                # number of negative pairs
    pos: np.ndarray       # (P,) float64 positive scores, ascending
    pos_keys: np.ndarray  # (P,) their bins


def decimal_rank(f: float, m: int) -> int:
    """k = floor(f·m), exact for the decimal that ``repr(f)`` shows (so 1e-6 · 10**6 = 1)."""
    return math.floor(Fraction(repr(float(f))) * m)


def float_neighbours(f: float, m: int) -> tuple[int, int]:
    """(largest c with c/m <= f, smallest c with c/m >= f), in float64 as numpy divides."""
    k = min(m, math.floor(f * m))
    while k > 0 and k / m > f:
        k -= 1
    while k < m and (k + 1) / m <= f:
        k += 1
    return k, (k if k / m == f else k + 1)


def wilson(successes: int, n: int, level: float) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion at confidence ``level``."""
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact ends at 0 and n successes (rounding would put the bound a hair past p)
    lo = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    hi = 1.0 if successes == n else max(p, min(1.0, centre + half))
    return lo, hi


def _bin_of_rank(c: Counts, r: int) -> int:
    bins = len(c.hist)
    return bins - 1 - int(np.searchsorted(np.cumsum(c.hist[::-1]), r, side="left"))


def _accepted(c: Counts, t: float) -> int:
    """Positives strictly above t."""
    return len(c.pos) - int(np.searchsorted(c.pos, t, side="right"))


def strict_answer(f: float, c: Counts, cache: Cache) -> dict | set[int]:
    """Threshold t = n_{k+1}, k = floor(f·M); accepted = #(pos > t). Or the bin it needs."""
    k = decimal_rank(f, c.m)
    if k >= c.m:
        return {"accepted": len(c.pos), "fpr_achieved": 1.0, "threshold": -math.inf}
    b = _bin_of_rank(c, k + 1)
    if b not in cache:
        return {b}
    vals, mults = cache[b]
    ends = np.cumsum(mults)
    i = int(np.searchsorted(ends, k + 1 - c.above[b], side="left"))
    t = float(vals[i])
    greater = int(c.above[b] + ends[i] - mults[i])
    return {"accepted": _accepted(c, t), "fpr_achieved": greater / c.m, "threshold": t}


def widen(window: Window, pos_keys: np.ndarray, hist: np.ndarray, limit: float,
          need: int = 2) -> Window:
    """Grow a window to take in ``need`` positives beyond each edge, by at most ``limit``
    negatives per side: the nearest rule's ROC points sit next to positives (or ties)."""
    blo, bhi = window
    i = int(np.searchsorted(pos_keys, bhi, side="right")) + need - 1
    target = int(pos_keys[i]) if i < len(pos_keys) else len(hist) - 1
    reach = bhi + int(np.searchsorted(np.cumsum(hist[bhi + 1:]), limit, side="right"))
    bhi = max(bhi, min(target, reach))
    i = int(np.searchsorted(pos_keys, blo, side="left")) - need
    target = int(pos_keys[i]) if i >= 0 else 0
    reach = blo - int(np.searchsorted(np.cumsum(hist[:blo][::-1]), limit, side="right"))
    return min(blo, max(target, reach)), bhi


def nearest_window(f: float, c: Counts) -> Window:
    """First bins to read for the nearest rule: those holding ranks k_lo .. k_hi + 1, widened
    to a couple of positives on each side."""
    k_lo, k_hi = float_neighbours(f, c.m)
    window = _bin_of_rank(c, min(c.m, k_hi + 1)), _bin_of_rank(c, max(1, k_lo))
    limit = max(1 << 16, 4 * int(c.hist[window[0]:window[1] + 1].sum()))
    return widen(window, c.pos_keys, c.hist, limit)


def missing(c: Counts, cache: Cache, window: Window) -> set[int]:
    """Non-empty bins of the window not read yet."""
    return {b for b in range(window[0], window[1] + 1) if c.hist[b] > 0 and b not in cache}


def _extend(c: Counts, window: Window, up: bool, down: bool) -> Window:
    """Grow the window by at least as many negatives as it holds, in each asked direction."""
    blo, bhi = window
    grow = max(int(c.hist[blo:bhi + 1].sum()), 1)
    if up:
        bhi = min(len(c.hist) - 1, bhi + 1 + int(np.searchsorted(
            np.cumsum(c.hist[bhi + 1:]), grow, side="left")))
    if down:
        blo = max(0, blo - 1 - int(np.searchsorted(
            np.cumsum(c.hist[:blo][::-1]), grow, side="left")))
    return blo, bhi


def nearest_step(f: float, c: Counts, cache: Cache, window: Window) -> tuple[dict | None, Window]:
    """The ROC point nearest f, as sklearn ``roc_curve`` + insightface's flipped argmin pick it.

    sklearn keeps a point (a distinct score v) unless its step (negatives == v, positives == v)
    equals the next point's step (``drop_intermediate``); insightface flips the arrays before
    the argmin of |fpr - f|, so among equally near points the last one wins. The last point of
    the group with fps = c has TPR = #(pos > n_{c+1}) / P, and the group is present iff c is 0,
    M, or an end of a run of equal negatives that is not dropped. Returns (answer, window) or
    (None, a larger window) when the window does not settle the answer yet.
    """
    if missing(c, cache, window):
        return None, window
    blo, bhi = window
    parts = [cache[b] for b in range(bhi, blo - 1, -1) if c.hist[b] > 0]
    u = np.concatenate([p[0] for p in parts])
    mu = np.concatenate([p[1] for p in parts])
    a, m, n_pos = int(c.above[bhi]), c.m, len(c.pos)
    top, bottom = a == 0, a + int(mu.sum()) == m
    e = a + np.cumsum(mu)
    lt = np.searchsorted(c.pos, u, side="left")
    le = np.searchsorted(c.pos, u, side="right")
    realized = np.zeros(len(u), bool)
    realized[:-1] = (lt[:-1] > le[1:]) | ((le - lt)[:-1] != (le - lt)[1:]) | (mu[:-1] != mu[1:])
    if top and le[0] == n_pos and len(u) > 1:
        realized[0] = True  # the top score overall is always kept
    realized[-1] = bottom  # the run below the window is unknown unless there is none
    realized_a = top or (le[0] < n_pos and c.pos_keys[le[0]] <= bhi)
    k_lo, k_hi = float_neighbours(f, m)
    up = down = False
    c_lo = c_hi = None
    if k_lo == m:
        c_lo = m
    elif not bottom and k_lo >= e[-1]:
        down = True
    elif k_lo < a:
        up = True
    elif (realized & (e <= k_lo)).any():
        c_lo = int(e[realized & (e <= k_lo)].max())
    elif realized_a:
        c_lo = a
    else:
        up = True
    if k_hi == 0:
        c_hi = 0
    elif a >= k_hi:
        up = True
    elif (realized & (e >= k_hi)).any():
        c_hi = int(e[realized & (e >= k_hi)].min())
    else:
        down = True
    if up or down:
        return None, _extend(c, window, up, down)
    chosen = c_hi if abs(c_hi / m - f) <= abs(c_lo / m - f) else c_lo
    if chosen == m:
        n_next, n_c = -math.inf, float(u[-1])
    elif chosen == a:
        n_next, n_c = float(u[0]), math.inf
    else:
        i = int(np.searchsorted(e, chosen))
        n_next, n_c = float(u[i + 1]), float(u[i])
    j = int(np.searchsorted(c.pos, n_next, side="right"))
    group_min = min(n_c, float(c.pos[j])) if j < n_pos else n_c
    return {"accepted": n_pos - j, "fpr_achieved": chosen / m, "threshold": group_min}, window
