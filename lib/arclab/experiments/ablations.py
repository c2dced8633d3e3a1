"""The ablations as functions: train one backbone per method and seed on the same SynthFaces
set, then score every run the same way. Runs are cached by their spec, so re-rendering a
notebook does not retrain.

- :func:`run_ablation`: the margin ablation (protocol accuracy, all-pairs TPR@FPR, angle
  statistics, pair-angle histograms), notebook 05;
- :func:`score_features`, :func:`pair_protocols`, :func:`protocol_scores`: every score with its
  value on identity resamples of the test set, and :func:`compare_runs`,
  :func:`paired_orderings`: paired comparisons over seeds from them (notebooks 04, 05, 12);
- :func:`run_subcenter_table`: the sub-center ArcFace table under label noise, with
  drop-and-retrain, notebook 06.

Taught in: notebooks/05_margin_ablation.ipynb and notebooks/06_subcenter_arcface.ipynb
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from tqdm.auto import tqdm

from arclab.data.cache import render_pairs
from arclab.data.formats import load_bin
from arclab.data.params import SynthConfig
from arclab.data.splits import make_protocol
from arclab.evaluation import tpr_at_fpr, verification_accuracy_10fold
from arclab.evaluation.angles import angle_statistics, pair_angles
from arclab.evaluation.paired import (
    Comparison,
    compare_paired,
    grouped_mean_boot,
    identity_resamples,
)
from arclab.evaluation.resampled_tpr import tpr_resamples
from arclab.losses.subcenter import drop_noisy, drop_quality
from arclab.models import embed_images
from arclab.train.config import LOSSES
from arclab.train.spec import run_spec, tutorial_spec

__all__ = ["ANGLE_BINS", "SUBCENTER_ROWS", "compare_runs", "pair_protocols", "paired_orderings",
           "parse_variant", "protocol_scores", "run_ablation", "run_subcenter_table",
           "score_features", "summarise"]

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
    positive, negative = pair_angles(features, ids)
    return {"positive": np.histogram(positive, ANGLE_BINS)[0],
            "negative": np.histogram(negative, ANGLE_BINS)[0]}


def _pair_accuracy(left, right, same, groups: np.ndarray, counts: np.ndarray
                   ) -> tuple[float, np.ndarray]:
    """Accuracy of each pair at its fold's 10-fold threshold, on the set and per resample."""
    correct = verification_accuracy_10fold(left, right, same)["correct"].astype(np.float64)
    return float(correct.mean()), grouped_mean_boot(correct, groups, counts)


def score_features(features, ids, *, fprs: dict[str, float], counts: np.ndarray,
                   pairs: tuple | None = None) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scores of one feature set, each on the whole test set and on every identity resample.

    TPR at each FPR over all pairs (strict rule, :func:`arclab.evaluation.resampled_tpr.
    tpr_resamples`: the value equals :func:`~arclab.evaluation.tpr_at_fpr`'s) and, given
    ``pairs``, the 10-fold accuracy on them: each pair judged at its fold's threshold (the
    10-fold mean when the folds are of equal size), resampled by the identity of its left image.

    Args:
        features: (N, D) embeddings; ids: (N,) integer identities.
        fprs: {name: FPR}, e.g. ``{"TPR@1e-3": 1e-3}``; the names key the outputs.
        counts: (R, n_ids) from :func:`~arclab.evaluation.paired.identity_resamples`, column p
            the p-th smallest id; the same array for every run that will be compared.
        pairs: (left, right, same): (P,) indices into ``features`` and (P,) bools; its score
            is named ``"10-fold acc"``.

    Returns:
        ({name: value}, {name: (R,) values on the resamples}); fractions.

    Example:
        >>> f = torch.eye(4)[[0, 0, 1, 1, 2, 2, 3, 3]] + 0.01 * torch.arange(8.0)[:, None]
        >>> ids = np.repeat(np.arange(4), 2)
        >>> v, b = score_features(f, ids, fprs={"TPR@0.1": 0.1},
        ...                       counts=identity_resamples(4, 5, seed=0))
        >>> v, b["TPR@0.1"].shape
        ({'TPR@0.1': 1.0}, (5,))
    """
    ids = np.asarray(ids)
    values, boots = tpr_resamples(features, ids, fprs, counts)
    if pairs is not None:
        left, right, same = (np.asarray(a) for a in pairs)
        groups = np.searchsorted(np.unique(ids), ids[left])
        values["10-fold acc"], boots["10-fold acc"] = _pair_accuracy(
            features[left], features[right], same, groups, counts)
    return values, boots


def pair_protocols(validation: dict, cfg: SynthConfig, size: int, *, n_boot: int = 200,
                   seed: int = 0, progress: bool = False) -> dict[str, dict]:
    """The validation protocols (as in a spec's ``validation``) as pair sets to score per pair.

    The pairs are those the training loop's validator scores; each pair belongs to the
    identity of its left image (an impostor pair to one of its two identities), and each
    protocol gets one set of identity resamples, shared by every model scored on it. A
    ``{"bin": path}`` entry (a verification ``.bin``) has no identity labels: its pairs are
    resampled one by one, which ignores identities shared between pairs and so can give
    narrower intervals than identity resamples would.

    Returns:
        {name: {"left", "right": (P, size, size, 3) uint8, "same": (P,) bool, "groups": (P,)
        identity (or, for a ``.bin``, pair) index, "counts": (n_boot, n_groups)}}.
    """
    out = {}
    for k, (name, entry) in enumerate(validation.items()):
        if "bin" in entry:
            images, same = load_bin(entry["bin"], image_size=size)
            left, right, groups = images[0::2], images[1::2], np.arange(len(same))
        else:
            pairs = make_protocol(name, cfg, **entry)
            left, right = render_pairs(pairs, size=size, progress=progress)
            same = pairs["issame"]
            groups = np.unique(pairs["left"]["identity"], return_inverse=True)[1]
        out[name] = {"left": left, "right": right, "same": np.asarray(same, bool),
                     "groups": groups, "counts": identity_resamples(int(groups.max()) + 1,
                                                                    n_boot, seed=seed + k)}
    return out


def protocol_scores(model: torch.nn.Module, protocols: dict[str, dict]
                    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Each protocol's accuracy (pairs at their fold's threshold: the 10-fold mean, folds of
    equal size) and its value on the protocol's identity resamples, with the flip test.

    Returns:
        ({protocol: accuracy}, {protocol: (R,)}); fractions.
    """
    values, boots = {}, {}
    for name, p in protocols.items():
        left, right = embed_images(model, p["left"]), embed_images(model, p["right"])
        values[name], boots[name] = _pair_accuracy(left, right, p["same"], p["groups"],
                                                   p["counts"])
    return values, boots


def compare_runs(runs_a: dict, runs_b: dict, key: str, *, name_a: str, name_b: str,
                 unit: str = "points", factor: float = 100.0) -> Comparison:
    """A − B on ``key``, paired by seed over the seeds both have, with the test-set noise from
    the runs' identity resamples (:func:`~arclab.evaluation.paired.compare_paired`).

    Args:
        runs_a, runs_b: {seed: {key: value, "boot": {key: (R,) values}}}, as
            :func:`run_ablation` returns per name (or :func:`score_features`' two dicts
            merged so).
        factor: values are multiplied by it (fractions -> percentage points).

    Raises:
        ValueError: no seed in common, and :func:`~arclab.evaluation.paired.compare_paired`'s.

    Example:
        >>> a = {0: {"acc": 0.8, "boot": {"acc": np.array([0.79, 0.81, 0.80])}},
        ...      1: {"acc": 0.82, "boot": {"acc": np.array([0.81, 0.83, 0.82])}}}
        >>> b = {0: {"acc": 0.7, "boot": {"acc": np.array([0.69, 0.71, 0.70])}},
        ...      1: {"acc": 0.71, "boot": {"acc": np.array([0.70, 0.72, 0.71])}}}
        >>> compare_runs(a, b, "acc", name_a="A", name_b="B").better
        'A'
    """
    seeds = [s for s in runs_a if s in runs_b]
    if not seeds:
        raise ValueError(f"runs_a and runs_b share no seed ({list(runs_a)} vs {list(runs_b)})")

    def get(runs: dict, boot: bool) -> np.ndarray:
        return factor * np.array([runs[s]["boot"][key] if boot else runs[s][key] for s in seeds])

    return compare_paired(get(runs_a, False), get(runs_b, False), get(runs_a, True),
                          get(runs_b, True), name_a=name_a, name_b=name_b, unit=unit)


def _score_run(run: dict, allpairs: tuple, fprs: dict[str, float], counts: np.ndarray,
               protocols: dict | None) -> tuple[dict, torch.Tensor]:
    """One run's scores (and the all-pairs features, for the detail statistics)."""
    feats = embed_images(run["model"], allpairs[0])
    r = tpr_at_fpr(feats, allpairs[1], [fprs["tpr"]], progress=False)[fprs["tpr"]]
    out = {**{k: v for k, v in run["validation"][-1].items() if k != "step"},
           "tpr": r["tpr"], "tpr_ci": list(r["tpr_ci"]), "losses": run["losses"],
           "target_angles": run["target_angles"]}
    values, boot = score_features(feats, allpairs[1], fprs=fprs, counts=counts)
    if protocols:
        more = protocol_scores(run["model"], protocols)
        values, boot = values | more[0], boot | more[1]
    return out | values | {"boot": boot}, feats


def run_ablation(names: list[str], seeds: list[int], *, spec_kwargs: dict, validation: dict,
                 allpairs: tuple, train_set: tuple, fpr: float = 1e-4,
                 more_fprs: dict[str, float] | None = None,
                 detail_seed: int | None = None, protocols: dict | None = None,
                 n_boot: int = 200, progress: bool = True) -> dict:
    """Train (or reload) and score every (variant, seed).

    Args:
        names: variants as :func:`parse_variant` reads them.
        seeds: initialisation seeds; the data (``spec_kwargs["data_seed"]``) stays fixed.
        spec_kwargs: the other :func:`~arclab.train.spec.tutorial_spec` arguments.
        validation: protocols scored at the end of each run (10-fold accuracy).
        allpairs: (uint8 images (N, H, W, 3), ids (N,)) of unseen identities: TPR at ``fpr``
            over all pairs, test-side angle statistics and the pair-angle histograms.
        train_set: (uint8 images, labels) of the training set: training-side statistics.
        more_fprs: more all-pairs scores, {key: FPR} (e.g. ``{"tpr@1e-3": 1e-3}``), each with
            its value on the resamples (``fpr``'s is the key "tpr").
        detail_seed: the seed whose runs also get the angle statistics and pair histograms
            (default: the first of ``seeds``; the others are only scored, to save time).
        protocols: :func:`pair_protocols` of ``validation``: the protocol accuracies are then
            scored per pair (the same pairs and numbers as the run's last validation) with
            their identity resamples, for :func:`compare_runs`; None keeps the run's.
        n_boot: identity resamples of the all-pairs set (seeded, so the same for every call).

    Returns:
        {name: {seed: {protocol accuracies..., "tpr", "tpr_ci", the ``more_fprs`` keys,
        "losses", "target_angles", "boot": {"tpr", the ``more_fprs`` keys and, with
        ``protocols``, each protocol: (n_boot,) values on the resamples}, and for
        ``detail_seed``: "train_stats", "test_stats", "hist"}}}.
    """
    out: dict = {name: {} for name in names}
    detail_seed = seeds[0] if detail_seed is None else detail_seed
    counts = identity_resamples(len(np.unique(allpairs[1])), n_boot, seed=0)
    jobs = list(itertools.product(names, seeds))
    for name, seed in tqdm(jobs, desc="ablation runs", disable=not progress):
        spec = tutorial_spec(**spec_kwargs, **parse_variant(name), seed=seed,
                             validation=validation)
        run = run_spec(spec, progress=False)
        out[name][seed], feats = _score_run(run, allpairs, {"tpr": fpr} | (more_fprs or {}),
                                            counts, protocols)
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


def paired_orderings(paper: dict[str, float], results: dict, key: str) -> list[dict]:
    """Every pair of ``results`` the paper orders (a above b), compared paired by seed on
    ``key`` (:func:`compare_runs`, percentage points): is the paper's order kept (the
    interval excludes 0 on a's side), reversed (on b's side) or unresolved?

    Args:
        paper: {name: the paper's value}; names missing from ``results`` are skipped.
        results: :func:`run_ablation`'s output.

    Returns:
        [{"pair": "a > b", "paper_gap", "our_gap" (points), "half_width", "outcome": "kept" |
        "reversed" | "unresolved", "comparison": the :class:`Comparison`}].

    Example:
        >>> runs = {n: {s: {"acc": v + s / 100, "boot": {"acc": v + np.array([0.0, 0.01])}}
        ...             for s in range(3)} for n, v in (("a", 0.5), ("b", 0.7))}
        >>> [(r["pair"], r["outcome"]) for r in paired_orderings({"a": 2.0, "b": 1.0}, runs,
        ...                                                      "acc")]
        [('a > b', 'reversed')]
    """
    rows = []
    names = [n for n in paper if n in results]
    for a, b in itertools.combinations(names, 2):
        if paper[a] == paper[b]:
            continue
        hi, lo = (a, b) if paper[a] > paper[b] else (b, a)
        c = compare_runs(results[hi], results[lo], key, name_a=hi, name_b=lo)
        rows.append({"pair": f"{hi} > {lo}", "paper_gap": paper[hi] - paper[lo],
                     "our_gap": c.mean, "half_width": c.half_width, "comparison": c,
                     "outcome": ("unresolved" if c.better is None else
                                 "kept" if c.better == hi else "reversed")})
    return rows


SUBCENTER_ROWS = ("clean, K=1", "noisy, K=1", "noisy, K=3", "noisy, K=10",
              "noisy, K=3, drop, K=1")
"""The rows of the TPAMI table that :func:`run_subcenter_table` trains (K=10 only if asked for)."""


def run_subcenter_table(seeds: list[int], *, spec_kwargs: dict, label_noise: dict,
              allpairs: tuple, train_set: tuple, ks: tuple[int, ...] = (1, 3, 10),
              drop_k: int = 3, threshold_deg: float = 75.0,
              fprs: tuple[float, ...] = (1e-4, 1e-3), n_boot: int = 200,
              progress: bool = True) -> dict:
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
            over all pairs (strict rule) with Wilson intervals, and on ``n_boot`` identity
            resamples of them (the same for every run) for :func:`compare_runs`.
        train_set: (uint8 images, noisy labels, noise codes) of the noisy training set, in
            item order (:func:`arclab.data.splits.noisy_training_set`).

    Returns:
        {row: {seed: {"tpr": {fpr: value}, "tpr_ci": {fpr: [lo, hi]}, "theta_y": final mean
        angle to the own class weight (degrees), "losses" and "target_angles" (per step), and
        per FPR a key such as "TPR@1e-3" with its value, "boot": {that key: (n_boot,) values
        on the resamples}}}} and, under the key ``"drop"``,
        {seed: {"keep", "stats", "quality" (:func:`~arclab.losses.subcenter.drop_quality`),
        "analysis" (arrays of :func:`~arclab.losses.subcenter.dominant_subcenters` for the
        ``drop_k`` model)}}.
    """
    images, labels, noise = train_set[0], np.asarray(train_set[1]), np.asarray(train_set[2])
    if drop_k not in ks:
        raise ValueError(f"drop_k ({drop_k}) must be one of ks {ks}")
    rows = ["clean, K=1", *[f"noisy, K={k}" for k in ks], f"noisy, K={drop_k}, drop, K=1"]
    out: dict = {r: {} for r in rows} | {"drop": {}}

    counts = identity_resamples(len(np.unique(allpairs[1])), n_boot, seed=0)
    names = {f"TPR@{f:.0e}".replace("e-0", "e-"): f for f in fprs}

    def score(run: dict) -> dict:
        feats = embed_images(run["model"], allpairs[0])
        r = tpr_at_fpr(feats, allpairs[1], list(fprs), progress=False)
        values, boot = score_features(feats, allpairs[1], fprs=names, counts=counts)
        return {"tpr": {f: r[f]["tpr"] for f in fprs},
                "tpr_ci": {f: list(r[f]["tpr_ci"]) for f in fprs},
                "theta_y": run["target_angles"][-1] if run["target_angles"] else None,
                "losses": run["losses"], "target_angles": run["target_angles"],
                **values, "boot": boot}

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
