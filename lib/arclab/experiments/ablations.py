"""The ablations as functions: train one backbone per method and seed on the same SynthFaces
set, then score every run the same way. Runs are cached by their spec, so re-rendering a
notebook does not retrain.

- :func:`run_ablation`: the margin ablation (protocol accuracy, all-pairs TPR@FPR, angle
  statistics, pair-angle histograms), notebook 05;
- :func:`run_subcenter_table`: the sub-center ArcFace table under label noise, with
  drop-and-retrain, notebook 06.

Taught in: notebooks/05_margin_ablation.ipynb and notebooks/06_subcenter_arcface.ipynb
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from tqdm.auto import tqdm

from arclab.evaluation import all_pair_scores, tpr_at_fpr
from arclab.evaluation.angles import angle_statistics
from arclab.losses.subcenter import drop_noisy, drop_quality
from arclab.models import embed_images
from arclab.train.config import LOSSES
from arclab.train.spec import run_spec, tutorial_spec

__all__ = ["ANGLE_BINS", "SUBCENTER_ROWS", "compare_orderings", "parse_variant", "run_ablation",
           "run_subcenter_table", "summarise"]

ANGLE_BINS = np.linspace(0.0, 180.0, 91)
"""Edges (degrees) of the pair-angle histograms, 2° wide."""


def parse_variant(name: str) -> dict[str, str]:
    """``"arcface"``, ``"arcface/straight_through"``, ``"cm1/raw"`` -> margin (and gradient,
    overflow) keyword arguments of :func:`arclab.train.spec.tutorial_spec`.

    Example:
        >>> parse_variant("arcface/straight_through/easy")
        {'margin': 'arcface', 'gradient': 'straight_through', 'overflow': 'easy'}
    """
    margin, *options = name.split("/")
    if margin not in LOSSES:
        raise ValueError(f"variant {name!r} must start with a loss of {list(LOSSES)}")
    out = {"margin": margin}
    for opt in options:
        key = ("gradient" if opt in ("exact", "straight_through") else
               "overflow" if opt in ("monotonic", "raw", "easy") else None)
        if key is None:
            raise ValueError(f"variant {name!r}: option {opt!r} is not a gradient (exact, "
                             "straight_through) or an overflow policy (monotonic, raw, easy)")
        out[key] = opt
    return out


def _pair_histograms(features: torch.Tensor, ids: np.ndarray) -> dict[str, np.ndarray]:
    i, j, cos = all_pair_scores(features)
    same = (torch.as_tensor(ids)[i] == torch.as_tensor(ids)[j]).numpy()
    deg = torch.rad2deg(torch.arccos(cos.clamp(-1, 1))).numpy()
    return {"positive": np.histogram(deg[same], ANGLE_BINS)[0],
            "negative": np.histogram(deg[~same], ANGLE_BINS)[0]}


def run_ablation(names: list[str], seeds: list[int], *, spec_kwargs: dict, validation: dict,
                 allpairs: tuple, train_set: tuple, fpr: float = 1e-4,
                 detail_seed: int | None = None, progress: bool = True) -> dict:
    """Train (or reload) and score every (variant, seed).

    Args:
        names: variants as :func:`parse_variant` reads them.
        seeds: initialisation seeds; the data (``spec_kwargs["data_seed"]``) stays fixed.
        spec_kwargs: the other :func:`~arclab.train.spec.tutorial_spec` arguments.
        validation: protocols scored at the end of each run (10-fold accuracy).
        allpairs: (uint8 images (N, H, W, 3), ids (N,)) of unseen identities: TPR at ``fpr``
            over all pairs, test-side angle statistics and the pair-angle histograms.
        train_set: (uint8 images, labels) of the training set: training-side statistics.
        detail_seed: the seed whose runs also get the angle statistics and pair histograms
            (default: the first of ``seeds``; the others are only scored, to save time).

    Returns:
        {name: {seed: {protocol accuracies..., "tpr", "tpr_ci", "losses", "target_angles",
        and for ``detail_seed``: "train_stats", "test_stats", "hist"}}}.
    """
    out: dict = {name: {} for name in names}
    detail_seed = seeds[0] if detail_seed is None else detail_seed
    jobs = list(itertools.product(names, seeds))
    for name, seed in tqdm(jobs, desc="ablation runs", disable=not progress):
        spec = tutorial_spec(**spec_kwargs, **parse_variant(name), seed=seed,
                             validation=validation)
        run = run_spec(spec, progress=False)
        feats = embed_images(run["model"], allpairs[0])
        r = tpr_at_fpr(feats, allpairs[1], [fpr], progress=False)[fpr]
        out[name][seed] = {
            **{k: v for k, v in run["validation"][-1].items() if k != "step"},
            "tpr": r["tpr"], "tpr_ci": list(r["tpr_ci"]),
            "losses": run["losses"], "target_angles": run["target_angles"]}
        if seed == detail_seed:  # the angle statistics and histograms the notebook shows
            train_feats = embed_images(run["model"], train_set[0], flip=False)
            weight = getattr(run["head"], "weight", None)
            out[name][seed] |= {
                "train_stats": angle_statistics(
                    train_feats, train_set[1],
                    weight=None if weight is None else weight.detach()),
                "test_stats": angle_statistics(feats, allpairs[1]),
                "hist": _pair_histograms(feats, np.asarray(allpairs[1]))}
    return out


def summarise(results: dict, keys: list[str]) -> dict[str, dict[str, tuple[float, float]]]:
    """{name: {key: (mean, std over seeds)}} (population std; 0 with one seed)."""
    return {name: {k: (float(np.mean([r[k] for r in runs.values()])),
                       float(np.std([r[k] for r in runs.values()]))) for k in keys}
            for name, runs in results.items()}


def compare_orderings(paper: dict[str, float], ours: dict[str, tuple[float, float]]
                      ) -> list[dict]:
    """Every pair the paper orders (a above b): does ours order it the same way, and is our
    gap larger than the seed spread (the larger of the two stds)?

    Example:
        >>> rows = compare_orderings({"a": 2.0, "b": 1.0}, {"a": (0.5, 0.1), "b": (0.7, 0.1)})
        >>> rows[0]["pair"], rows[0]["same_order"], rows[0]["beyond_spread"]
        ('a > b', False, True)
    """
    rows = []
    names = [n for n in paper if n in ours]
    for a, b in itertools.combinations(names, 2):
        if paper[a] == paper[b]:
            continue
        hi, lo = (a, b) if paper[a] > paper[b] else (b, a)
        gap = ours[hi][0] - ours[lo][0]
        rows.append({"pair": f"{hi} > {lo}", "paper_gap": paper[hi] - paper[lo],
                     "our_gap": gap, "same_order": gap > 0,
                     "beyond_spread": abs(gap) > max(ours[hi][1], ours[lo][1])})
    return rows


SUBCENTER_ROWS = ("clean, K=1", "noisy, K=1", "noisy, K=3", "noisy, K=10",
              "noisy, K=3, drop, K=1")
"""The rows of the TPAMI table that :func:`run_subcenter_table` trains (K=10 only if asked for)."""


def run_subcenter_table(seeds: list[int], *, spec_kwargs: dict, label_noise: dict,
              allpairs: tuple, train_set: tuple, ks: tuple[int, ...] = (1, 3, 10),
              drop_k: int = 3, threshold_deg: float = 75.0,
              fprs: tuple[float, ...] = (1e-4, 1e-3), progress: bool = True) -> dict:
    """Train (or reload from the run cache) the sub-center table's rows for every seed.

    For each seed: ArcFace with K = 1 on the clean labels; K in ``ks`` on the noisy labels;
    then K = ``drop_k``'s model embeds the (noisy) training set,
    :func:`~arclab.losses.subcenter.drop_noisy` keeps the samples within ``threshold_deg`` of
    their dominant sub-center, and K = 1 is retrained from scratch on those (same seed, same
    schedule in epochs, fewer steps as the set is smaller).

    Args:
        spec_kwargs: :func:`arclab.train.spec.tutorial_spec` arguments shared by every run.
        label_noise: {"closed_rate", "open_rate", "seed"} for the noisy rows.
        allpairs: (uint8 images (N, H, W, 3), ids (N,)) of unseen identities: TPR at ``fprs``
            over all pairs (strict rule) with Wilson intervals.
        train_set: (uint8 images, noisy labels, noise codes) of the noisy training set, in
            item order (:func:`arclab.data.splits.noisy_training_set`).

    Returns:
        {row: {seed: {"tpr": {fpr: value}, "tpr_ci": {fpr: [lo, hi]}, "theta_y": final mean
        angle to the own class weight (degrees)}}} and, under the key ``"drop"``,
        {seed: {"keep", "stats", "quality" (:func:`~arclab.losses.subcenter.drop_quality`),
        "analysis" (arrays of :func:`~arclab.losses.subcenter.dominant_subcenters` for the
        ``drop_k`` model)}}.
    """
    images, labels, noise = train_set[0], np.asarray(train_set[1]), np.asarray(train_set[2])
    if drop_k not in ks:
        raise ValueError(f"drop_k ({drop_k}) must be one of ks {ks}")
    rows = ["clean, K=1", *[f"noisy, K={k}" for k in ks], f"noisy, K={drop_k}, drop, K=1"]
    out: dict = {r: {} for r in rows} | {"drop": {}}

    def score(run: dict) -> dict:
        feats = embed_images(run["model"], allpairs[0])
        r = tpr_at_fpr(feats, allpairs[1], list(fprs), progress=False)
        return {"tpr": {f: r[f]["tpr"] for f in fprs},
                "tpr_ci": {f: list(r[f]["tpr_ci"]) for f in fprs},
                "theta_y": run["target_angles"][-1] if run["target_angles"] else None}

    bar = tqdm(total=len(seeds) * len(rows), desc="sub-center runs", disable=not progress)
    for seed in seeds:
        out["clean, K=1"][seed] = score(run_spec(tutorial_spec(**spec_kwargs, seed=seed),
                                                 progress=False))
        bar.update()
        for k in ks:
            run = run_spec(tutorial_spec(**spec_kwargs, seed=seed, subcenters=k,
                                         label_noise=label_noise), progress=False)
            out[f"noisy, K={k}"][seed] = score(run)
            bar.update()
            if k == drop_k:
                feats = embed_images(run["model"], images, flip=False)
                d = drop_noisy(feats, labels, run["head"],
                               threshold_deg=threshold_deg)
                out["drop"][seed] = {"keep": d["keep"], "stats": d["stats"],
                                     "quality": drop_quality(d["drop"], noise),
                                     "analysis": d}
        keep = out["drop"][seed]["keep"].tolist()
        retrain = run_spec(tutorial_spec(**spec_kwargs, seed=seed, label_noise=label_noise,
                                         keep=keep), progress=False)
        out[rows[-1]][seed] = score(retrain)
        bar.update()
    bar.close()
    return out
