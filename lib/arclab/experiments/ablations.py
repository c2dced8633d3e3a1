"""The margin ablation as a function: train one backbone per loss and seed on the same
SynthFaces set, then score every run the same way (protocol accuracy, all-pairs TPR@FPR,
angle statistics, pair-angle histograms). Runs are cached by their spec, so re-rendering the
notebook does not retrain.

Taught in: notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

__all__ = ["ANGLE_BINS", "compare_orderings", "parse_variant", "run_ablation", "summarise"]

ANGLE_BINS = np.linspace(0.0, 180.0, 91)
"""Edges (degrees) of the pair-angle histograms, 2° wide."""


def parse_variant(name: str) -> dict[str, str]:
    """``"arcface"``, ``"arcface/straight_through"``, ``"cm1/raw"`` -> margin (and gradient,
    overflow) keyword arguments of :func:`arclab.train.spec.tutorial_spec`.

    Example:
        >>> parse_variant("arcface/straight_through/easy")
        {'margin': 'arcface', 'gradient': 'straight_through', 'overflow': 'easy'}
    """
    from arclab.train.config import LOSSES

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
    from arclab.evaluation import all_pair_scores

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
    from tqdm.auto import tqdm

    from arclab.evaluation import tpr_at_fpr
    from arclab.evaluation.angles import angle_statistics
    from arclab.models import embed_images
    from arclab.train.spec import run_spec, tutorial_spec

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
