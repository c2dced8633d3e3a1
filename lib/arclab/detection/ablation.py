"""The RetinaFace ablation: the slides' rows as config overrides, every (row, seed) trained and
scored, and paired comparisons of two rows over seeds and scene resamples.

:data:`ABLATION_ROWS` turns the slides' "Ablation Study on Multitask Loss" rows into
:class:`~arclab.detection.fit.DetectorConfig` overrides; :func:`run_rows` trains (or reloads)
each with each seed and scores it (:func:`~arclab.detection.fit.evaluate_detector`);
:func:`summarise_rows` averages over seeds and :func:`compare_rows` gives the paired interval
of a difference (:func:`arclab.evaluation.paired.compare_paired`). :func:`roundoff_rows` and
:func:`spread` measure how far float round-off alone moves a run, beside the seed spread.

Taught in: notebooks/11_retinaface_ablation.ipynb
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
from tqdm.auto import tqdm

from arclab.detection.fit import DetectorConfig, evaluate_detector, train_detector
from arclab.evaluation.paired import Comparison, compare_paired

__all__ = ["ABLATION_LABELS", "ABLATION_ROWS", "compare_rows", "roundoff_rows", "run_rows",
           "runs_json", "spread", "summarise_rows"]


ABLATION_LABELS: dict[str, str] = {  # the slides' names of the rows
    "fpn_context": "FPN+Context", "dcn": "+DCN", "dcn_pts": "+DCN+L_pts",
    "dcn_pixel": "+DCN+L_pixel", "dcn_pts_pixel": "+DCN+L_pts+L_pixel"}

ABLATION_ROWS: dict[str, dict[str, object]] = {
    "fpn_context": {"context": "ssh", "landmarks": False, "pixel": False},
    "dcn": {"context": "ssh_dcn", "landmarks": False, "pixel": False},
    "dcn_pts": {"context": "ssh_dcn", "landmarks": True, "pixel": False},
    "dcn_pixel": {"context": "ssh_dcn", "landmarks": False, "pixel": True},
    "dcn_pts_pixel": {"context": "ssh_dcn", "landmarks": True, "pixel": True},
}
"""The slides' multitask-loss ablation rows as config overrides (keys as in
``arclab.reference.RETINAFACE_ABLATION``): FPN+Context, +DCN, +L_pts, +L_pixel, +L_pts+L_pixel.
Without L_pts the landmark head is still there but untrained."""


def run_rows(rows: dict[str, dict], seeds: list[int], base: DetectorConfig, train_set: dict,
             val_set: dict, *, progress: bool = True, counts=None) -> dict[str, dict[int, dict]]:
    """Train (or reload from the cache) and evaluate ``base`` with each row's overrides and
    each seed.

    Returns: {row: {seed: {"easy", "medium", "hard", "map", "nme", "landmark_faces",
    "losses", "terms", "seconds"}}} (``seconds``: training time of this call, about 0 when
    the run was cached), and "boot" with ``counts`` (:func:`evaluate_detector`).
    """
    out: dict[str, dict[int, dict]] = {row: {} for row in rows}
    jobs = [(row, seed) for row in rows for seed in seeds]
    for row, seed in tqdm(jobs, desc="ablation runs", disable=not progress):
        cfg = replace(base, seed=seed, **rows[row])
        run = train_detector(cfg, train_set, progress=False)
        scores = evaluate_detector(run["model"], val_set, counts=counts)
        out[row][seed] = {**{k: v for k, v in scores.items() if k not in ("detections", "pr")},
                          "losses": run["losses"], "terms": run["terms"],
                          "seconds": run["seconds"]}
    return out


def runs_json(results: dict[str, dict[int, dict]],
              keys: tuple[str, ...] = ("easy", "medium", "hard", "map", "nme")
              ) -> dict[str, dict[str, dict]]:
    """:func:`run_rows`'s results as plain JSON: {row: {str(seed): {key: value, "boot": {key:
    list}}}} without the loss curves; NaN (a subset without faces) becomes None. Reading it
    back with ``np.array(values, dtype=float)`` gives the NaN again, for :func:`compare_rows`.

    Example:
        >>> runs_json({"a": {0: {"hard": 0.5, "boot": {"hard": np.array([0.4, np.nan])}}}},
        ...           ("hard",))
        {'a': {'0': {'hard': 0.5, 'boot': {'hard': [0.4, None]}}}}
    """
    def plain(x):
        return None if x != x else float(x)

    return {row: {str(seed): {**{k: plain(run[k]) for k in keys if k in run},
                              **({"boot": {k: [plain(v) for v in run["boot"][k]]
                                           for k in keys if k in run["boot"]}}
                                 if "boot" in run else {})}
                  for seed, run in runs.items()} for row, runs in results.items()}


def summarise_rows(results: dict[str, dict[int, dict]],
                   keys: tuple[str, ...] = ("easy", "medium", "hard", "map", "nme")
                   ) -> dict[str, dict[str, tuple[float, float]]]:
    """{row: {key: (mean, population std over seeds)}}."""
    return {row: {k: (float(np.mean([r[k] for r in runs.values()])),
                      float(np.std([r[k] for r in runs.values()]))) for k in keys}
            for row, runs in results.items()}


def compare_rows(results: dict[str, dict[int, dict]], a: str, b: str, key: str, *,
                 names: dict[str, str] | None = None, unit: str = "AP",
                 level: float = 0.95) -> Comparison | None:
    """Row ``a`` − row ``b`` of :func:`run_rows`'s results (with ``counts``) on ``key`` in AP
    points, paired over common seeds and scene resamples (``paired.compare_paired``), leaving
    out resamples without a face of the subset (NaN in every run). None when a run's AP is NaN
    or under two resamples remain. ``names``: what the verdict calls the rows; ``unit``: what
    it calls the unit (one string for every comparison that is drawn or tabled together).

    Raises:
        ValueError: a row missing, no seed in common, or a run without "boot".

    Example:
        >>> run = lambda ap, boot: {"hard": ap, "boot": {"hard": np.array(boot)}}
        >>> res = {"x": {0: run(0.5, [0.45, 0.55, 0.5])}, "y": {0: run(0.3, [0.3, 0.32, 0.28])}}
        >>> c = compare_rows(res, "x", "y", "hard")
        >>> f"{c.mean:+.1f} ± {c.half_width:.1f} {c.unit}: {c.better}"
        '+20.0 ± 8.5 AP: x'
    """
    seeds = sorted(set(results[a]) & set(results[b])) if a in results and b in results else []
    if not seeds or any("boot" not in results[r][s] for r in (a, b) for s in seeds):
        raise ValueError(f"rows {a!r} and {b!r} must be in results, share a seed, and hold "
                         f"scene resamples (pass counts to run_rows); rows: {sorted(results)}")
    va, vb = (100 * np.array([results[r][s][key] for s in seeds]) for r in (a, b))
    ba, bb = (100 * np.stack([results[r][s]["boot"][key] for s in seeds]) for r in (a, b))
    keep = np.isfinite(ba).all(0) & np.isfinite(bb).all(0)
    if not (np.isfinite(va).all() and np.isfinite(vb).all()) or keep.sum() < 2:
        return None
    names = names or {}
    return compare_paired(va, vb, ba[:, keep], bb[:, keep], name_a=names.get(a, a),
                          name_b=names.get(b, b), unit=unit, level=level)


def roundoff_rows(overrides: dict[str, object], n: int) -> dict[str, dict[str, object]]:
    """A row's ``overrides`` as they are ("round-off 0") and with ``roundoff`` = 1..n, for
    :func:`run_rows` with one seed: runs that differ only by a change of a few float32 ulps
    in the initial weights (:data:`arclab.detection.fit.ROUNDOFF`).

    Raises:
        ValueError: n not an integer >= 1.

    Example:
        >>> rows = roundoff_rows({"context": "ssh"}, 2)
        >>> rows["round-off 2"], len(rows)
        ({'context': 'ssh', 'roundoff': 2}, 3)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return {f"round-off {k}": {**overrides, "roundoff": k} for k in range(int(n) + 1)}


def spread(runs: Iterable[dict], keys: tuple[str, ...] = ("easy", "hard", "map")
           ) -> dict[str, tuple[float, float, float]]:
    """{key: (mean, sample standard deviation, max − min)} over runs, in AP points (×100).

    Raises:
        ValueError: fewer than two runs, or a NaN value.

    Example:
        >>> mean, sd, width = spread([{"map": 0.05}, {"map": 0.07}, {"map": 0.06}], ("map",))["map"]
        >>> f"{mean:.2f} ± {sd:.2f}, range {width:.2f}"
        '6.00 ± 1.00, range 2.00'
    """
    runs = list(runs)
    values = {k: 100 * np.array([r[k] for r in runs], dtype=np.float64) for k in keys}
    if len(runs) < 2 or any(np.isnan(v).any() for v in values.values()):
        raise ValueError(f"runs must be two or more without NaN, got {len(runs)} runs: "
                         f"{ {k: v.tolist() for k, v in values.items()} }")
    return {k: (float(v.mean()), float(v.std(ddof=1)), float(v.max() - v.min()))
            for k, v in values.items()}
