"""Paired comparison of two methods over seeds, with an interval for seed and test-set noise.

Runs of A and B with one seed share data, order and initialisation; all are scored on one
test set. The difference of seed s is d_s = δ + u_s + c(T) + e_s(T): a seed effect (σ_u²), a
test-set effect shared by all seeds (σ_c²) and a seed-specific test-set effect (σ_e²), so
Var(d̄) = σ_u²/S + σ_c² + σ_e²/S. Three measured variances identify them: s², the spread of d_s
over the S seeds (σ_u² + σ_e²); V₁, the mean over seeds of the bootstrap variance of d_s
(σ_c² + σ_e²); V_S, the bootstrap variance of d̄, one resample for all runs (σ_c² + σ_e²/S).
Hence σ̂_e² = S(V₁ − V_S)/(S − 1), σ̂_c² = (S·V_S − V₁)/(S − 1), σ̂_u² = s² − σ̂_e² (each
clamped at 0) and Var(d̄) ≈ s²/S + σ̂_c²: the seed spread already holds the per-seed test
noise. The interval d̄ ± h is the generalised pivotal one for s² with S − 1 degrees of freedom
and σ̂_c² taken as known (R >= 200): h solves P(|Z|·√(s²(S − 1)/(S·χ²_{S−1}) + σ̂_c²) <= h) =
level; the t interval when σ̂_c² = 0, the normal one when s² = 0 (a plug-in Satterthwaite t
covers 91–93% at S = 3 in the tests' simulations, this 95–96%). One seed: the test-set
interval. A spread below its 2.5% quantile under the test noise alone (s² < σ̂_e²·χ²_{S−1,0.025}
/(S − 1)), as when two seeds with coarse accuracies agree exactly, keeps at least the test-set
interval of d̄ (variance V_S).

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import optimize, special, stats
from torch import Tensor

__all__ = ["Comparison", "allpairs_tpr_boot", "compare_paired", "grouped_mean_boot",
           "identity_resamples", "predict_half_width", "scale_to_resolve"]


@dataclass(frozen=True)
class Comparison:
    """A − B over paired seeds: the mean, its interval, the verdict and the variance parts
    (``var_*``: clamped σ̂_u², σ̂_c², σ̂_e², NaN with one seed; ``variance``: the Var(d̄) used)."""

    mean: float
    low: float
    high: float
    half_width: float
    verdict: str
    better: str | None
    n_seeds: int
    n_boot: int
    variance: float
    var_seed: float
    var_test_shared: float
    var_test_per_seed: float
    name_a: str
    name_b: str
    unit: str
    level: float
    higher_is_better: bool
    test_only: bool
    decimals: int

    @property
    def df(self) -> float:
        """The t degrees of freedom whose quantile gives this width: half_width = t·√variance
        (S − 1 when the seed spread is all the variance, inf when the test set is)."""
        p, q = 0.5 + self.level / 2, self.half_width / math.sqrt(self.variance or math.inf)
        if q <= stats.norm.ppf(p) * (1 + 1e-9):
            return math.inf
        return float(optimize.brentq(lambda v: stats.t.ppf(p, v) - q, 1e-3, 1e9, xtol=1e-6))

    def sentence(self) -> str:
        """The line a notebook prints: ``A − B: +1.3 points (95% interval ±0.8, 5 paired
        seeds): A better``."""
        d, seeds = self.decimals, f"{self.n_seeds} paired seed" + "s" * (self.n_seeds != 1)
        return (f"{self.name_a} − {self.name_b}: {self.mean:+.{d}f} {self.unit} "
                f"({self.level:.0%} interval ±{self.half_width:.{d}f}, {seeds}): {self.verdict}")


def _finite(x, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
    if arr.ndim != ndim or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return arr


_GRID = (np.arange(512) + 0.5) / 512  # probability midpoints for the χ² quadrature


def _half_widths(seed_part, shared: float, n_seeds: int, level: float) -> np.ndarray:
    """h with P(|Z|·√(seed_part·(S−1)/χ²_{S−1} + shared) <= h) = level, per seed_part."""
    a = np.atleast_1d(np.asarray(seed_part, dtype=np.float64))[:, None]
    w = stats.chi2.ppf(_GRID, n_seeds - 1) / (n_seeds - 1) if n_seeds > 1 else np.ones(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.sqrt(2 * (a / w + shared))
        covered = lambda h: special.erf(h / scale).mean(axis=1) >= level  # noqa: E731
        lo, hi = np.zeros(len(a)), 4 * (np.sqrt(a[:, 0]) + math.sqrt(shared))
        zero, hi = hi == 0, np.where(hi == 0, 1.0, hi)  # no variance: width 0
        while not covered(hi[:, None]).all():
            hi = np.where(covered(hi[:, None]), hi, 2 * hi)
        for _ in range(45):  # the bracket shrinks to 3e-14 of its width
            mid = (lo + hi) / 2
            ok = covered(mid[:, None])
            lo, hi = np.where(ok, lo, mid), np.where(ok, mid, hi)
    return np.where(zero, 0.0, hi)


def compare_paired(a, b, a_boot, b_boot, *, name_a: str = "A", name_b: str = "B",
                   unit: str = "points", level: float = 0.95, higher_is_better: bool = True,
                   decimals: int | None = None) -> Comparison:
    """Mean difference A − B over paired seeds, its interval and a verdict.

    Verdict rule: A better only if the whole interval lies on A's side of 0 (above 0 when
    higher is better, below when lower is), B better only if it lies on B's side; otherwise
    "not resolved at this scale (±h unit)". One seed gives the test-set interval only, and the
    verdict ends "(test-set interval only: one seed)".

    Args:
        a, b: (S,) the metric of each seed's run of A and of B on the full test set.
        a_boot, b_boot: (S, R) the metric on R identity resamples of the test set; replicate r
            uses the same resample for every seed and both methods (:func:`identity_resamples`).
        name_a, name_b, unit: what the verdict calls A, B and the metric's unit ("AP").
        level: the interval's confidence level, in (0, 1).
        higher_is_better: False for error rates and other lower-is-better metrics.
        decimals: decimals shown; default two significant digits of the half-width.

    Shapes: a, b (S,); a_boot, b_boot (S, R) with R >= 2.
    Units: inputs, mean, low, high, half_width in ``unit``; variances in ``unit``².

    Raises:
        ValueError: an argument not of its shape (naming it), S or R differing between them,
            NaN or inf, R < 2, level outside (0, 1).

    Example:
        >>> counts = identity_resamples(4, 200, seed=0)  # one resample set for every run
        >>> acc_a = np.array([[90.0, 80, 85, 95], [88, 82, 86, 94], [91, 79, 84, 96]])
        >>> acc_b = acc_a - [[1.0, 2, 0, 1], [2, 1, 1, 2], [1, 1, 0, 2]]  # (S, identities)
        >>> boot = lambda acc: acc @ counts.T / counts.sum(1)          # (S, R)
        >>> c = compare_paired(acc_a.mean(1), acc_b.mean(1), boot(acc_a), boot(acc_b),
        ...                    name_a="ArcFace", name_b="NormFace")
        >>> c.sentence()
        'ArcFace − NormFace: +1.17 points (95% interval ±0.80, 3 paired seeds): ArcFace better'

    Taught in: notebooks/05_margin_ablation.ipynb
    """
    a, b = _finite(a, "a", 1), _finite(b, "b", 1)
    a_boot, b_boot = _finite(a_boot, "a_boot", 2), _finite(b_boot, "b_boot", 2)
    (n_seeds,), n_boot = a.shape, a_boot.shape[1]
    if b.shape != a.shape:
        raise ValueError(f"b must have a's shape {a.shape} (one value per seed), got {b.shape}")
    if a_boot.shape[0] != n_seeds or n_boot < 2:
        raise ValueError(f"a_boot must be ({n_seeds}, R), R >= 2 replicates, got {a_boot.shape}")
    if b_boot.shape != a_boot.shape:
        raise ValueError(f"b_boot must have a_boot's shape {a_boot.shape}, got {b_boot.shape}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    d, d_boot = a - b, a_boot - b_boot
    v1 = float(d_boot.var(axis=1, ddof=1).mean())
    if n_seeds == 1:
        variance, half = v1, float(_half_widths(0.0, v1, 1, level)[0])
        var_seed = var_shared = var_per_seed = math.nan
    else:
        vs, spread = float(d_boot.mean(axis=0).var(ddof=1)), float(d.var(ddof=1))
        var_per_seed = max(n_seeds * (v1 - vs) / (n_seeds - 1), 0.0)
        var_shared = max((n_seeds * vs - v1) / (n_seeds - 1), 0.0)
        var_seed = max(spread - var_per_seed, 0.0)
        variance = spread / n_seeds + var_shared
        half = float(_half_widths(spread / n_seeds, var_shared, n_seeds, level)[0])
        if spread < var_per_seed * stats.chi2.ppf(0.025, n_seeds - 1) / (n_seeds - 1):
            # seeds agreeing by chance: keep at least the test-set interval of d̄ (see above)
            variance, half = max(variance, vs), max(half, float(_half_widths(0, vs, 1, level)[0]))
    mean = float(d.mean())
    digits = int(decimals) if decimals is not None else 1 if half == 0 else max(
        0, 1 - math.floor(math.log10(half)))
    lo, hi = sorted(x if higher_is_better else -x for x in (mean - half, mean + half))
    better = name_a if lo > 0 else name_b if hi < 0 else None
    verdict = (f"{better} better" if better is not None else f"not resolved at this scale "
               f"(±{half:.{digits}f} {unit})") + (" (test-set interval only: one seed)"
                                                 if n_seeds == 1 else "")
    return Comparison(mean, mean - half, mean + half, half, verdict, better, n_seeds, n_boot,
                      variance, var_seed, var_shared, var_per_seed, name_a, name_b, unit,
                      float(level), bool(higher_is_better), n_seeds == 1, digits)


def predict_half_width(comparison: Comparison, n_seeds: int, test_scale: float = 1.0) -> float:
    """Expected half-width with ``n_seeds`` seeds and a test set ``test_scale`` times as large.

    From the measured parts: a seed spread of true variance σ_u² + σ_e²/k and a shared test
    part σ_c²/k; the half-width :func:`compare_paired` would give, averaged over the seed
    spread's χ²_{S'−1} law. Errs high (+30% from 3–5 seeds, simulated) where σ_u² ≈ 0, as
    σ̂_u² is clamped at 0; within 4% given the true parts.

    Shapes: scalars. Units: ``comparison.unit``.

    Raises:
        ValueError: ``comparison`` has one seed (σ_u² unknown); n_seeds < 2; test_scale <= 0.

    Example:
        >>> diff = np.array([[1.0, 2, 0, 1], [2, 1, 1, 2], [1, 1, 0, 2]])  # A − B, (S, identities)
        >>> c = compare_paired(diff.mean(1), np.zeros(3), diff @ identity_resamples(4).T / 4,
        ...                    np.zeros((3, 200)))
        >>> [round(h, 2) for h in (c.half_width, predict_half_width(c, 3),
        ...                        predict_half_width(c, 10, test_scale=4))]
        [0.8, 0.76, 0.24]

    Taught in: notebooks/05_margin_ablation.ipynb
    """
    if comparison.test_only:
        raise ValueError("comparison must have 2 or more seeds (one leaves σ_u² unknown)")
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 2:
        raise ValueError(f"n_seeds must be an integer >= 2, got {n_seeds!r}")
    if not test_scale > 0:
        raise ValueError(f"test_scale must be > 0, got {test_scale!r}")
    seed_part = (comparison.var_seed + comparison.var_test_per_seed / test_scale) / n_seeds
    spreads = seed_part * stats.chi2.ppf((np.arange(32) + 0.5) / 32, n_seeds - 1) / (n_seeds - 1)
    shared = comparison.var_test_shared / test_scale
    return float(_half_widths(spreads, shared, n_seeds, comparison.level).mean())


def scale_to_resolve(comparison: Comparison, target: float, *,
                     seeds: Sequence[int] = (2, 3, 5, 10, 20),
                     test_scales: Sequence[float] = (1, 2, 4, 8)) -> tuple[int, float] | None:
    """The cheapest (S', k) on the grid whose predicted half-width is at most ``target``.

    Cheapest: fewest seeds (each is a training run per method), then the smallest test scale;
    None when no point of the grid reaches the target.

    Units: ``target`` in ``comparison.unit``.

    Raises:
        ValueError: target <= 0, and the cases of :func:`predict_half_width`.

    Example:
        >>> diff = np.array([[1.0, 2, 0, 1], [2, 1, 1, 2], [1, 1, 0, 2]])  # A − B, (S, identities)
        >>> c = compare_paired(diff.mean(1), np.zeros(3), diff @ identity_resamples(4).T / 4,
        ...                    np.zeros((3, 200)))
        >>> scale_to_resolve(c, 0.3), scale_to_resolve(c, 0.01)
        ((5, 4), None)

    Taught in: notebooks/05_margin_ablation.ipynb
    """
    if not target > 0:
        raise ValueError(f"target must be a half-width > 0, got {target!r}")
    for n in sorted(seeds):
        for k in sorted(test_scales):
            if predict_half_width(comparison, n, k) <= target:
                return n, k
    return None


def identity_resamples(n_ids: int, n_boot: int = 200, *,
                       seed: int | np.random.Generator = 0) -> np.ndarray:
    """Identity-level bootstrap of a test set: how often each identity is drawn per replicate.

    Replicate r draws ``n_ids`` identities with replacement; entry (r, i) counts identity i.
    Compute these once per test set and reuse them for every seed and method.

    Shapes: -> (n_boot, n_ids) int64, each row summing to n_ids.

    Raises:
        ValueError: n_ids < 2 or n_boot < 2.

    Example:
        >>> identity_resamples(3, 2, seed=0)
        array([[0, 2, 1],
               [3, 0, 0]])

    Taught in: notebooks/05_margin_ablation.ipynb
    """
    for name, v in (("n_ids", n_ids), ("n_boot", n_boot)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2:
            raise ValueError(f"{name} must be an integer >= 2, got {v!r}")
    draws = np.random.default_rng(seed).integers(0, n_ids, size=(n_boot, n_ids))
    draws += np.arange(n_boot)[:, None] * n_ids  # row r counts into bins r·n_ids ...
    return np.bincount(draws.ravel(), minlength=n_boot * n_ids).reshape(n_boot, n_ids)


def _counts(counts, n_ids: int) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 2 or c.shape[1] != n_ids or c.dtype.kind not in "iu" or (c < 0).any():
        raise ValueError(f"counts must be (R, {n_ids}) non-negative integers, got {c.dtype} "
                         f"{c.shape}")
    return c.astype(np.int64)


def grouped_mean_boot(values, groups, counts) -> np.ndarray:
    """A per-item mean (e.g. per-pair correctness) over each identity resample.

    Replicate r weighs item p by ``counts[r, groups[p]]``, as if each drawn identity's items
    were copied in. For the 10-fold protocol pass each pair's correctness under its fold's
    threshold (thresholds are not refitted per replicate).

    Shapes: values (P,), groups (P,) ints in [0, n_ids), counts (R, n_ids) -> (R,); NaN where
    a replicate drew no identity with items.
    Units: those of ``values``.

    Raises:
        ValueError: values not finite or not (P,); groups not (P,) ints in range; bad counts.

    Example:
        >>> grouped_mean_boot([1, 0, 1, 1], [0, 0, 1, 2], [[1, 1, 1], [2, 0, 1], [0, 3, 0]])
        array([0.75, 0.6 , 1.  ])

    Taught in: notebooks/05_margin_ablation.ipynb
    """
    v = _finite(values, "values", 1)
    c = np.asarray(counts)
    c = _counts(c, c.shape[1] if c.ndim == 2 else -1)
    n_ids, g = c.shape[1], np.asarray(groups)
    if g.shape != v.shape or not np.issubdtype(g.dtype, np.integer) or g.min() < 0 \
            or g.max() >= n_ids:
        raise ValueError(f"groups must be {v.shape} integers in [0, {n_ids}) (columns of counts)")
    sums, sizes = np.bincount(g, v, n_ids), np.bincount(g, minlength=n_ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (c @ sums) / (c @ sizes)


def _pairs(scores, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(scores, tuple):
        m = np.asarray(scores.cpu() if isinstance(scores, Tensor) else scores)
        if m.shape != (n, n):
            raise ValueError(f"scores must be an ({n}, {n}) matrix (N from ids), got {m.shape}")
        scores = (*np.triu_indices(n, 1), m[np.triu_indices(n, 1)])
    i, j, s = (np.asarray(v.cpu() if isinstance(v, Tensor) else v) for v in scores)
    if not (i.shape == j.shape == s.shape == (n * (n - 1) // 2,)) or (i >= j).any() or i.min() < 0 \
            or j.max() >= n or (np.bincount(i, minlength=n) != np.arange(n)[::-1]).any():
        raise ValueError(f"scores as (i, j, s) must list each of the {n * (n - 1) // 2} "
                         "pairs i < j once (as all_pair_scores does)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite, got NaN or inf")
    return i, j, s


def allpairs_tpr_boot(scores, ids, fpr: float, counts=None) -> np.ndarray:
    """TPR at FPR over all pairs of a feature set, for each identity resample (strict rule).

    In replicate r identity p appears ``counts[r, p]`` times. Pairs between copies of one
    identity are never formed, so a genuine pair of p weighs count_p and an impostor pair of p
    and q (p ≠ q) weighs count_p·count_q. With W the total impostor weight and
    k = floor(fpr·W) (exact for the decimal ``repr(fpr)`` shows), the threshold t is the
    (k+1)-th largest impostor score in the weighted multiset and TPR = (weight of genuine
    pairs scoring > t) / (genuine weight); k >= W gives TPR 1. All counts 1 give
    :func:`~arclab.evaluation.allpairs.tpr_at_fpr`'s TPR (pass its scores: ``all_pair_scores``).

    Args:
        scores: (N, N) score matrix (upper triangle read) or ``(i, j, s)`` of every pair i < j.
        ids: (N,) identity labels; column p of ``counts`` is the p-th smallest label.
        fpr: target FPR in (0, 1].
        counts: (R, n_ids) from :func:`identity_resamples`; None: one replicate, all counts 1.

    Shapes: -> (R,); NaN where a replicate drew no identity with a genuine pair.
    Units: rates are fractions.

    Raises:
        ValueError: ids not (N,) integers with N >= 2; scores not (N, N) or not every pair
            once, or not finite; fpr outside (0, 1]; counts not (R, n_ids) counts.

    Example:
        >>> m = np.array([[1, .9, .8, .1], [.9, 1, .7, .6], [.8, .7, 1, .2], [.1, .6, .2, 1]])
        >>> allpairs_tpr_boot(m, [0, 0, 1, 1], 0.25, [[1, 1], [2, 1], [1, 3]])
        array([0.5       , 0.66666667, 0.25      ])

    Taught in: notebooks/05_margin_ablation.ipynb
    """
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) < 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be (N,) integers with N >= 2, got {ids.dtype} {ids.shape}")
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr <= 1:
        raise ValueError(f"fpr must be in (0, 1], got {fpr!r}")
    i, j, s = _pairs(scores, len(ids))
    labels, who = np.unique(ids, return_inverse=True)
    c = np.ones((1, len(labels)), np.int64) if counts is None else _counts(counts, len(labels))
    p, q = who[i], who[j]
    genuine = p == q
    order = np.argsort(-s[~genuine], kind="stable")
    neg_s, neg_p, neg_q = s[~genuine][order], p[~genuine][order], q[~genuine][order]
    pos_order = np.argsort(s[genuine], kind="stable")
    pos_s, pos_id = s[genuine][pos_order], p[genuine][pos_order]
    images, rate, out = np.bincount(who), Fraction(repr(float(fpr))), np.full(len(c), np.nan)
    for r, cr in enumerate(c):
        mass = images * cr
        total_neg = (int(mass.sum()) ** 2 - int((mass * mass).sum())) // 2
        pos_w = cr[pos_id]
        if total_neg == 0 or pos_w.sum() == 0:
            continue
        k = math.floor(rate * total_neg)
        if k >= total_neg:  # threshold -inf: every genuine pair accepted
            out[r] = 1.0
            continue
        length = min(len(neg_s), 2 * (k + 1) + 4096)
        while True:  # the (k+1)-th largest impostor lies in a short prefix: grow it until found
            cum = np.cumsum(cr[neg_p[:length]] * cr[neg_q[:length]])
            at = int(np.searchsorted(cum, k + 1))
            if at < length or length == len(neg_s):
                break
            length = min(len(neg_s), 4 * length)
        first_above = np.searchsorted(pos_s, neg_s[at], side="right")
        out[r] = pos_w[first_above:].sum() / pos_w.sum()
    return out
