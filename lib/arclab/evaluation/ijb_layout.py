"""Reading IJB-B / IJB-C in the layout insightface's ``eval_ijbc.py`` reads, as untrusted text.

``<root>/meta/<name>_face_tid_mid.txt`` (image name, template id, media id per line),
``<root>/meta/<name>_name_5pts_score.txt`` (image name, 5 landmarks x1 y1 .. x5 y5 in pixels
of the loose crop, detector score; line i describes the image of line i above),
``<root>/meta/<name>_template_pair_label.txt`` (template 1, template 2, label 1 genuine or 0
impostor) and ``<root>/loose_crop/<image name>``, with ``<name>`` ``ijbb`` or ``ijbc``. Every
line is checked; a bad one raises ``ValueError`` naming the file and the line number.
:mod:`arclab.evaluation.ijb` evaluates a model on it.

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from arclab.data.align import align_faces

__all__ = ["IJBCrops", "IJBSet", "read_ijb"]

_INT = re.compile(r"-?\d+\Z")


@dataclass(frozen=True)
class IJBSet:
    """One IJB set as :func:`read_ijb` found it: N image rows, P template pairs."""

    root: Path
    name: str                 # "ijbb" or "ijbc"
    images: tuple[str, ...]   # (N,) names under root/loose_crop
    templates: np.ndarray     # (N,) int64 template id of each image row
    medias: np.ndarray        # (N,) int64 media id (a still image or one video)
    landmarks: np.ndarray     # (N, 5, 2) float32 pixels of the loose crop
    det_scores: np.ndarray    # (N,) float32 detector (faceness) scores
    pairs: np.ndarray         # (P, 2) int64 template ids
    labels: np.ndarray        # (P,) int64, 1 genuine, 0 impostor


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number from 1, whitespace-split fields) of each non-blank line of ``path``."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    with f:
        for no, raw in enumerate(f, 1):
            try:
                fields = raw.decode("utf-8").split()
            except UnicodeDecodeError:
                raise ValueError(f"{path} line {no}: not UTF-8 text") from None
            if fields:
                yield no, fields


def _fields(path: Path, n: int, what: str) -> Iterator[tuple[int, list[str]]]:
    for no, fields in _lines(path):
        if len(fields) != n:
            raise ValueError(f"{path} line {no}: expected {n} fields ({what}), got {len(fields)}")
        yield no, fields


def _int(text: str, what: str, path: Path, no: int) -> int:
    if not _INT.match(text) or len(text) > 18:
        raise ValueError(f"{path} line {no}: {what} must be an integer, got {text[:40]!r}")
    return int(text)


def _float(text: str, what: str, path: Path, no: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise ValueError(f"{path} line {no}: {what} must be a finite number, got {text[:40]!r}")
    return value


def _image_name(text: str, path: Path, no: int) -> str:
    p = PurePosixPath(text)
    if p.is_absolute() or ".." in p.parts or "\\" in text or "\x00" in text:
        raise ValueError(f"{path} line {no}: image name must be a relative path inside "
                         f"loose_crop, got {text[:80]!r}")
    return text


def _pairs(path: Path, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) template ids and (P,) labels; a fast parse, and a line by line one on trouble."""
    import pandas as pd  # heavy (0.2 s): only the pair list needs its fast parser

    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=np.int64).to_numpy()
        if (table.ndim == 2 and table.shape[1] == 3 and len(table)
                and np.isin(table[:, 2], (0, 1)).all() and np.isin(table[:, :2], known).all()):
            return table[:, :2].copy(), table[:, 2].copy()
    except (ValueError, OverflowError, pd.errors.ParserError):
        pass  # read again line by line, which names the bad line
    rows = []
    for no, f in _fields(path, 3, "template 1, template 2, label"):
        t1, t2, label = (_int(v, w, path, no) for v, w in zip(f, ("template 1", "template 2",
                                                                   "label"), strict=True))
        if label not in (0, 1):
            raise ValueError(f"{path} line {no}: label must be 0 or 1, got {label}")
        for t in (t1, t2):
            at = np.searchsorted(known, t)
            if at == len(known) or known[at] != t:
                raise ValueError(f"{path} line {no}: template {t} is not in the image list")
        rows.append((t1, t2, label))
    if not rows:
        raise ValueError(f"{path}: no template pairs")
    table = np.array(rows, dtype=np.int64)
    return table[:, :2], table[:, 2]


def read_ijb(root: str | Path, name: str = "IJBC", *, check_images: bool = True) -> IJBSet:
    """Read an IJB-B or IJB-C folder in ``eval_ijbc.py``'s layout, checking every line.

    Args:
        root: the folder holding ``meta/`` and ``loose_crop/`` (e.g. ``IJB_release/IJBC``).
        name: ``"IJBB"`` or ``"IJBC"`` (either case), the files' prefix.
        check_images: check that every listed image exists under ``loose_crop/``.

    Shapes: see :class:`IJBSet`.
    Units: landmarks in pixels of the loose crop (x right, y down).

    Raises:
        ValueError: an unknown name; a missing or unreadable file; a line (named by file and
            number) with the wrong number of fields, a non-integer id or label, a label not 0
            or 1, a non-finite landmark or 5 equal points, a negative or non-finite score, an
            image name outside ``loose_crop``, a name that differs from the same line of the
            template list, a pair naming a template without images, a missing image (with
            ``check_images``); files of different lengths; no images or no pairs.
    """
    if not isinstance(name, str) or name.lower() not in ("ijbb", "ijbc"):
        raise ValueError(f"name must be 'IJBB' or 'IJBC', got {name!r}")
    root, name = Path(root), name.lower()
    meta = root / "meta"
    tid_path = meta / f"{name}_face_tid_mid.txt"
    lmk_path = meta / f"{name}_name_5pts_score.txt"
    rows = [(_image_name(f[0], tid_path, no), _int(f[1], "template id", tid_path, no),
             _int(f[2], "media id", tid_path, no), no)
            for no, f in _fields(tid_path, 3, "image name, template id, media id")]
    if not rows:
        raise ValueError(f"{tid_path}: no images")
    landmarks, scores = np.zeros((len(rows), 10), np.float32), np.zeros(len(rows), np.float32)
    i = -1
    for i, (no, f) in enumerate(_fields(lmk_path, 12, "image name, 10 coordinates, score")):
        if i >= len(rows):
            raise ValueError(f"{lmk_path} line {no}: more images than {tid_path} lists "
                             f"({len(rows)})")
        if f[0] != rows[i][0]:
            raise ValueError(f"{lmk_path} line {no}: image {f[0][:80]!r} differs from image "
                             f"{i + 1} of {tid_path} ({rows[i][0][:80]!r})")
        landmarks[i] = [_float(v, "a landmark coordinate", lmk_path, no) for v in f[1:11]]
        if np.ptp(landmarks[i].reshape(5, 2), axis=0).max() == 0:
            raise ValueError(f"{lmk_path} line {no}: the 5 landmarks must not all coincide")
        scores[i] = _float(f[11], "the detector score", lmk_path, no)
        if scores[i] < 0:
            raise ValueError(f"{lmk_path} line {no}: the detector score must be >= 0, got {f[11]}")
    if i + 1 != len(rows):
        raise ValueError(f"{lmk_path} lists {i + 1} images, {tid_path} lists {len(rows)}")
    templates = np.array([r[1] for r in rows], np.int64)
    pairs, labels = _pairs(meta / f"{name}_template_pair_label.txt", np.unique(templates))
    if check_images:
        for image, no in {r[0]: r[3] for r in reversed(rows)}.items():
            if not (root / "loose_crop" / image).is_file():
                raise ValueError(f"{tid_path} line {no}: image {image[:80]!r} is missing "
                                 f"({root / 'loose_crop' / image} is not a file)")
    return IJBSet(root, name, tuple(r[0] for r in rows), templates,
                  np.array([r[2] for r in rows], np.int64), landmarks.reshape(-1, 5, 2), scores,
                  pairs, labels)


class IJBCrops(Dataset):
    """The aligned crops of an :class:`IJBSet`: item i is (3, size, size) uint8 RGB, image i
    warped to the ArcFace template by :func:`arclab.data.align.align_faces` and rounded, as
    ``eval_ijbc.py`` warps its uint8 images with OpenCV.

    Raises:
        ValueError: size not an integer >= 8; (on access) an image that cannot be read or
            decoded or is smaller than 2x2 pixels, named with its path.
    """

    def __init__(self, ijb: IJBSet, size: int = 112) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ValueError(f"size must be an integer >= 8 pixels, got {size!r}")
        self.ijb, self.size = ijb, size

    def __len__(self) -> int:
        return len(self.ijb.images)

    def __getitem__(self, i: int) -> Tensor:
        path = self.ijb.root / "loose_crop" / self.ijb.images[i]
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise ValueError(f"{path}: cannot be read as an image ({err})") from None
        if min(rgb.shape[:2]) < 2:
            raise ValueError(f"{path}: an image must be at least 2x2 pixels, got "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")
        img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
        crop = align_faces(img, torch.from_numpy(self.ijb.landmarks[i])[None], self.size)
        return torch.from_numpy(np.rint(crop[0].numpy()).clip(0, 255).astype(np.uint8))
