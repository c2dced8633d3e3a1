"""arclab's continuous WIDER FACE-style average precision per difficulty subset, its average
over IoU 0.5:0.95, and the landmark NME. For the official WIDER numbers (its +1-pixel IoU,
1,000 thresholds, faceless images skipped, the .mat subsets) use :mod:`arclab.detection.wider`.

The WIDER evaluation rules, made continuous: detections of every image are taken in descending
score; each is compared with the face it overlaps most. If that IoU reaches the threshold and
the face is outside the subset being scored, the detection is *ignored* (neither true nor false
positive); if the face is in the subset and not yet found, it is a true positive; otherwise a
false positive. Precision and recall are then read at every score of the pooled, sorted
detections (the official code samples 1,000 thresholds) and AP is the area under the
monotone precision envelope (VOC all-point interpolation). Subsets: ``easy`` scores the easy
faces, ``medium`` easy + medium, ``hard`` every face (as WIDER's hard set contains the others).

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

__all__ = ["SUBSETS", "ap_iou_sweep", "ap_resamples", "average_precision", "landmark_nme",
           "match_detections", "precision_recall", "voc_ap"]

SUBSETS = {"easy": (0,), "medium": (0, 1), "hard": (0, 1, 2)}
"""Which difficulty labels (0 easy, 1 medium, 2 hard) each subset scores."""


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP: Σ (r_i − r_{i−1}) · max_{j ≥ i} p_j over the PR points
    (recall non-decreasing), with (0, ·) prepended.

    Example:
        >>> voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
        0.8333333333333333
    """
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def _check(detections: list, ground_truth: list, difficulty: list | None) -> None:
    if len(detections) != len(ground_truth) or (
            difficulty is not None and len(difficulty) != len(ground_truth)):
        raise ValueError(f"detections ({len(detections)}), ground_truth ({len(ground_truth)})"
                         f" and difficulty must have one entry per image")
    for i, (d, g) in enumerate(zip(detections, ground_truth)):
        d, g = np.asarray(d), np.asarray(g)
        if (d.size and (d.ndim != 2 or d.shape[1] != 5)) or (
                g.size and (g.ndim != 2 or g.shape[1] != 4)):
            raise ValueError(f"image {i}: detections must be (D, 5) [x1, y1, x2, y2, score] "
                             f"and ground truth (G, 4), got {d.shape} and {g.shape}")


def _classify(dets: np.ndarray, gt: np.ndarray, scored: np.ndarray, iou: float) -> np.ndarray:
    """Per detection (in the given order): 1 true positive, 0 false positive, −1 ignored."""
    out = np.zeros(len(dets), dtype=np.int64)
    if len(gt) == 0 or len(dets) == 0:
        return out
    overlaps = box_iou(torch.as_tensor(dets[:, :4], dtype=torch.float64),
                       torch.as_tensor(gt, dtype=torch.float64)).numpy()
    j = overlaps.argmax(axis=1)  # each detection's best face; a match needs IoU >= iou
    hit = overlaps[np.arange(len(dets)), j] >= iou
    out[hit & ~scored[j]] = -1  # on a face outside the subset: ignored
    counted = np.flatnonzero(hit & scored[j])
    _, first = np.unique(j[counted], return_index=True)
    out[counted[first]] = 1  # the first detection of each face; later ones stay 0 (duplicates)
    return out


def _pooled(detections: list, ground_truth: list, difficulty: list, subset: str, iou: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every counted detection in descending score (ties in image order): (scores, kinds
    1 TP / 0 FP, image index), and the number of ``subset`` faces of each image."""
    _check(detections, ground_truth, difficulty)
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {sorted(SUBSETS)}, got {subset!r}")
    scores, kinds, images, n_faces = [], [], [], []
    for i, (d, g, diff) in enumerate(zip(detections, ground_truth, difficulty)):
        d = np.asarray(d, dtype=np.float64).reshape(-1, 5)
        d = d[np.argsort(-d[:, 4], kind="stable")]
        g = np.asarray(g, dtype=np.float64).reshape(-1, 4)
        scored = np.isin(np.asarray(diff), SUBSETS[subset])
        n_faces.append(int(scored.sum()))
        scores.append(d[:, 4])
        kinds.append(_classify(d, g, scored, iou))
        images.append(np.full(len(d), i))
    s, k, im = np.concatenate(scores), np.concatenate(kinds), np.concatenate(images)
    order = np.argsort(-s, kind="stable")
    keep = k[order] >= 0
    return s[order][keep], k[order][keep], im[order][keep].astype(np.int64), np.array(n_faces)


def precision_recall(detections: list, ground_truth: list, difficulty: list, *,
                     subset: str = "hard", iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The PR curve of one subset under the WIDER rules (see the module docstring): recall
    and precision after each distinct score, in descending score; empty arrays when nothing
    counts.

    Raises:
        ValueError: a subset without faces or not in :data:`SUBSETS`; per-image lists of
            different lengths or detections not (D, 5).
    """
    s, k, _, n_faces = _pooled(detections, ground_truth, difficulty, subset, iou)
    if n_faces.sum() == 0:
        raise ValueError(f"subset {subset!r} has no faces")
    last = np.r_[s[1:] != s[:-1], True]  # read PR only after a whole group of equal scores
    tp = np.cumsum(k)[last]
    proposals = np.arange(1, len(k) + 1)[last]
    return tp / n_faces.sum(), tp / proposals


def ap_resamples(detections: list, ground_truth: list, difficulty: list, counts, *,
                 subset: str = "hard", iou: float = 0.5) -> np.ndarray:
    """AP of ``subset`` (WIDER rules, as :func:`average_precision`) on each resample of the
    images: replicate r holds image i ``counts[r, i]`` times, its faces and its detections
    alike (an image-level bootstrap, e.g. ``arclab.evaluation.paired.identity_resamples``
    over the scenes; reuse one ``counts`` for every model so the replicates are paired).
    A row of ones gives :func:`average_precision`'s AP.

    Shapes: counts (R, n_images) non-negative integers -> (R,); NaN where a replicate holds
    no face of the subset, 0 where it holds faces but no counted detection.

    Raises:
        ValueError: counts not (R, n_images) non-negative integers; the cases of
            :func:`average_precision`.

    Example:
        >>> dets = [[[0, 0, 10, 10, 0.9]], [[0, 0, 10, 10, 0.8]]]
        >>> gt, diff = [[[0, 0, 10, 10]], [[20, 20, 30, 30]]], [[0], [0]]
        >>> ap_resamples(dets, gt, diff, [[1, 1], [2, 0], [0, 2]]).tolist()
        [0.5, 1.0, 0.0]
    """
    c = np.asarray(counts)
    if c.ndim != 2 or c.shape[1] != len(ground_truth) or c.dtype.kind not in "iu" \
            or (c < 0).any():
        raise ValueError(f"counts must be (R, {len(ground_truth)}) non-negative integers (one "
                         f"column per image), got {c.dtype} {c.shape}")
    s, k, im, n_faces = _pooled(detections, ground_truth, difficulty, subset, iou)
    last = np.r_[s[1:] != s[:-1], True]
    out = np.full(len(c), np.nan)
    for r, cr in enumerate(c.astype(np.int64)):
        faces = int(cr @ n_faces)
        if faces == 0:
            continue
        w = cr[im]
        tp, proposals = np.cumsum(w * k)[last], np.cumsum(w)[last]
        seen = proposals > 0  # detections of images this replicate did not draw weigh 0
        out[r] = voc_ap(tp[seen] / faces, tp[seen] / proposals[seen]) if seen.any() else 0.0
    return out


def average_precision(detections: list, ground_truth: list, difficulty: list, *,
                      iou: float = 0.5, subsets: tuple[str, ...] = ("easy", "medium", "hard")
                      ) -> dict[str, float]:
    """WIDER-style AP of each subset (see the module docstring).

    Args:
        detections: per image, (D, 5) x1, y1, x2, y2, score (pixels or normalised: the same
            units as ``ground_truth``).
        ground_truth: per image, (G, 4) x1, y1, x2, y2. difficulty: per image, (G,) 0/1/2.
        iou: the IoU a detection needs to find a face.

    Returns: {subset: AP in [0, 1]}; a subset without faces gets NaN.

    Raises:
        ValueError: per-image lists of different lengths, detections not (D, 5), a subset
            not in :data:`SUBSETS`.
    """
    _check(detections, ground_truth, difficulty)
    out = {}
    for name in subsets:
        if not any(np.isin(np.asarray(d), SUBSETS[name]).any() for d in difficulty):
            out[name] = float("nan")
            continue
        recall, precision = precision_recall(detections, ground_truth, difficulty,
                                             subset=name, iou=iou)
        out[name] = voc_ap(recall, precision) if len(recall) else 0.0
    return out


def ap_iou_sweep(detections: list, ground_truth: list, difficulty: list | None = None, *,
                 subset: str = "hard") -> float:
    """Continuous AP of ``subset`` (:func:`average_precision`) averaged over IoU thresholds
    0.50, 0.55, …, 0.95: the RetinaFace slides' "mAP" column, measured our way. Not
    pycocotools' AP@[.5:.95], which interpolates at 101 recall points, keeps at most 100
    detections per image and has area ranges and crowd regions.

    Raises:
        ValueError: as :func:`average_precision`.
    """
    difficulty = difficulty if difficulty is not None else [
        np.zeros(len(np.asarray(g).reshape(-1, 4)), dtype=np.int64) for g in ground_truth]
    values = [average_precision(detections, ground_truth, difficulty, iou=t,
                                subsets=(subset,))[subset]
              for t in np.linspace(0.5, 0.95, 10)]
    return float(np.mean(values))


def match_detections(boxes: np.ndarray, gt: np.ndarray, *, iou: float = 0.5
                     ) -> list[tuple[int, int]]:
    """(detection, face) index pairs: detections in the given order (score order) each take
    the unmatched face they overlap most if that IoU reaches ``iou``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0 or len(gt) == 0:
        return []
    overlaps = box_iou(torch.as_tensor(boxes), torch.as_tensor(gt)).numpy()
    taken = np.zeros(len(gt), dtype=bool)
    pairs = []
    for k in range(len(boxes)):
        row = np.where(taken, -1.0, overlaps[k])
        j = int(np.argmax(row))
        if row[j] >= iou:
            taken[j] = True
            pairs.append((k, j))
    return pairs


def landmark_nme(pred: np.ndarray, gt: np.ndarray, boxes: np.ndarray) -> float:
    """Mean over faces and the 5 points of ‖p − g‖ / √(w·h) of the face's box.

    Shapes: pred, gt (F, 5, 2); boxes (F, 4) x1, y1, x2, y2 (same units).

    Raises:
        ValueError: pred, gt not (F, 5, 2) or boxes not (F, 4); no face, or a box without
            positive width and height.

    Example:
        >>> g = np.zeros((1, 5, 2)); b = np.array([[0, 0, 10, 40]])
        >>> landmark_nme(g + [3, 4], g, b)  # 5 px off on a 20 px face size
        0.25
    """
    pred, gt, boxes = (np.asarray(a, dtype=np.float64) for a in (pred, gt, boxes))
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[1:] != (5, 2) \
            or boxes.shape != (len(gt), 4):
        raise ValueError(f"pred and gt must be (F, 5, 2) and boxes (F, 4), got "
                         f"{pred.shape}, {gt.shape}, {boxes.shape}")
    size = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    if len(size) == 0 or not (size > 0).all():
        raise ValueError("boxes must have positive width and height (and F >= 1)")
    return float((np.linalg.norm(pred - gt, axis=2) / size[:, None]).mean())
