"""WIDER FACE evaluation as the official script computes it: AP of the easy, medium and hard
settings from the ground-truth ``.mat`` files and per-image prediction ``.txt`` files.

The official rules (the Python port shipped with RetinaFace ports, ``widerface_evaluate/
evaluation.py``), reproduced number for number:

1. Scores are min-max normalised over *every* prediction given (images of any event, with or
   without faces), with the range stretched to reach 0 and 1: ``hi = max(0, max score)``,
   ``lo = min(1, min score)``, ``s' = (s - lo) / (hi - lo)``.
2. Per image, detections are taken in *file order* (detectors write them in descending score;
   the script does not sort). Each is compared with the face it overlaps most, IoU with the
   +1-pixel convention on ``x y w h`` boxes (corners ``x, x + w``, widths ``w + 1``). If that IoU
   reaches 0.5 and the face is outside the setting's ``gt_list``, the detection is ignored; if
   the face is in the list and not found yet, it is found; otherwise it is a false positive.
3. Images whose ground truth has no box, or with no detection, are skipped; the setting's
   faces of every image still count in the recall's denominator.
4. Precision and recall are read at 1,000 thresholds ``1 - (t + 1) / 1000``: at each, the
   detections of an image up to the last one scoring at least the threshold. AP is the VOC
   all-point area under the precision envelope.

Differences to arclab's continuous AP (:func:`arclab.detection.metrics.average_precision`):

- images without faces: skipped here; there every detection on them is a false positive;
- IoU: +1 pixel here (a 10 x 10 box is 11 x 11 pixels, which lifts the IoU of small boxes);
  continuous corners ``x1 y1 x2 y2`` there;
- settings: the ``.mat`` index lists here (faces in no list are ignored everywhere); difficulty
  labels 0/1/2 there;
- scores: normalised, and read at 1,000 fixed thresholds here (detections whose normalised
  scores fall between two thresholds join the PR curve together, so AP depends on the score
  scale); PR at every distinct score there, invariant to any increasing map of the scores;
- order: file order here (an unsorted file changes AP); sorted by score there.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from arclab.detection.metrics import voc_ap

__all__ = ["MAT_FILES", "SETTINGS", "THRESHOLDS", "WiderImage", "read_wider_ground_truth",
           "read_wider_predictions", "wider_official_ap", "wider_official_pr",
           "write_wider_predictions"]

SETTINGS = ("easy", "medium", "hard")
THRESHOLDS = 1000
"""Number of score thresholds the official script reads the PR curve at."""
MAT_FILES = {"boxes": "wider_face_val.mat", "easy": "wider_easy_val.mat",
             "medium": "wider_medium_val.mat", "hard": "wider_hard_val.mat"}


@dataclass(frozen=True, eq=False)
class WiderImage:
    """One image of the ground truth: ``boxes`` (G, 4) float64 x, y, w, h in pixels; ``keep``
    maps each setting to the 0-based indices (into ``boxes``) of the faces it scores."""

    event: str
    name: str
    boxes: np.ndarray
    keep: dict[str, np.ndarray]


def _load(path: Path, fields: tuple[str, ...]) -> dict:
    if not path.is_file():
        raise ValueError(f"gt_dir must hold {path.name}, got no file {str(path)!r}")
    try:  # loadmat builds arrays only; hostile bytes raise many exception types
        mat = scipy.io.loadmat(path)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable MATLAB v5 file ({type(exc).__name__}: "
                         f"{exc})") from exc
    for f in fields:
        if f not in mat:
            raise ValueError(f"{path}: field {f!r} missing (found {sorted(mat)[:8]})")
    return mat


def _cells(x: object, where: str, n: int | None = None) -> list:
    """The elements of a MATLAB cell vector (loadmat's (n, 1) or (1, n) object array)."""
    if not (isinstance(x, np.ndarray) and x.dtype == object and x.ndim == 2
            and (1 in x.shape or x.size == 0)):
        raise ValueError(f"{where} must be a cell vector, got "
                         f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if n is not None and x.size != n:
        raise ValueError(f"{where} must have {n} entries, got {x.size}")
    return list(x.ravel())


def _text(x: object, where: str) -> str:
    if not (isinstance(x, np.ndarray) and x.dtype.kind == "U" and x.size == 1 and x.item()):
        raise ValueError(f"{where} must be a non-empty char array, got {x!r:.60}")
    return str(x.item())


def _boxes(x: object, where: str) -> np.ndarray:
    ok = isinstance(x, np.ndarray) and x.dtype.kind in "iuf"
    if ok and x.size == 0:
        return np.zeros((0, 4))
    if not (ok and x.ndim == 2 and x.shape[1] == 4 and np.isfinite(x).all()):
        raise ValueError(f"{where} must be (G, 4) finite x y w h, got {x!r:.60}")
    return x.astype(np.float64)


def _indices(x: object, n_faces: int, where: str) -> np.ndarray:
    ok = isinstance(x, np.ndarray) and x.dtype.kind in "iuf"
    if ok and x.size == 0:
        return np.zeros(0, dtype=np.int64)
    # a column, as the official len(keep) counts rows; values are 1-based face indices
    if not (ok and x.ndim == 2 and x.shape[1] == 1 and np.isfinite(x).all()
            and (x == np.round(x)).all() and x.min() >= 1 and x.max() <= n_faces
            and len(np.unique(x)) == len(x)):
        raise ValueError(f"{where} must be a column of distinct face indices in [1, {n_faces}]"
                         f", got {x!r:.60}")
    return x.ravel().astype(np.int64) - 1


def read_wider_ground_truth(gt_dir: str | os.PathLike) -> list[WiderImage]:
    """The validation ground truth from the four official ``.mat`` files in ``gt_dir``
    (:data:`MAT_FILES`): ``wider_face_val.mat`` (``event_list``, ``file_list``,
    ``face_bbx_list``) and ``wider_{easy,medium,hard}_val.mat`` (``gt_list``: per image the
    1-based indices of the faces the setting scores). Read with :func:`scipy.io.loadmat`
    (arrays only, nothing executes) and validated field by field.

    Returns: the images in the files' order (event by event).

    Raises:
        ValueError: a file missing or unreadable, a field missing, or a field of the wrong
            structure (the message names the file, the field and the entry).

    Example:
        >>> read_wider_ground_truth("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: gt_dir must hold wider_face_val.mat, got no file '/nonexistent/...'
    """
    root = Path(gt_dir)
    path = root / MAT_FILES["boxes"]
    mat = _load(path, ("event_list", "file_list", "face_bbx_list"))
    events = [_text(e, f"{path}: event_list[{i}]")
              for i, e in enumerate(_cells(mat["event_list"], f"{path}: event_list"))]
    files = _cells(mat["file_list"], f"{path}: file_list", len(events))
    boxes = _cells(mat["face_bbx_list"], f"{path}: face_bbx_list", len(events))
    flat = []  # (event index, image index, event, name, boxes)
    for i, (event, names, bbx) in enumerate(zip(events, files, boxes)):
        names = _cells(names, f"{path}: file_list[{i}] ({event})")
        bbx = _cells(bbx, f"{path}: face_bbx_list[{i}] ({event})", len(names))
        flat += [(i, j, event, _text(name, f"{path}: file_list[{i}][{j}]"),
                  _boxes(b, f"{path}: face_bbx_list[{i}][{j}]"))
                 for j, (name, b) in enumerate(zip(names, bbx))]
    counts = np.bincount([f[0] for f in flat], minlength=len(events))
    keep: dict[str, list[np.ndarray]] = {}
    for setting in SETTINGS:
        path = root / MAT_FILES[setting]
        lists = _cells(_load(path, ("gt_list",))["gt_list"], f"{path}: gt_list", len(events))
        cells = [_cells(c, f"{path}: gt_list[{i}] ({events[i]})",
                        int(counts[i])) for i, c in enumerate(lists)]
        keep[setting] = [_indices(cells[i][j], len(b), f"{path}: gt_list[{i}][{j}] "
                                  f"({event}/{name})") for i, j, event, name, b in flat]
    images = [WiderImage(event, name, b, {s: keep[s][n] for s in SETTINGS})
              for n, (_, _, event, name, b) in enumerate(flat)]
    return images


def _prediction_file(path: Path) -> tuple[str, np.ndarray]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from exc
    if len(lines) < 2 or not lines[0].strip():
        raise ValueError(f"{path}: expected an image-name line and a count line")
    name = lines[0].strip().split("/")[-1].removesuffix(".jpg")
    if name != path.stem.removesuffix(".jpg"):
        raise ValueError(f"{path}: the name line says {lines[0].strip()!r}, the file name "
                         f"{path.stem!r} (the official scripts key by one or the other)")
    rows = [line.split() for line in lines[2:] if line.strip()]
    if lines[1].strip() != str(len(rows)):
        raise ValueError(f"{path}: the count line says {lines[1].strip()!r:.40}, the file has "
                         f"{len(rows)} box lines")
    try:
        boxes = np.array([[float(v) for v in r[:5]] for r in rows if len(r) >= 5])
    except ValueError as exc:
        raise ValueError(f"{path}: box lines must be 'x y w h score' numbers ({exc})") from None
    if len(boxes) != len(rows) or (len(rows) and not np.isfinite(boxes).all()):
        raise ValueError(f"{path}: every box line must hold 5 finite numbers x y w h score")
    return name, boxes.reshape(-1, 5)


def read_wider_predictions(pred_dir: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Predictions in the official layout: ``pred_dir/<event>/<image>.txt`` holding the image
    name, the number of boxes, then one ``x y w h score`` line per box.

    Returns: {event: {image name without ``.jpg``: (D, 5) float64 x, y, w, h, score}}, rows in
    file order. Units: pixels. Example: see :func:`write_wider_predictions`.

    Raises:
        ValueError: ``pred_dir`` not a folder; a file that is not UTF-8, whose name line
            disagrees with its file name, whose count line disagrees with its box lines, or with
            a box line that is not 5 finite numbers (extra columns are dropped, as officially).
    """
    root = Path(pred_dir)
    if not root.is_dir():
        raise ValueError(f"pred_dir must be a folder, got {str(pred_dir)!r}")
    out: dict[str, dict[str, np.ndarray]] = {}
    for event in sorted(p for p in root.iterdir() if p.is_dir()):
        out[event.name] = dict(_prediction_file(f) for f in sorted(event.glob("*.txt")))
    return out


def write_wider_predictions(pred_dir: str | os.PathLike,
                            predictions: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Write ``{event: {image: (D, 5) x y w h score}}`` in the official layout (the inverse of
    :func:`read_wider_predictions`; values written with ``repr``, so they read back exactly;
    rows in the given order, which the official script takes as descending score).

    Units: boxes in pixels of the original image.

    Raises:
        ValueError: an array that is not (D, 5) finite numbers.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> write_wider_predictions(folder, {"0--Parade": {"0_a": [[1, 2, 30, 40, 0.9]]}})
        >>> read_wider_predictions(folder)["0--Parade"]["0_a"].tolist()
        [[1.0, 2.0, 30.0, 40.0, 0.9]]
        >>> import shutil; shutil.rmtree(folder)
    """
    for event, images in _checked(predictions).items():
        folder = Path(pred_dir) / event
        folder.mkdir(parents=True, exist_ok=True)
        for name, d in images.items():
            rows = "".join(" ".join(repr(float(v)) for v in r) + "\n" for r in d)
            (folder / f"{name}.txt").write_text(f"{name}.jpg\n{len(d)}\n{rows}")


def _checked(predictions: Mapping) -> dict[str, dict[str, np.ndarray]]:
    if not isinstance(predictions, Mapping):
        raise ValueError("predictions must be a folder or {event: {image: (D, 5) array}}, got "
                         f"{type(predictions).__name__}")
    out: dict[str, dict[str, np.ndarray]] = {}
    for event, images in predictions.items():
        out[str(event)] = {}
        for name, d in dict(images).items():
            where = f"predictions[{event!r}][{name!r}] must be (D, 5) finite x y w h score"
            try:
                d = np.asarray(d, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where} ({exc})") from None
            d = d.reshape(0, 5) if d.size == 0 else d
            if d.ndim != 2 or d.shape[1] != 5 or not np.isfinite(d).all():
                raise ValueError(f"{where}, got shape {d.shape}")
            out[str(event)][str(name).removesuffix(".jpg")] = d
    return out


def _score_range(predictions: dict[str, dict[str, np.ndarray]]) -> tuple[float, float]:
    """The official normalisation's (lo, hi): min(1, scores), max(0, scores)."""
    scores = [d[:, 4] for images in predictions.values() for d in images.values() if len(d)]
    if not scores:
        return 0.0, 1.0
    s = np.concatenate(scores)
    return min(float(s.min()), 1.0), max(float(s.max()), 0.0)


def _overlaps(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU (D, G) of x y w h boxes with the +1-pixel convention, in the official order of
    floating-point operations."""
    p = np.concatenate([pred[:, :2], pred[:, 2:4] + pred[:, :2]], axis=1)[:, None, :]
    g = np.concatenate([gt[:, :2], gt[:, 2:4] + gt[:, :2]], axis=1)[None, :, :]
    iw = np.minimum(p[..., 2], g[..., 2]) - np.maximum(p[..., 0], g[..., 0]) + 1
    ih = np.minimum(p[..., 3], g[..., 3]) - np.maximum(p[..., 1], g[..., 1]) + 1
    area_g = (g[..., 2] - g[..., 0] + 1) * (g[..., 3] - g[..., 1] + 1)
    ua = (p[..., 2] - p[..., 0] + 1) * (p[..., 3] - p[..., 1] + 1) + area_g - iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((iw > 0) & (ih > 0), iw * ih / ua, 0.0)


def _image_pr(pred: np.ndarray, best: np.ndarray, hit: np.ndarray, scored: np.ndarray,
              thresholds: np.ndarray) -> np.ndarray:
    """(thresholds, 2): detections that count and faces found, per threshold, for one image."""
    ignored = hit & ~scored[best]
    candidate = np.flatnonzero(hit & scored[best])
    _, first = np.unique(best[candidate], return_index=True)
    found = np.zeros(len(pred), dtype=np.int64)
    found[candidate[first]] = 1
    # the first threshold each detection reaches; then the last detection (file order) reached
    start = np.searchsorted(-thresholds, -pred[:, 4], side="left")
    last = np.full(len(thresholds), -1)
    ok = start < len(thresholds)
    np.maximum.at(last, start[ok], np.flatnonzero(ok))
    last = np.maximum.accumulate(last)
    counted, recalled = np.cumsum(~ignored), np.cumsum(found)
    out = np.zeros((len(thresholds), 2))
    out[last >= 0] = np.stack([counted[last[last >= 0]], recalled[last[last >= 0]]], axis=1)
    return out


def wider_official_pr(predictions: str | os.PathLike | Mapping,
                      gt_dir: str | os.PathLike | list[WiderImage], *, iou: float = 0.5
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official PR curve of each setting (the rules in the module docstring).

    Args:
        predictions: a folder in the official layout, or {event: {image: (D, 5) x, y, w, h,
            score}} (rows in the detector's order, i.e. descending score).
        gt_dir: the folder of the four ``.mat`` files, or :func:`read_wider_ground_truth`'s
            result.
        iou: the overlap a detection needs (official: 0.5).

    Shapes: -> {setting: (recall (THRESHOLDS,), precision (THRESHOLDS,))}, from the highest
    threshold to the lowest; precision NaN where no detection counts (0/0, as officially),
    recall NaN when the setting has no face. Units: boxes in pixels (the +1 convention counts
    pixels).

    Raises:
        ValueError: the cases of the readers; an image of the ground truth without predictions;
            every score equal (the official normalisation divides by zero).
    """
    if isinstance(predictions, str | os.PathLike):
        predictions = read_wider_predictions(predictions)
    preds = _checked(predictions)
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], got {iou}")
    images = gt_dir if isinstance(gt_dir, list | tuple) else read_wider_ground_truth(gt_dir)
    missing = [f"{im.event}/{im.name}" for im in images
               if im.name not in preds.get(im.event, {})]
    if missing:
        raise ValueError(f"predictions lack {len(missing)} ground-truth image(s), e.g. "
                         f"{missing[:3]} (write an empty file for an image without detections)")
    lo, hi = _score_range(preds)
    if hi == lo:
        raise ValueError(f"every prediction score is {lo}: the official normalisation "
                         "(s - lo) / (hi - lo) divides by zero")
    thresholds = 1 - np.arange(1, THRESHOLDS + 1) / THRESHOLDS
    sums = {s: np.zeros((THRESHOLDS, 2)) for s in SETTINGS}
    faces = dict.fromkeys(SETTINGS, 0)
    for im in images:
        for s in SETTINGS:
            faces[s] += len(im.keep[s])
        pred = preds[im.event][im.name].copy()
        if len(im.boxes) == 0 or len(pred) == 0:
            continue
        pred[:, 4] = (pred[:, 4] - lo) / (hi - lo)
        ov = _overlaps(pred, im.boxes)
        best = ov.argmax(axis=1)
        hit = ov[np.arange(len(pred)), best] >= iou
        for s in SETTINGS:
            scored = np.zeros(len(im.boxes), dtype=bool)
            scored[im.keep[s]] = True
            sums[s] += _image_pr(pred, best, hit, scored, thresholds)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {s: (sums[s][:, 1] / faces[s], sums[s][:, 1] / sums[s][:, 0]) for s in SETTINGS}


def wider_official_ap(predictions: str | os.PathLike | Mapping,
                      gt_dir: str | os.PathLike | list[WiderImage], *, iou: float = 0.5
                      ) -> dict[str, float]:
    """AP of the easy, medium and hard settings as the official WIDER FACE script reports it
    (arguments as :func:`wider_official_pr`); NaN for a setting without faces.

    Raises:
        ValueError: the cases of :func:`wider_official_pr`.

    Example:
        >>> box = np.array([[0.0, 0.0, 9.0, 9.0]])
        >>> gt = [WiderImage("0--A", "a", box, {"easy": np.array([0]), "medium": np.array([0]),
        ...                                     "hard": np.array([0])})]
        >>> dets = {"0--A": {"a": [[0, 0, 9, 9, 0.9], [50, 50, 9, 9, 0.2]]}}
        >>> wider_official_ap(dets, gt)
        {'easy': 1.0, 'medium': 1.0, 'hard': 1.0}
    """
    curves = wider_official_pr(predictions, gt_dir, iou=iou)
    return {s: float("nan") if np.isnan(r).all() else float(voc_ap(r, p))
            for s, (r, p) in curves.items()}
