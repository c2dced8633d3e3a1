"""Detect → 5 landmarks → similarity alignment → embedding, and the weaker ways to get a crop.

A recognition model is trained on faces aligned to the ArcFace template; in use, the
landmarks come from a detector. :func:`face_crops` makes the four kinds of crop the "RetinaFace
improves ArcFace" comparison needs: aligned with given landmarks (ground truth or a
detector's), aligned with landmarks *guessed from the box* (a fixed layout inside the box,
:func:`fit_box_layout`, what a box-only detector can offer), or the box itself resized (no
alignment).

On top of the pipeline, what a face-analysis demo does: :func:`compare` (same person? at a
threshold chosen on a labelled protocol at a stated FPR, :func:`verification_threshold`;
its answers on labelled pairs counted genuine and impostor apart, :func:`pair_outcomes`),
:func:`enroll` a gallery, :func:`search` it with an image and :func:`search_video` with a
track (per-track aggregation). An image without a face gives a result that says so, not an
exception.

Taught in: notebooks/12_alignment_improves_arcface.ipynb
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from arclab.data.align import align_faces
from arclab.data.cache import FaceDataset, cache_dir
from arclab.detection.postprocess import detect
from arclab.evaluation import template_features, tpr_at_fpr
from arclab.models import embed_images
from arclab.train import train
from arclab.train.config import weights_key

__all__ = ["CROP_KINDS", "best_detections", "box_crops", "box_landmarks", "compare",
           "detect_align_embed", "enroll", "face_crops", "fit_box_layout", "pair_indices",
           "pair_outcomes", "search", "search_video", "train_on_crops",
           "verification_threshold"]

CROP_KINDS = ("ground_truth", "detector", "box_layout", "box")
"""Crop sources: aligned with ground-truth landmarks, with the detector's landmarks, with
landmarks placed in the detected box by a fixed layout, and the detected box resized."""


def fit_box_layout(boxes: Tensor, landmarks: Tensor) -> Tensor:
    """The mean position of each landmark relative to its face box: (5, 2) in box units
    ((x − x1) / w, (y − y1) / h), from (N, 4) boxes and (N, 5, 2) landmarks in pixels.

    Example:
        >>> fit_box_layout(torch.tensor([[0., 0., 10., 20.]]), torch.full((1, 5, 2), 5.))[0]
        tensor([0.5000, 0.2500])
    """
    boxes, landmarks = torch.as_tensor(boxes).float(), torch.as_tensor(landmarks).float()
    if boxes.ndim != 2 or boxes.shape[1] != 4 or landmarks.shape != (len(boxes), 5, 2) \
            or len(boxes) == 0:
        raise ValueError(f"boxes must be (N, 4) and landmarks (N, 5, 2) with N >= 1, got "
                         f"{tuple(boxes.shape)} and {tuple(landmarks.shape)}")
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
    return ((landmarks - boxes[:, None, :2]) / wh[:, None]).mean(0)


def box_landmarks(boxes: Tensor, layout: Tensor) -> Tensor:
    """Landmarks (N, 5, 2) pixels placed in (N, 4) boxes by a (5, 2) layout in box units."""
    boxes = torch.as_tensor(boxes).float()
    wh = boxes[:, 2:] - boxes[:, :2]
    return boxes[:, None, :2] + layout[None].to(boxes) * wh[:, None]


def box_crops(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """The boxes (N, 4) pixels of images (N, C, H, W) resized to size × size (no alignment;
    a box with another aspect ratio is stretched)."""
    from torchvision.ops import roi_align

    rois = torch.cat([torch.arange(len(boxes), dtype=images.dtype)[:, None],
                      torch.as_tensor(boxes).to(images)], dim=1)
    return roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=0,
                     aligned=True)


def best_detections(detections: list[dict], image_size: tuple[int, int]
                    ) -> dict[str, Tensor]:
    """The highest-scoring detection of each image (one face per image): {"boxes": (N, 4),
    "landmarks": (N, 5, 2), "scores": (N,), "found": (N,) bool}. An image without any
    detection gets the whole image as its box, score 0 and found False."""
    h, w = image_size
    boxes, lms, scores, found = [], [], [], []
    for d in detections:
        if len(d["scores"]):
            i = int(torch.argmax(d["scores"]))
            boxes.append(d["boxes"][i].cpu()), lms.append(d["landmarks"][i].cpu())
            scores.append(float(d["scores"][i])), found.append(True)
        else:
            whole = torch.tensor([0.0, 0.0, float(w), float(h)])
            boxes.append(whole), lms.append(box_landmarks(whole[None], _CENTRE)[0])
            scores.append(0.0), found.append(False)
    return {"boxes": torch.stack(boxes), "landmarks": torch.stack(lms),
            "scores": torch.tensor(scores), "found": torch.tensor(found)}


_CENTRE = torch.tensor([[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]])


@torch.no_grad()
def face_crops(images: np.ndarray | Tensor, kind: str, *, size: int,
               landmarks: Tensor | None = None, boxes: Tensor | None = None,
               layout: Tensor | None = None, batch_size: int = 256) -> np.ndarray:
    """Crops of one face per image, uint8 (N, size, size, 3), as recognition models eat them.

    Args:
        images: uint8 (N, H, W, 3) or float (N, 3, H, W) in [0, 1].
        kind: one of :data:`CROP_KINDS`: ``ground_truth`` and ``detector`` align with the
            given ``landmarks`` (N, 5, 2) pixels; ``box_layout`` aligns with
            :func:`box_landmarks` of ``boxes`` and ``layout``; ``box`` resizes ``boxes``.
    """
    if kind not in CROP_KINDS:
        raise ValueError(f"kind must be one of {CROP_KINDS}, got {kind!r}")
    if kind in ("ground_truth", "detector") and landmarks is None:
        raise ValueError(f"kind {kind!r} needs landmarks (N, 5, 2)")
    if kind in ("box_layout", "box") and boxes is None:
        raise ValueError(f"kind {kind!r} needs boxes (N, 4)")
    if kind == "box_layout":
        if layout is None:
            raise ValueError("kind 'box_layout' needs a layout (5, 2), see fit_box_layout")
        landmarks = box_landmarks(boxes, layout)
    n = len(images)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for s in range(0, n, batch_size):
        batch = images[s:s + batch_size]
        x = torch.from_numpy(np.array(batch)).permute(0, 3, 1, 2).float() / 255 \
            if isinstance(batch, np.ndarray) else batch.float()
        if kind == "box":
            crop = box_crops(x, torch.as_tensor(boxes[s:s + batch_size]).float(), size)
        else:
            crop = align_faces(x, torch.as_tensor(landmarks[s:s + batch_size]).float(), size)
        out[s:s + len(x)] = (crop.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    return out


def detect_align_embed(detector: nn.Module, model: nn.Module, images: np.ndarray, *,
                       size: int, score_threshold: float = 0.5, batch_size: int = 32,
                       flip: bool = True) -> dict[str, Tensor | np.ndarray]:
    """The whole pipeline on uint8 (N, H, W, 3) images holding one face each: detect
    (:func:`arclab.detection.postprocess.detect`), keep the best face, align it with its
    detected landmarks to size × size, embed it (:func:`arclab.models.embed_images`).

    Returns: {"features": (N, D) float32, "crops": uint8 (N, size, size, 3), and the
    :func:`best_detections` keys "boxes", "landmarks", "scores", "found"}.
    """
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3 \
            or images.dtype != np.uint8:
        raise ValueError(f"images must be a uint8 (N, H, W, 3) array, got "
                         f"{getattr(images, 'dtype', type(images).__name__)} "
                         f"{getattr(images, 'shape', '')}")
    dets: list[dict] = []
    for s in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[s:s + batch_size]))  # a copy: memmaps are read-only
        dets += detect(detector, x.permute(0, 3, 1, 2).float() / 255,
                       score_threshold=score_threshold)
    best = best_detections(dets, images.shape[1:3])
    crops = face_crops(images, "detector", size=size, landmarks=best["landmarks"])
    return {"features": embed_images(model, crops, flip=flip), "crops": crops, **best}


def pair_indices(ids: np.ndarray, n_pairs: int, *, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_pairs`` positive and ``n_pairs`` negative index pairs (i < j never repeated within
    a kind) drawn from labelled items, for 10-fold verification: (left, right, issame).

    Positives and negatives alternate (each kind sorted by index), so every contiguous fold of
    :func:`arclab.evaluation.verification_accuracy_10fold` holds as many of one as of the other,
    as LFW's folds do; with all positives first, half the folds would hold positives only and
    their threshold would be chosen on a skewed mix.

    Example:
        >>> left, right, same = pair_indices(np.repeat(np.arange(4), 3), 5)
        >>> len(left), int(same.sum()), bool((same == (np.repeat(np.arange(4), 3)[left]
        ...                                           == np.repeat(np.arange(4), 3)[right])).all())
        (10, 5, True)
    """
    ids = np.asarray(ids)
    rng = np.random.default_rng(seed)
    pos, neg = set(), set()
    n = len(ids)
    if len(np.unique(ids)) < 2 or np.bincount(np.unique(ids, return_inverse=True)[1]).max() < 2:
        raise ValueError("ids must hold at least two identities and one with two items")
    while len(pos) < n_pairs or len(neg) < n_pairs:
        i, j = (int(v) for v in rng.integers(0, n, 2))
        if i == j:
            continue
        pair = (min(i, j), max(i, j))
        if ids[i] == ids[j] and len(pos) < n_pairs:
            pos.add(pair)
        elif ids[i] != ids[j] and len(neg) < n_pairs:
            neg.add(pair)
    pairs = [p for both in zip(sorted(pos), sorted(neg)) for p in both]
    left, right = (np.array(p) for p in zip(*pairs))
    return left, right, np.tile([True, False], n_pairs)


def train_on_crops(cfg, crops: np.ndarray, labels: np.ndarray, *, tag: str,
                   progress: bool = True) -> dict:
    """Train a recognition model (:func:`arclab.train.train`, config ``cfg``) on uint8 crops
    (N, S, S, 3) with labels, cached under ``$ARCLAB_CACHE/runs/crops-<tag>-<hash>``, the hash
    covering the config, the crops and the labels. Returns ``train``'s dict plus "out_dir"."""
    import hashlib
    import json

    labels = np.asarray(labels)
    h = hashlib.sha256(json.dumps(weights_key(cfg.to_dict()), sort_keys=True).encode())
    h.update(np.ascontiguousarray(crops).tobytes())
    h.update(labels.astype(np.int64).tobytes())
    out = cache_dir() / "runs" / f"crops-{tag}-{h.hexdigest()[:16]}"
    n_classes = int(labels.max()) + 1
    result = train(cfg, FaceDataset(crops, labels, flip=True), n_classes, out,
                   progress=progress)
    return {**result, "out_dir": out}


def verification_threshold(features: Tensor | np.ndarray, ids, fpr: float) -> dict:
    """The cosine threshold of a verifier at a stated FPR, chosen on a labelled protocol: every
    pair of ``features`` (N, D) with identities ``ids`` (N,), strict rule (the achieved FPR
    never exceeds ``fpr``). Returns {"threshold", "fpr" (target), "fpr_achieved", "tpr",
    "tpr_ci"}: what :func:`compare` and :func:`search` then accept above."""
    r = tpr_at_fpr(features, ids, [fpr], progress=False)[fpr]
    return {"threshold": float(r["threshold"]), "fpr": float(fpr),
            "fpr_achieved": float(r["fpr_achieved"]), "tpr": float(r["tpr"]),
            "tpr_ci": tuple(r["tpr_ci"])}


def _one_image(image, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3 \
            or image.dtype != np.uint8:
        raise ValueError(f"{name} must be a uint8 (H, W, 3) image, got "
                         f"{getattr(image, 'dtype', type(image).__name__)} "
                         f"{getattr(image, 'shape', '')}")
    return image


def _embed_each(detector: nn.Module, model: nn.Module, images: list[np.ndarray], size: int,
                score_threshold: float) -> tuple[Tensor, np.ndarray]:
    """Features (N, D) and found (N,) for images of any sizes (one pipeline call per size)."""
    feats: list[Tensor | None] = [None] * len(images)
    found = np.zeros(len(images), dtype=bool)
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        by_shape.setdefault(im.shape, []).append(i)
    for idx in by_shape.values():
        out = detect_align_embed(detector, model, np.stack([images[i] for i in idx]), size=size,
                                 score_threshold=score_threshold)
        for k, i in enumerate(idx):
            feats[i], found[i] = out["features"][k], bool(out["found"][k])
    return torch.stack(feats), found


def compare(detector: nn.Module, model: nn.Module, image_a: np.ndarray, image_b: np.ndarray,
            *, threshold: float, size: int, score_threshold: float = 0.5) -> dict:
    """Is it the same person? Detect the best face in each uint8 (H, W, 3) image, align,
    embed, and compare the cosine with ``threshold`` (from :func:`verification_threshold`).

    Returns:
        {"match": bool, "score": cosine or None, "found": [bool, bool], "reason": str}; an
        image without a face gives match False, score None and a reason naming it.
    """
    images = [_one_image(image_a, "image_a"), _one_image(image_b, "image_b")]
    feats, found = _embed_each(detector, model, images, size, score_threshold)
    if not found.all():
        missing = " and ".join(n for n, f in zip(("image_a", "image_b"), found) if not f)
        return {"match": False, "score": None, "found": found.tolist(),
                "reason": f"no face found in {missing}"}
    score = float(torch.nn.functional.cosine_similarity(feats[:1], feats[1:]).item())
    return {"match": score > threshold, "score": score, "found": [True, True],
            "reason": f"cosine {score:.3f} {'>' if score > threshold else '<='} threshold "
                      f"{threshold:.3f}"}


def pair_outcomes(same, compared: list[dict]) -> dict:
    """How a verifier's answers on labelled pairs split, genuine and impostor pairs counted
    apart: a majority of right answers over all pairs can hide a verifier that answers
    "different" to nearly every genuine pair.

    Args:
        same: (P,) bools, True where the pair shows one person.
        compared: P results of :func:`compare` (``"match"`` and ``"score"``); a pair in which
            a face was not found (score None) counts as answered "different".

    Returns:
        {"genuine": number of genuine pairs, "genuine_accepted": those answered "same",
        "impostor": number of impostor pairs, "impostor_rejected": those answered
        "different", "genuine_mean" and "impostor_mean": mean cosine over the pairs with a
        score, "impostor_max": the highest impostor cosine (each None without a scored
        pair), "genuine_below_impostor_max": genuine pairs whose cosine is at or below the
        highest impostor's, or which have no score (0 without a scored impostor pair)}.

    Raises:
        ValueError: ``same`` and ``compared`` of different lengths, or a result without
            "match" and "score".

    Example:
        >>> r = pair_outcomes([True, True, False, False],
        ...                   [{"match": True, "score": 0.9}, {"match": False, "score": 0.2},
        ...                    {"match": False, "score": 0.3}, {"match": False, "score": None}])
        >>> r["genuine_accepted"], r["impostor_rejected"], r["genuine_below_impostor_max"]
        (1, 2, 1)
    """
    same = [bool(v) for v in np.asarray(same, dtype=bool).reshape(-1)]
    if len(same) != len(compared):
        raise ValueError(f"same ({len(same)}) and compared ({len(compared)}) must have one "
                         "entry per pair")
    if any(not isinstance(r, dict) or not {"match", "score"} <= r.keys() for r in compared):
        raise ValueError("each result in compared needs 'match' and 'score' (from compare)")
    gen = [r for r, s in zip(compared, same) if s]
    imp = [r for r, s in zip(compared, same) if not s]
    g_scores = [r["score"] for r in gen if r["score"] is not None]
    i_scores = [r["score"] for r in imp if r["score"] is not None]
    i_max = max(i_scores) if i_scores else None
    below = 0 if i_max is None else sum(r["score"] is None or r["score"] <= i_max for r in gen)
    return {"genuine": len(gen), "genuine_accepted": sum(bool(r["match"]) for r in gen),
            "impostor": len(imp), "impostor_rejected": sum(not r["match"] for r in imp),
            "genuine_mean": float(np.mean(g_scores)) if g_scores else None,
            "impostor_mean": float(np.mean(i_scores)) if i_scores else None,
            "impostor_max": i_max, "genuine_below_impostor_max": below}


def enroll(detector: nn.Module, model: nn.Module, images: list[np.ndarray] | np.ndarray,
           identities, *, size: int, score_threshold: float = 0.5) -> dict:
    """A gallery: one feature per identity, the mean of the normalised features of its images
    in which a face was found. Returns {"identities": (G,) ids, "features": (G, D),
    "skipped": indices of images without a face}. Raises ValueError if an identity has no
    usable image."""
    images = [_one_image(im, f"images[{i}]") for i, im in enumerate(images)]
    ids = np.asarray(identities)
    if ids.shape != (len(images),):
        raise ValueError(f"identities must give one id per image ({len(images)}), got shape "
                         f"{ids.shape}")
    feats, found = _embed_each(detector, model, images, size, score_threshold)
    lost = sorted(set(ids.tolist()) - set(ids[found].tolist()))
    if lost:
        raise ValueError(f"no face found in any image of identities {lost[:10]}")
    gid, gfeat = template_features(feats[torch.from_numpy(found)], ids[found])
    return {"identities": gid.numpy(), "features": gfeat,
            "skipped": np.flatnonzero(~found).tolist()}


def _rank(query: Tensor, gallery: dict, threshold: float | None, top_k: int) -> dict:
    scores = torch.nn.functional.normalize(gallery["features"], dim=1) @ \
        torch.nn.functional.normalize(query, dim=0)
    order = torch.argsort(scores, descending=True)[:top_k]
    ranking = [(int(gallery["identities"][i]), float(scores[i])) for i in order]
    best = ranking[0]
    accepted = threshold is None or best[1] > threshold
    return {"found": True, "ranking": ranking, "match": best[0] if accepted else None}


def search(detector: nn.Module, model: nn.Module, image: np.ndarray, gallery: dict, *,
           size: int, threshold: float | None = None, top_k: int = 5,
           score_threshold: float = 0.5) -> dict:
    """Who is it? Rank the gallery (:func:`enroll`) by cosine to the face in ``image``.

    Returns:
        {"found": bool, "ranking": [(identity, cosine), ...] best first (at most ``top_k``),
        "match": the best identity if its cosine exceeds ``threshold`` (always when
        ``threshold`` is None), else None}; no face: found False, an empty ranking, match None.
    """
    feats, found = _embed_each(detector, model, [_one_image(image, "image")], size,
                               score_threshold)
    if not found[0]:
        return {"found": False, "ranking": [], "match": None}
    return _rank(feats[0], gallery, threshold, top_k)


def search_video(detector: nn.Module, model: nn.Module, frames: np.ndarray, gallery: dict, *,
                 size: int, threshold: float | None = None, top_k: int = 5,
                 weighting: str = "norm3", score_threshold: float = 0.5) -> dict:
    """:func:`search` for a track: frames uint8 (T, H, W, 3) of one person, each detected,
    aligned and embedded, aggregated into one feature (``weighting`` as in
    :func:`arclab.evaluation.template_features`: "mean" or "norm3", the cube of the feature
    norm as a quality weight) over the frames where a face was found. Adds "frames_used"."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 (T, H, W, 3) array, got "
                         f"{getattr(frames, 'dtype', type(frames).__name__)} "
                         f"{getattr(frames, 'shape', '')}")
    out = detect_align_embed(detector, model, frames, size=size,
                             score_threshold=score_threshold)
    found = out["found"].numpy().astype(bool)
    if not found.any():
        return {"found": False, "ranking": [], "match": None, "frames_used": 0}
    raw = out["features"][torch.from_numpy(found)]
    _, track = template_features(raw, np.zeros(len(raw), dtype=np.int64), weighting=weighting)
    return _rank(track[0], gallery, threshold, top_k) | {"frames_used": int(found.sum())}
