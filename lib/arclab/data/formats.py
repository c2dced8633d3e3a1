"""Readers for real face data: verification ``.bin`` pairs, WIDER FACE labels, identity folders.

Files are hostile. A verification pickle is scanned opcode by opcode first (a truncated file
fails before any allocation), then loaded by an unpickler that rebuilds plain numeric numpy arrays
itself and refuses every other global before anything runs. Label-file errors name the line. The
RecordIO reader and writer (:mod:`arclab.data.recordio`) are re-exported here.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from arclab.data.recordio import RecordIOReader, RecordIOWriter, decode_rgb

__all__ = ["ImageFolderFaces", "RecordIOReader", "RecordIOWriter", "load_bin",
           "read_wider_labels", "write_bin"]

_PLAIN_DTYPES = {"b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"}
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _size_arg(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size,) * 2 if isinstance(image_size, int | np.integer) else image_size
    if not (isinstance(size, tuple | list) and len(size) == 2 and all(
            isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"image_size must be None, an int > 0 or (H, W), got {image_size!r}")
    return int(size[0]), int(size[1])


def _resized(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or img.shape[:2] == size:
        return img
    return np.array(Image.fromarray(img).resize(size[::-1], Image.Resampling.BILINEAR))


class _Refused(ValueError):
    """The pickle asked for something outside the numpy-array allowlist."""


class _DtypeStub:
    """Stands in for ``numpy.dtype(code)`` during unpickling; only plain numeric codes."""

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(code, str) or code not in _PLAIN_DTYPES:
            raise _Refused(f"refuses dtype {code!r} (only plain bool, int and float arrays)")
        self.dtype = np.dtype(code)

    def __setstate__(self, state: Any) -> None:
        plain = isinstance(state, tuple) and len(state) >= 5 and state[2:5] == (None,) * 3
        if not plain or state[1] not in ("<", ">", "|", "="):
            raise _Refused(f"refuses dtype state {str(state)[:80]} (only plain dtypes)")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _ArrayStub:
    """Stands in for ``numpy.ndarray`` during unpickling; ``array`` is set by ``__setstate__``."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused(f"refuses array state of type {type(state).__name__}")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _array(raw, dtype, shape, "F" if fortran else "C")


def _array(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """A numpy array from pickled bytes, checked: plain dtype, shape matching the byte count."""
    raw = raw.encode("latin1") if isinstance(raw, str) else raw  # Python 2 files
    ok_shape = isinstance(shape, tuple) and all(type(s) is int and s >= 0 for s in shape)
    if not (isinstance(dtype, _DtypeStub) and ok_shape and isinstance(raw, bytes | bytearray)
            and order in ("C", "F")):
        raise _Refused(f"refuses array parts {type(raw).__name__}, {type(dtype).__name__}, "
                       f"{str(shape)[:40]}")
    if math.prod(shape) * dtype.dtype.itemsize != len(raw):
        raise _Refused(f"array shape {shape} does not match its {len(raw)} bytes")
    return np.frombuffer(raw, dtype.dtype).reshape(shape, order=order).copy()


def _reconstruct(cls: Any, shape: Any, code: Any) -> _ArrayStub:
    if cls is not _ArrayStub or shape != (0,):
        kind = "ndarray" if cls is _ArrayStub else type(cls).__name__
        raise _Refused(f"refuses _reconstruct({kind}, {str(shape)[:40]})")
    return _ArrayStub()


def _latin1(text: Any, encoding: Any) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"refuses _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_GLOBALS = {  # every global a verification pickle may name, each mapped to a checked stand-in
    ("numpy", "ndarray"): _ArrayStub, ("numpy", "dtype"): _DtypeStub,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _array,  # protocol 5: (buffer, dtype, shape, order)
    ("numpy._core.numeric", "_frombuffer"): _array,
    ("_codecs", "encode"): _latin1,  # protocol <= 2 stores bytes as encode(text, "latin1")
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler whose only globals are those in ``_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _GLOBALS:
            raise _Refused(f"refuses global {module}.{name}")
        return _GLOBALS[module, name]


def load_bin(path: str | os.PathLike, image_size: int | tuple[int, int] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Load an insightface verification set (LFW, CFP-FP, AgeDB ``.bin``) without trusting it.

    The file is a pickled ``(bins, issame_list)``: 2P encoded images (pairs are images 2i and
    2i+1) and P bools, or a numpy bool array. Only globals that rebuild plain numeric numpy
    arrays are honoured; ``os.system``, ``eval`` and everything else raise before running.
    Python 2 files (bins as byte strings) load too.

    Args:
        path: the ``.bin`` file.
        image_size: None keeps the stored size (all images must share it); an int or (H, W)
            resizes (bilinear) images of another size.

    Returns:
        images uint8 (2P, H, W, 3) RGB and issame bool (P,).

    Raises:
        ValueError: a missing, truncated or non-pickle file, a refused global, a structure other
            than (list of 2P bytes, P bools), an image that does not decode, mixed sizes.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "pairs.bin"
        >>> write_bin(p, np.zeros((2, 4, 5, 3), np.uint8), [True])
        >>> images, issame = load_bin(p)
        >>> images.shape, images.dtype.name, issame.tolist()
        ((2, 4, 5, 3), 'uint8', [True])

    Taught in: notebooks/03_synthfaces.ipynb
    """
    path, size = Path(path), _size_arg(image_size)
    if not path.is_file():
        raise ValueError(f"path must be an existing file, got {str(path)!r}")
    data = path.read_bytes()
    try:
        for _ in pickletools.genops(io.BytesIO(data)):  # parses all, runs nothing
            pass
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as exc:
        raise _Refused(f"{path}: {exc}") from None
    except Exception as exc:  # hostile bytes raise many exception types
        raise ValueError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        raise ValueError(f"{path}: must hold a (bins, issame) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, list | tuple) or not bins:
        raise ValueError(f"{path}: bins must be a non-empty list, got {type(bins).__name__}")
    bins = [b.encode("latin1") if isinstance(b, str) else b for b in bins]  # Python 2 files
    if not all(isinstance(b, bytes | bytearray) for b in bins):
        kinds = sorted({type(b).__name__ for b in bins})
        raise ValueError(f"{path}: bins must all be bytes, got {kinds}")
    issame = issame.array if isinstance(issame, _ArrayStub) else issame
    if isinstance(issame, list | tuple) and all(type(v) is bool for v in issame):
        issame = np.array(issame, dtype=bool).reshape(-1)
    if not (isinstance(issame, np.ndarray) and issame.dtype == bool and issame.ndim == 1):
        raise ValueError(f"{path}: issame must be a list or 1-D array of bools, got "
                         f"{type(issame).__name__} {getattr(issame, 'dtype', '')}")
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: bins must hold 2 images per pair, got {len(bins)} images "
                         f"for {len(issame)} pairs")
    first = _resized(decode_rgb(bytes(bins[0]), f"{path}: image 0"), size)
    images = np.empty((len(bins), *first.shape), np.uint8)
    images[0] = first
    for i in range(1, len(bins)):
        img = _resized(decode_rgb(bytes(bins[i]), f"{path}: image {i}"), size)
        if img.shape != first.shape:
            raise ValueError(f"{path}: image {i} is {img.shape[:2]}, image 0 {first.shape[:2]}; "
                             "pass image_size to resize")
        images[i] = img
    return images, issame.copy()


def write_bin(path: str | os.PathLike, images: np.ndarray | Sequence[np.ndarray],
              issame: Sequence[bool]) -> None:
    """Write a verification ``.bin``: pickle protocol 4 of (list of PNG bytes, list of bools).

    Args:
        path: the file to write.
        images: 2P uint8 (H, W, 3) RGB images, as one array (2P, H, W, 3) or a sequence.
        issame: P bools, pair i being images 2i and 2i+1.

    Raises:
        ValueError: images that are not uint8 (H, W, 3) or not 2 per pair.
        OSError: the file cannot be written (a missing folder; the error names the file).

    Example:
        >>> import tempfile
        >>> write_bin(Path(tempfile.mkdtemp()) / "a.bin", np.zeros((1, 2, 2, 3), np.uint8), [])
        Traceback (most recent call last):
        ...
        ValueError: images must be 2 per pair, got 1 images for 0 pairs

    Taught in: notebooks/03_synthfaces.ipynb
    """
    flags = [bool(v) for v in issame]
    if len(images) != 2 * len(flags):
        raise ValueError(f"images must be 2 per pair, got {len(images)} images for "
                         f"{len(flags)} pairs")
    bins = []
    for i, img in enumerate(images):
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
                and img.shape[2] == 3):
            raise ValueError(f"images[{i}] must be uint8 (H, W, 3), got "
                             f"{getattr(img, 'dtype', type(img).__name__)} {np.shape(img)}")
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
        bins.append(buf.getvalue())
    Path(path).write_bytes(pickle.dumps((bins, flags), protocol=4))


def _wider_header(line: str, where: str) -> str:
    tokens = line[1:].split()
    if len(tokens) not in (1, 3) or not all(t.isdigit() for t in tokens[1:]):
        raise ValueError(f"{where}: expected '# relative/path.jpg [width height]', got "
                         f"{line[:80]!r}")
    rel = tokens[0]
    if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts or ":" in rel \
            or "\\" in rel:
        raise ValueError(f"{where}: image path must be relative, without '..', got {rel!r}")
    return rel


def read_wider_labels(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a RetinaFace-style WIDER FACE ``label.txt`` (boxes, optional 5-point landmarks).

    ``# relative/path.jpg`` (val/test files may add ``width height``) starts an image; each
    following line is one face: ``x y w h`` (4 numbers, val/test) or ``x y w h`` then five
    ``lx ly v`` triples and a score (20 numbers, train). A landmark is absent where the file
    writes -1 for both its coordinates; ``v`` and the score are not kept.

    Returns:
        One dict per image, in file order: ``path`` (str), ``boxes`` float32 (F, 4) as
        x1, y1, x2, y2; ``landmarks`` float32 (F, 5, 2), NaN where absent;
        ``landmark_visible`` bool (F, 5).

    Raises:
        ValueError: a missing or non-UTF-8 file, no images, a face line before any image, a
            line that is not 4 or 20 finite numbers, a negative box size, an unsafe image path;
            each names the file and line number.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "label.txt"
        >>> _ = p.write_text("# a/b.jpg\\n10 20 30 40" + " -1" * 15 + " 0.9\\n")
        >>> (img,) = read_wider_labels(p)
        >>> img["path"], img["boxes"].tolist(), int(img["landmark_visible"].sum())
        ('a/b.jpg', [[10.0, 20.0, 40.0, 60.0]], 0)

    Taught in: notebooks/03_synthfaces.ipynb
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing file, got {str(path)!r}")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from exc
    images: list[tuple[str, list[list[float]]]] = []
    for lineno, line in enumerate(lines, start=1):
        where, line = f"{path}: line {lineno}", line.strip()
        if line.startswith("#"):
            images.append((_wider_header(line, where), []))
            continue
        if not line:
            continue
        if not images:
            raise ValueError(f"{where}: a face line before the first '# image' line")
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise ValueError(f"{where}: expected numbers, got {line[:80]!r}") from None
        if len(values) not in (4, 20) or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{where}: expected 4 or 20 finite numbers, got {len(values)}: "
                             f"{line[:80]!r}")
        if values[2] < 0 or values[3] < 0:
            raise ValueError(f"{where}: box width and height must be >= 0, got {values[2:4]}")
        images[-1][1].append(values + [-1.0] * (20 - len(values)))
    if not images:
        raise ValueError(f"{path}: holds no '# image' lines")
    out = []
    for rel, rows in images:
        faces = np.array(rows, dtype=np.float64).reshape(-1, 20)
        boxes = np.concatenate([faces[:, :2], faces[:, :2] + faces[:, 2:4]], axis=1)
        points = faces[:, 4:19].reshape(-1, 5, 3)[:, :, :2].copy()
        visible = ~(points == -1).all(axis=2)
        points[~visible] = np.nan
        out.append({"path": rel, "boxes": boxes.astype(np.float32),
                    "landmarks": points.astype(np.float32), "landmark_visible": visible})
    return out


class ImageFolderFaces(Dataset):
    """One folder per identity (like torchvision's ImageFolder): ``(uint8 (3, H, W), label)``.

    Labels follow the sorted folder names (``classes``); images are the ``.jpg``, ``.jpeg``,
    ``.png`` and ``.bmp`` files directly inside each folder, sorted; hidden folders are skipped.

    Args:
        root: the folder holding one sub-folder per identity.
        image_size: None keeps each image's size; an int or (H, W) resizes (bilinear).

    Raises:
        ValueError: a missing root, an identity folder without images, no identity folders, a
            bad image_size; indexing raises ValueError for an image that does not decode.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "bob").mkdir()
        >>> Image.new("RGB", (5, 4), (1, 2, 3)).save(root / "bob" / "0.png")
        >>> ds = ImageFolderFaces(root)
        >>> x, y = ds[0]
        >>> ds.classes, tuple(x.shape), x.dtype, x[:, 0, 0].tolist(), y
        (['bob'], (3, 4, 5), torch.uint8, [1, 2, 3], 0)

    Taught in: notebooks/03_synthfaces.ipynb
    """

    def __init__(self, root: str | os.PathLike,
                 image_size: int | tuple[int, int] | None = None) -> None:
        self.root, self.image_size = Path(root), _size_arg(image_size)
        if not self.root.is_dir():
            raise ValueError(f"root must be an existing folder, got {str(root)!r}")
        self.classes = sorted(d.name for d in self.root.iterdir()
                              if d.is_dir() and not d.name.startswith("."))
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            files = sorted(f for f in (self.root / name).iterdir()
                           if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"root must hold images in every identity folder, got none "
                                 f"in {self.root / name}")
            self.samples += [(f, label) for f in files]
        if not self.samples:
            raise ValueError(f"root must hold one folder of images per identity, got no "
                             f"images under {self.root}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        file, label = self.samples[index]
        img = _resized(decode_rgb(file.read_bytes(), str(file)), self.image_size)
        return torch.from_numpy(img).permute(2, 0, 1).contiguous(), label
