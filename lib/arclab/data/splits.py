"""SynthFaces protocols: which (identity, index, nuisance overrides) make up a training set,
verification pairs, an all-pairs test set, video tracks; and exact label-noise injection.

A protocol holds *items*, not pixels: {"identity": (N,), "index": (N,), "overrides": {name:
(N,)}} of int64 / float32 arrays, rendered on demand by :func:`arclab.data.cache.render_items`.
Identity ranges are disjoint: training identities start at 0, evaluation identities at
``EVAL_OFFSET`` and open-set outliers at ``OUTLIER_OFFSET``, so no test face was trained on.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import math
import numbers
from dataclasses import replace

import numpy as np

from arclab.data.params import SynthConfig

__all__ = ["EVAL_OFFSET", "OUTLIER_OFFSET", "PROTOCOLS", "agedb_pairs", "all_pairs_set",
           "cfp_fp_pairs", "identity_items", "inject_label_noise", "lfw_pairs", "make_protocol",
           "noisy_training_set", "training_set", "verification_pairs", "video_tracks"]

EVAL_OFFSET = 1_000_000
OUTLIER_OFFSET = 2_000_000


def contiguous_folds(n: int, n_folds: int = 10) -> np.ndarray:
    """The fold (int64, shape (n,)) of each of ``n`` pairs in their order, as
    :func:`arclab.evaluation.verification_accuracy_10fold` splits them: contiguous blocks, the first
    ``n mod n_folds`` one pair longer (``np.array_split``, insightface's unshuffled KFold).

    Example:
        >>> contiguous_folds(7, 3).tolist()
        [0, 0, 0, 1, 1, 2, 2]
    """
    return np.concatenate([np.full(len(block), k, dtype=np.int64) for k, block in
                           enumerate(np.array_split(np.arange(n), n_folds))])


def _positive(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _items(identity, index, **overrides) -> dict:
    return {"identity": np.asarray(identity, dtype=np.int64),
            "index": np.asarray(index, dtype=np.int64),
            "overrides": {k: np.asarray(v, dtype=np.float32) for k, v in overrides.items()}}


def identity_items(identities, n_per_identity: int, first_index: int = 0) -> dict:
    """Items (for ``render_items`` / ``cached_render``) of the given identities, each with
    images ``first_index`` .. ``first_index + n_per_identity − 1``; a large ``first_index``
    gives images of training identities that no training set here contains.

    Raises:
        ValueError: identities not a non-empty 1-D list of integers >= 0; n_per_identity not
            an integer >= 1; first_index not an integer >= 0.

    Example:
        >>> identity_items([3, 7], 2, first_index=100)["index"].tolist()
        [100, 101, 100, 101]
    """
    ids = np.asarray(identities, dtype=np.int64)
    if ids.ndim != 1 or ids.size == 0 or ids.min() < 0:
        raise ValueError("identities must be a non-empty 1-D list of non-negative integers")
    m = _positive("n_per_identity", n_per_identity)
    start = _positive("first_index", first_index, 0)
    return _items(np.repeat(ids, m), np.tile(np.arange(start, start + m), len(ids)))


def training_set(cfg: SynthConfig, n_identities: int, n_per_identity: int) -> dict:
    """N identities × M images; ``label`` equals ``identity`` (0 .. N−1).

    Raises:
        ValueError: n_identities or n_per_identity not an integer >= 1.

    Example:
        >>> t = training_set(SynthConfig(), 3, 2)
        >>> t["items"]["identity"].tolist(), t["label"].tolist()
        ([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2])
    """
    n, m = _positive("n_identities", n_identities), _positive("n_per_identity", n_per_identity)
    ids = np.repeat(np.arange(n), m)
    return {"config": cfg, "items": _items(ids, np.tile(np.arange(m), n)), "label": ids.copy()}


def _pairs(rng, n_identities: int, n_pairs: int, offset: int):
    """Half positive, half negative pairs of evaluation identities: (id_a, id_b, issame)."""
    n_pos = n_pairs // 2
    a = rng.integers(0, n_identities, n_pairs) + offset
    b = a.copy()
    shift = rng.integers(1, n_identities, n_pairs - n_pos)
    b[n_pos:] = (a[n_pos:] - offset + shift) % n_identities + offset
    issame = np.arange(n_pairs) < n_pos
    order = rng.permutation(n_pairs)
    return a[order], b[order], issame[order]


def verification_pairs(cfg: SynthConfig, n_identities: int = 500, n_pairs: int = 6000,
                       n_folds: int = 10) -> dict:
    """Pairs of evaluation identities under ``cfg`` as it is: half positive in every fold.

    Returns {"config", "left", "right" (items), "issame" (P,) bool, "fold" (P,) int}.

    Raises:
        ValueError: n_identities not an integer >= 2; n_folds not an integer >= 1; n_pairs
            not an integer >= 2·n_folds.
    """
    n_ids = _positive("n_identities", n_identities, 2)
    folds = _positive("n_folds", n_folds)
    per = _positive("n_pairs", n_pairs, 2 * folds) // folds
    rng = np.random.default_rng([cfg.seed, 11])
    a, b, same = zip(*(_pairs(rng, n_ids, per, EVAL_OFFSET) for _ in range(folds)))
    n = per * folds
    return {"config": cfg, "left": _items(np.concatenate(a), np.arange(n)),
            "right": _items(np.concatenate(b), np.arange(n) + n),
            "issame": np.concatenate(same), "fold": contiguous_folds(n, folds)}


def lfw_pairs(cfg: SynthConfig, n_identities: int = 500, pairs_per_fold: int = 600,
              n_folds: int = 10) -> dict:
    """LFW-like 10-fold pairs: mostly frontal (yaw spread × 0.4, pitch × 0.5), half positive
    per fold.

    Raises:
        ValueError: pairs_per_fold not an integer >= 2; the other counts as
            :func:`verification_pairs`.
    """
    frontal = replace(cfg, yaw_deg=cfg.yaw_deg * 0.4, pitch_deg=cfg.pitch_deg * 0.5)
    per = _positive("pairs_per_fold", pairs_per_fold, 2)
    return verification_pairs(frontal, n_identities, per * n_folds, n_folds)


def cfp_fp_pairs(cfg: SynthConfig, n_identities: int = 500, n_pairs: int = 1000,
                 profile_yaw_deg: tuple[float, float] = (55.0, 80.0)) -> dict:
    """CFP-FP-like pairs: a frontal image (|yaw| ≤ 5°) against a profile (|yaw| in
    ``profile_yaw_deg``, either side), 10 folds.

    Raises:
        ValueError: n_identities not an integer >= 2; n_pairs not an integer >= 20;
            profile_yaw_deg not two finite numbers low <= high.
    """
    n_ids, n = _positive("n_identities", n_identities, 2), _positive("n_pairs", n_pairs, 20)
    rng = np.random.default_rng([cfg.seed, 12])
    a, b, same = _pairs(rng, n_ids, n, EVAL_OFFSET)
    if len(profile_yaw_deg) != 2 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
            for v in profile_yaw_deg) or profile_yaw_deg[0] > profile_yaw_deg[1]:
        raise ValueError(f"profile_yaw_deg must be (low, high) finite degrees with low <= "
                         f"high, got {profile_yaw_deg!r}")
    lo, hi = profile_yaw_deg
    profile = rng.uniform(lo, hi, n) * rng.choice([-1.0, 1.0], n)
    return {"config": cfg, "issame": same, "fold": contiguous_folds(n),
            "left": _items(a, np.arange(n), yaw=rng.uniform(-5, 5, n)),
            "right": _items(b, np.arange(n) + n, yaw=profile)}


def agedb_pairs(cfg: SynthConfig, n_identities: int = 500, n_pairs: int = 1000,
                min_gap: float = 0.5) -> dict:
    """AgeDB-like pairs with a large age gap: ages (0 young .. 1 old) at least ``min_gap``
    apart, 10 folds.

    Raises:
        ValueError: n_identities not an integer >= 2; n_pairs not an integer >= 20; min_gap
            not a number in (0, 1).
    """
    n_ids, n = _positive("n_identities", n_identities, 2), _positive("n_pairs", n_pairs, 20)
    if isinstance(min_gap, bool) or not isinstance(min_gap, numbers.Real) \
            or not 0 < min_gap < 1:
        raise ValueError(f"min_gap must be in (0, 1), got {min_gap!r}")
    rng = np.random.default_rng([cfg.seed, 13])
    a, b, same = _pairs(rng, n_ids, n, EVAL_OFFSET)
    young = rng.uniform(0, 1 - min_gap, n)
    old = young + min_gap + rng.random(n) * (1 - min_gap - young)
    swap = rng.random(n) < 0.5
    left, right = np.where(swap, old, young), np.where(swap, young, old)
    return {"config": cfg, "issame": same, "fold": contiguous_folds(n),
            "left": _items(a, np.arange(n), age=left), "right": _items(b, np.arange(n) + n,
                                                                     age=right)}


def all_pairs_set(cfg: SynthConfig, n_identities: int, n_per_identity: int) -> dict:
    """An all-pairs 1:1 test set of evaluation identities: every unordered pair is scored.

    Raises:
        ValueError: n_identities not an integer >= 2; n_per_identity not an integer >= 1.

    Example:
        >>> s = all_pairs_set(SynthConfig(), 4, 3)
        >>> s["n_positive_pairs"], s["n_negative_pairs"]
        (12, 54)
    """
    n, m = _positive("n_identities", n_identities, 2), _positive("n_per_identity",
                                                                 n_per_identity)
    ids = np.repeat(np.arange(n), m) + EVAL_OFFSET
    total = n * m * (n * m - 1) // 2
    pos = n * m * (m - 1) // 2
    return {"config": cfg, "items": _items(ids, np.tile(np.arange(m), n)),
            "n_positive_pairs": pos, "n_negative_pairs": total - pos}


def video_tracks(cfg: SynthConfig, n_tracks: int, n_frames: int,
                 n_identities: int | None = None) -> dict:
    """Video tracks: one evaluation identity per track (drawn from ``n_identities``, default
    10 × n_tracks, so most identities have one track), yaw sweeping smoothly over a random
    arc, blur rising and falling (per-frame quality), ``track`` (N,) says which track.

    Raises:
        ValueError: n_tracks or n_identities not an integer >= 1; n_frames not an
            integer >= 2.
    """
    t, f = _positive("n_tracks", n_tracks), _positive("n_frames", n_frames, 2)
    pool = 10 * t if n_identities is None else _positive("n_identities", n_identities)
    rng = np.random.default_rng([cfg.seed, 14])
    ids = rng.integers(0, pool, t) + EVAL_OFFSET
    phase = np.linspace(0, 1, f)
    start, span = rng.uniform(-60, 20, t), rng.uniform(20, 60, t)
    yaw = start[:, None] + span[:, None] * phase[None]
    blur = cfg.blur_px * 2 * np.abs(np.sin(np.pi * (phase[None] + rng.random((t, 1)))))
    return {"config": cfg, "track": np.repeat(np.arange(t), f),
            "items": _items(np.repeat(ids, f), np.tile(np.arange(f), t) + 10_000 * np.repeat(
                np.arange(t), f), yaw=yaw.ravel(), blur=blur.ravel())}


def inject_label_noise(labels, *, closed_rate: float = 0.0, open_rate: float = 0.0,
                       n_classes: int | None = None, seed: int = 0) -> dict:
    """Corrupt exactly round(rate·N) labels of each kind, keeping the ground truth.

    Closed-set flips keep the image and give it another training class's label; open-set
    outliers keep the label and replace the image by one of an identity outside the training
    set (``OUTLIER_OFFSET`` + k). Returns {"label": noisy labels, "identity": whose face each
    image shows, "noise": 0 clean, 1 closed-set flip, 2 open-set outlier}.

    Raises:
        ValueError: labels not a non-empty 1-D array of integers >= 0; a rate not a number in
            [0, 1], or the two summing above 1; n_classes not an integer (>= 2 for
            closed-set flips).

    Example:
        >>> out = inject_label_noise(np.repeat(np.arange(10), 10), closed_rate=0.1,
        ...                          open_rate=0.2)
        >>> np.bincount(out["noise"]).tolist()
        [70, 10, 20]
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0 or labels.min() < 0:
        raise ValueError("labels must be a non-empty 1-D array of non-negative integers")
    for name, rate in (("closed_rate", closed_rate), ("open_rate", open_rate)):
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {rate!r}")
    if closed_rate + open_rate > 1:
        raise ValueError(f"closed_rate + open_rate must be <= 1, got {closed_rate + open_rate}")
    n_classes = int(labels.max()) + 1 if n_classes is None else _positive("n_classes",
                                                                          n_classes)
    if n_classes < 2 and closed_rate > 0:
        raise ValueError("n_classes must be >= 2 for closed-set flips")
    rng = np.random.default_rng([seed, 21])
    order = rng.permutation(len(labels))
    n_closed, n_open = round(closed_rate * len(labels)), round(open_rate * len(labels))
    closed, opened = order[:n_closed], order[n_closed:n_closed + n_open]
    noisy, identity = labels.copy(), labels.copy()
    noise = np.zeros(len(labels), dtype=np.int64)
    noisy[closed] = (labels[closed] + rng.integers(1, max(n_classes, 2), n_closed)) % n_classes
    identity[opened] = OUTLIER_OFFSET + np.arange(n_open)
    noise[closed], noise[opened] = 1, 2
    return {"label": noisy, "identity": identity, "noise": noise}


def noisy_training_set(cfg: SynthConfig, n_identities: int, n_per_identity: int, *,
                       closed_rate: float = 0.0, open_rate: float = 0.0,
                       seed: int = 0) -> dict:
    """:func:`training_set` with label noise injected by :func:`inject_label_noise`: the items
    render the face each image really shows (an outlier identity for open-set noise), ``label``
    is the noisy training label; also ``clean_label`` (the label before corruption) and
    ``noise`` (0 clean, 1 closed-set flip, 2 open-set outlier).

    Raises:
        ValueError: as :func:`training_set` and :func:`inject_label_noise`.

    Example:
        >>> t = noisy_training_set(SynthConfig(), 10, 10, closed_rate=0.1, open_rate=0.2)
        >>> np.bincount(t["noise"]).tolist(), int((t["label"] != t["clean_label"]).sum())
        ([70, 10, 20], 10)
    """
    t = training_set(cfg, n_identities, n_per_identity)
    noise = inject_label_noise(t["label"], closed_rate=closed_rate, open_rate=open_rate,
                               n_classes=n_identities, seed=seed)
    items = _items(noise["identity"], t["items"]["index"])
    return {"config": cfg, "items": items, "label": noise["label"],
            "clean_label": t["label"], "noise": noise["noise"]}


PROTOCOLS = {"lfw": lfw_pairs, "cfp_fp": cfp_fp_pairs, "agedb": agedb_pairs}
"""The verification pair protocols by name."""


def make_protocol(name: str, cfg: SynthConfig, **kwargs) -> dict:
    """A verification protocol by name: ``lfw``, ``cfp_fp`` or ``agedb``.

    Raises:
        ValueError: unknown name (the message lists the valid ones); keyword arguments the
            protocol's function refuses (as :func:`lfw_pairs`, :func:`cfp_fp_pairs`,
            :func:`agedb_pairs`).
    """
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name](cfg, **kwargs)
