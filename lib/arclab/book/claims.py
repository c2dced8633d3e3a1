"""What a page says about its numbers: sentences formatted from results, and claims with verdicts.

A notebook's markdown holds the question and the reasoning; every measured value and every
verdict reaches the page through this module, so a re-run can never leave the page wrong:

- :func:`say` formats a template from values and shows it as Markdown (JupyterLab, papermill's
  output and the Jupyter Book page alike);
- :class:`Claim` is one claim of a paper checked here: what the paper says, what we measured,
  the rule that decides, and the verdict that rule gives. :func:`check` makes one from a
  boolean rule, :func:`from_comparison` from a paired comparison over seeds
  (:func:`arclab.evaluation.paired.compare_paired`), :func:`from_ratio` from repeated timings;
- :func:`claims_table` and :func:`claims_summary` show a notebook's claims: every claim with its
  verdict in the table, and a sentence that counts them and names the failing ones in the words
  of their rules.

Verdict words (:data:`VERDICTS`): "reproduces", "does not reproduce" (a rule not met),
"reversed" (an interval that excludes zero on the side opposite the paper's), and
"not resolved at this scale (±h unit)" (an interval that contains zero).

Taught in: notebooks/06_subcenter_arcface.ipynb
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    import pandas as pd

    from arclab.evaluation.paired import Comparison

__all__ = ["Claim", "Prose", "VERDICTS", "check", "claims_summary", "claims_table",
           "from_comparison", "from_ratio", "say", "span", "timing_ratio"]

Outcome = Literal["reproduces", "fails", "reversed", "unresolved"]
VERDICTS: dict[str, str] = {
    "reproduces": "reproduces",
    "fails": "does not reproduce",
    "reversed": "reversed",
    "unresolved": "not resolved at this scale",
}
"""Outcome -> the verdict's words (the unresolved one gains its half-width: "(±1.2 points)")."""


class Prose(str):
    """A string that notebooks display as Markdown (``text/markdown``) and tests read as text."""

    __slots__ = ()

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:  # the text/plain fallback is the sentence itself
        return str(self)


def say(template: str, /, **values: Any) -> Prose:
    """Format ``template`` with ``values`` (``str.format`` fields) and return it as Markdown.

    End a code cell with ``say(...)`` and the page shows the sentence; the numbers in it are
    then always the run's. Format numbers in the template (``{tpr:.1f}``).

    Raises:
        ValueError: ``template`` not a string, or a field it names missing from ``values``.

    Example:
        >>> say("ArcFace's target angle fell from {a:.0f}° to {b:.0f}°.", a=91.2, b=17.4)
        ArcFace's target angle fell from 91° to 17°.
    """
    if not isinstance(template, str):
        raise ValueError(f"template must be a str, got {type(template).__name__}")
    try:
        return Prose(template.format(**values))
    except KeyError as err:
        raise ValueError(f"template names {{{err.args[0]}}}, which is not among the values "
                         f"{sorted(values)}") from None


def span(values: Iterable[float], fmt: str = ".2f", unit: str = "") -> str:
    """"lo–hi" of ``values`` (one value: just it), formatted with ``fmt``; for prose that cites
    a range over seeds or rows. A value that is NaN is refused rather than printed as "nan".

    Raises:
        ValueError: no values, or a NaN among them.

    Example:
        >>> span([0.94, 0.86, 0.9])
        '0.86–0.94'
        >>> span([83.0], ".0f", "°")
        '83°'
    """
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).any():
        raise ValueError(f"values must be non-empty and not NaN, got {arr.tolist()}")
    lo, hi = format(arr.min(), fmt), format(arr.max(), fmt)
    return f"{lo}{unit}" if lo == hi else f"{lo}–{hi}{unit}"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper checked at our scale.

    Attributes:
        claim: the claim in words ("K=3 beats K=1 on noisy data").
        paper: what the paper reports for it, text ("93.72 vs 90.27 % (IJB-C TAR@1e-4)").
        ours: what we measured, text ("+1.2 points ± 0.8").
        rule: the rule that decides, in words ("95% interval of the paired difference > 0").
        scale: our scale, for the reader ("32 px, 100 ids, 5 seeds").
        outcome: "reproduces", "fails", "reversed" or "unresolved".
        resolution: the half-width and unit an unresolved verdict states ("±1.2 points").
    """

    claim: str
    paper: str
    ours: str
    rule: str
    scale: str
    outcome: Outcome
    resolution: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in VERDICTS:
            raise ValueError(f"outcome must be one of {sorted(VERDICTS)}, got {self.outcome!r}")

    @property
    def passed(self) -> bool:
        """True only when the claim reproduces."""
        return self.outcome == "reproduces"

    @property
    def verdict(self) -> str:
        """The verdict's words: "reproduces", "does not reproduce", "reversed" or
        "not resolved at this scale (±h unit)"."""
        words = VERDICTS[self.outcome]
        return f"{words} ({self.resolution})" if self.resolution else words

    def as_dict(self) -> dict[str, Any]:
        """The claim for the results JSON, with its verdict and ``passed``."""
        return {**asdict(self), "verdict": self.verdict, "passed": self.passed}


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    return value


def check(claim: str, passed: bool, *, paper: str, ours: str, rule: str,
          scale: str = "") -> Claim:
    """A claim decided by a boolean rule: "reproduces" when ``passed``, else
    "does not reproduce". State the rule in ``rule`` exactly as the code tests it.

    Raises:
        ValueError: ``passed`` not a bool (numpy bools accepted), a text argument not a str.

    Example:
        >>> c = check("W of 512 x 1M fp32 is 2 GB", 2048 == 2048, paper="2 GB", ours="2,048 MB",
        ...           rule="bytes equal the slide's", scale="closed form")
        >>> c.verdict, c.passed
        ('reproduces', True)
    """
    if not isinstance(passed, (bool, np.bool_)):
        raise ValueError(f"passed must be a bool, got {type(passed).__name__}")
    return Claim(_text(claim, "claim"), _text(paper, "paper"), _text(ours, "ours"),
                 _text(rule, "rule"), _text(scale, "scale"),
                 "reproduces" if bool(passed) else "fails")


def from_comparison(claim: str, comparison: Comparison, *, expect: str, paper: str,
                    scale: str = "") -> Claim:
    """A claim that one method beats another, decided by a paired comparison's interval.

    ``expect`` names the method the paper says is better (``comparison.name_a`` or
    ``name_b``). The verdict is "reproduces" when the interval excludes zero on that side,
    "reversed" when it excludes zero on the other, and "not resolved at this scale (±h unit)"
    when it contains zero: the comparison's own rule, never a bare ordering of means.

    Raises:
        ValueError: ``expect`` not one of the comparison's two names.

    Example:
        >>> from arclab.evaluation.paired import compare_paired
        >>> boot = np.zeros((3, 4)) + [[0.1, -0.1, 0.2, -0.2]]
        >>> c = compare_paired([80.0, 81, 82], [79.0, 79.5, 80], boot, boot,
        ...                    name_a="K=3", name_b="K=1")
        >>> from_comparison("K=3 beats K=1", c, expect="K=3", paper="93.7 vs 90.3").verdict
        'reproduces'
    """
    names = (comparison.name_a, comparison.name_b)
    if expect not in names:
        raise ValueError(f"expect must be {names[0]!r} or {names[1]!r}, got {expect!r}")
    d = comparison.decimals
    ours = f"{comparison.mean:+.{d}f} {comparison.unit} (±{comparison.half_width:.{d}f})"
    seeds = f"{comparison.n_seeds} paired seed" + "s" * (comparison.n_seeds != 1)
    rule = (f"{comparison.level:.0%} interval of {names[0]} − {names[1]} over {seeds} "
            f"excludes 0 on {expect}'s side"
            + (" (test-set interval only: one seed)" if comparison.test_only else ""))
    if comparison.better is None:
        outcome: Outcome = "unresolved"
        resolution = f"±{comparison.half_width:.{d}f} {comparison.unit}"
    else:
        outcome, resolution = ("reproduces" if comparison.better == expect else "reversed"), ""
    return Claim(_text(claim, "claim"), _text(paper, "paper"), ours, rule,
                 _text(scale, "scale"), outcome, resolution)


def timing_ratio(times_ref: Sequence[float], times_new: Sequence[float],
                 level: float = 0.95) -> tuple[float, float, float]:
    """Speed-up of "new" over "ref" from repeated timings: the ratio of geometric-mean times
    ref / new, and its interval (Welch's t on log times, so a ratio, not a difference).

    Returns (ratio, low, high); > 1 means "new" is faster. Needs two or more timings of each.

    Units: times in any one unit (seconds); the ratio is unitless.

    Raises:
        ValueError: fewer than two timings in either, a time that is not finite and positive,
            or ``level`` outside (0, 1).

    Example:
        >>> r, lo, hi = timing_ratio([2.0, 2.1, 1.9], [1.0, 1.05, 0.95])
        >>> f"{r:.2f} ({lo:.2f}-{hi:.2f})"
        '2.00 (1.79-2.24)'
    """
    ref, new = (np.asarray(t, dtype=np.float64) for t in (times_ref, times_new))
    for name, arr in (("times_ref", ref), ("times_new", new)):
        if arr.ndim != 1 or arr.size < 2 or not (np.isfinite(arr) & (arr > 0)).all():
            raise ValueError(f"{name} must hold two or more finite positive times, "
                             f"got {arr.tolist()}")
    if isinstance(level, bool) or not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    a, b = np.log(ref), np.log(new)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = float(a.mean() - b.mean())
    if va + vb == 0:
        return math.exp(diff), math.exp(diff), math.exp(diff)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    h = float(stats.t.ppf(0.5 + level / 2, df) * math.sqrt(va + vb))
    return math.exp(diff), math.exp(diff - h), math.exp(diff + h)


def from_ratio(claim: str, times_ref: Sequence[float], times_new: Sequence[float], *,
               paper: str, scale: str = "", level: float = 0.95) -> Claim:
    """A claim that "new" is faster than "ref", decided beyond the noise of repeated timings:
    "reproduces" when the whole interval of the speed-up (:func:`timing_ratio`) lies above 1,
    "reversed" when it lies below 1, "not resolved at this scale" when it contains 1.

    Example:
        >>> from_ratio("B is faster", [2.0, 2.1, 1.9], [1.0, 1.05, 0.95], paper="2x").verdict
        'reproduces'
        >>> from_ratio("B is faster", [1.0, 1.3, 0.9], [1.1, 0.9, 1.2], paper="2x").outcome
        'unresolved'
    """
    ratio, lo, hi = timing_ratio(times_ref, times_new, level)
    ours = f"{ratio:.2f}x ({level:.0%} interval {lo:.2f}–{hi:.2f}x)"
    rule = (f"{level:.0%} interval of the speed-up over {len(times_ref)} and "
            f"{len(times_new)} timed repeats lies above 1x")
    outcome: Outcome = "reproduces" if lo > 1 else "reversed" if hi < 1 else "unresolved"
    resolution = f"{lo:.2f}–{hi:.2f}x" if outcome == "unresolved" else ""
    return Claim(_text(claim, "claim"), _text(paper, "paper"), ours, rule,
                 _text(scale, "scale"), outcome, resolution)


def _claims(claims: Sequence[Claim]) -> list[Claim]:
    claims = list(claims)
    bad = [i for i, c in enumerate(claims) if not isinstance(c, Claim)]
    if not claims or bad:
        raise ValueError(f"claims must be a non-empty sequence of Claim, got {len(claims)} "
                         f"items{f' with non-Claim items at {bad}' if bad else ''}")
    return claims


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """One row per claim: the paper's value beside ours, the rule, the scale and the verdict.

    Raises:
        ValueError: no claims, or an item that is not a :class:`Claim`.

    Example:
        >>> t = claims_table([check("c", False, paper="2", ours="1", rule="ours >= 2")])
        >>> t.loc["c", "verdict"]
        'does not reproduce'
    """
    import pandas as pd  # heavy: the runner's command line imports this package without it

    rows = [{"claim": c.claim, "paper": c.paper, "ours": c.ours, "rule": c.rule,
             "scale": c.scale, "verdict": c.verdict} for c in _claims(claims)]
    return pd.DataFrame(rows).set_index("claim")


def claims_summary(claims: Sequence[Claim]) -> Prose:
    """One paragraph counting the claims by verdict and naming every one that did not
    reproduce, with the rule it was held to.

    Raises:
        ValueError: no claims, or an item that is not a :class:`Claim`.

    Example:
        >>> cs = [check("a", True, paper="", ours="", rule="x > 0"),
        ...       check("b", False, paper="", ours="0.3", rule="y > 0.9")]
        >>> claims_summary(cs)
        1 of 2 claims reproduces at this scale. Does not reproduce: *b* (0.3; rule: y > 0.9).
    """
    claims = _claims(claims)
    n_ok = sum(c.passed for c in claims)
    verb = "reproduces" if n_ok == 1 else "reproduce"
    parts = [f"{n_ok} of {len(claims)} claim{'s' * (len(claims) != 1)} {verb} at this scale."]
    for outcome in ("fails", "reversed", "unresolved"):
        named = [f"*{c.claim}* ({c.ours}; rule: {c.rule})" if outcome == "fails"
                 else f"*{c.claim}* ({c.ours})" for c in claims if c.outcome == outcome]
        if named:
            head = VERDICTS[outcome]
            parts.append(f"{head[0].upper()}{head[1:]}: {'; '.join(named)}.")
    return Prose(" ".join(parts))
