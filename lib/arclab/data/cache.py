"""Render protocol items in batches, cache the pixels on disk, and serve them to torch.

The cache key is a hash of everything that decides the pixels (generator config, items,
size, alignment, renderer version), so a changed parameter never reads stale images. An entry
is three ``.npy`` files, images uint8 (N, H, W, 3) opened as a read-only memory map,
landmarks float32 (N, 5, 2) and boxes float32 (N, 4), then a ``.json`` record of their dtypes,
shapes and CRC-32 checksums; each file is written atomically, the record last, so it marks a
complete entry. Every read verifies dtype, shape, file size and checksum; an entry that fails
(flipped bytes, a truncated or replaced file, a missing record) is re-rendered and rewritten,
with a :class:`CacheWarning` that names the file. Entries written before checksums have no
record: they are re-rendered once. The checksum reads each file once: 0.15–0.19 s for 10,000
images of 112 px (376 MB, page cache warm; CRC-32 runs at about 2.3 GB/s, BLAKE2b at 0.9),
under 0.5 % of rendering them (43–99 s on two shared CPU cores).

Pixels do not depend on the thread count (since version 6 each image is rendered in one
thread; ``tests/test_synthfaces.py`` checks 1 against 2 threads byte for byte). Across CPUs and
library builds they are equal up to float round-off only (torch's and numba's math libraries,
JPEG's matrix products), which after quantisation can move a rare uint8 value by one level; a
model trained on either follows its own trajectory (SGD amplifies round-off, as notebook 11
measures): compare runs across machines by their spread over seeds, not digit by digit.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from arclab.atomic import atomic_path
from arclab.data.params import SynthConfig
from arclab.data.synth import render_faces

__all__ = ["RENDER_VERSION", "CacheWarning", "FaceDataset", "cache_dir", "cached_render",
           "render_items", "render_pairs"]

RENDER_VERSION = 6
"""Bumped whenever the renderer's pixels change, which invalidates every cache entry.

6 (2026-12-03): images are rendered by a compiled per-pixel kernel (numba,
:mod:`arclab.data.render.kernel`) wherever no gradient is needed: 2.2× faster
(``benchmarks/render_ab.py``: time ratio 0.458 against version 5, quartiles 0.43–0.53, 12 pairs
of 256 aligned 112 px images). The picture is the same; the arithmetic is float64 per pixel
instead of float32 passes, each image gets its own feature windows, blur and noise are
compiled loops, so values move by round-off (at most 1.1e-5 against version 5 before
quantisation, and a rare uint8 level, more where JPEG's quantisation turns round-off into a
different level). The differentiable torch engine (``render(..., engine="torch")``) is
unchanged and agrees with the kernel to 1e-4 (tests).

5 (2026-12-02): the renderer is about 1.6× faster (``benchmarks/render_ab.py``: time ratio
0.634 against version 4, quartiles 0.62–0.69, 16 pairs of 256 aligned 112 px images), by
changes that move pixels: per-image noise is a window of one fixed bank of normal numbers
(at an offset drawn from the image's seed) instead of fresh draws; a blur of 1/8 px, which
float32 cannot show, is skipped, and blur is a sum of shifted copies instead of a grouped
convolution (round-off); the background's random numbers come from a SplitMix64 hash of its
seed (different backgrounds); the eyes' four ellipses share their squared offsets, and JPEG
averages chroma by slicing (round-off); a beauty mark whose drawn radius is <= 0 (0.2 % of
identities) is no mark (version 4 could darken a few pixels at its centre). Features are
painted in tight exact windows (no pixel change by itself; the dense-painting test checks).

4 (2026-12-02): glasses are drawn on the front of the head only. At a yaw beyond about 60°
the back of the head comes into view, where the surface coordinates repeat the front's, and
version 3 drew parts of the rims there (dark dots on the hair), fully or partly depending
on the batch. Measured effect: 0.2–0.4 % of unaligned images changed (notebooks 12 and 14);
aligned crops (1,536 at 55–80° yaw, a third with glasses, at 112 and 32 px) and the
detection scenes of notebooks 10 and 11 (208 faces with glasses) are byte-identical."""


def cache_dir() -> Path:
    """``$ARCLAB_CACHE`` if set, else ``~/.cache/arclab``."""
    return Path(os.environ.get("ARCLAB_CACHE", Path.home() / ".cache" / "arclab"))


class CacheWarning(UserWarning):
    """A render-cache entry failed verification (or predates checksums) and is re-rendered."""


def _integer(name: str, value: int, low: int) -> int:
    """``value`` as an int, checked to be an integer (numpy's too, not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def render_items(cfg: SynthConfig, items: dict, *, size: int = 112, aligned: bool = True,
                 batch_size: int = 256, progress: bool = True) -> dict[str, np.ndarray]:
    """Render every item; returns images uint8 (N, H, W, 3), landmarks float32 (N, 5, 2) and
    boxes float32 (N, 4) in pixels.

    Raises:
        ValueError: ``size`` not an integer >= 16, ``batch_size`` not a positive integer, or
            bad items (see :func:`arclab.data.synth.render_faces`).
    """
    from tqdm.auto import tqdm

    size, batch_size = _integer("size", size, 16), _integer("batch_size", batch_size, 1)
    n = len(items["identity"])
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    landmarks, boxes = np.empty((n, 5, 2), np.float32), np.empty((n, 4), np.float32)
    starts = range(0, n, batch_size)
    for s in tqdm(starts, desc="rendering", unit="batch", leave=False, disable=not progress):
        e = min(s + batch_size, n)
        over = {k: torch.as_tensor(v[s:e]) for k, v in items.get("overrides", {}).items()}
        out = render_faces(cfg, items["identity"][s:e], items["index"][s:e], size=size,
                           aligned=aligned, **over)
        images[s:e] = (out["images"] * 255 + 0.5).clamp(0, 255).byte().permute(0, 2, 3, 1)
        landmarks[s:e], boxes[s:e] = out["landmarks"].numpy(), out["boxes"].numpy()
    return {"images": images, "landmarks": landmarks, "boxes": boxes}


def _key(cfg: SynthConfig, items: dict, size: int, aligned: bool) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"cfg": asdict(cfg), "size": size, "aligned": aligned,
                         "version": RENDER_VERSION}, sort_keys=True).encode())
    for name in ("identity", "index"):
        h.update(np.ascontiguousarray(items[name], dtype=np.int64).tobytes())
    for name, value in sorted(items.get("overrides", {}).items()):
        h.update(name.encode() + np.ascontiguousarray(value, dtype=np.float32).tobytes())
    return h.hexdigest()[:24]


_ARRAYS = ("landmarks", "boxes", "images")  # the order they are written and verified in


def _layout(n: int, size: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """The dtype and shape of each array of an entry of n images of size × size pixels."""
    return {"landmarks": (np.dtype(np.float32), (n, 5, 2)),
            "boxes": (np.dtype(np.float32), (n, 4)),
            "images": (np.dtype(np.uint8), (n, size, size, 3))}


def _crc32(array: np.ndarray) -> int:
    """CRC-32 of a C-contiguous array's bytes, read in place (no copy of a memory map)."""
    return zlib.crc32(memoryview(array).cast("B")) if array.size else 0


def _write_entry(paths: dict[str, Path], record: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays, then the record of their checksums, each atomically."""
    record.unlink(missing_ok=True)  # a writer stopped before the end leaves no stale record
    meta = {"format": 1, "render_version": RENDER_VERSION, "checksum": "crc32", "arrays": {}}
    for name in _ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        with atomic_path(paths[name]) as tmp, open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
        meta["arrays"][name] = {"dtype": array.dtype.str, "shape": list(array.shape),
                                "crc32": _crc32(array)}
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def _read_array(path: Path, dtype: np.dtype, shape: tuple[int, ...], meta: dict
                ) -> np.ndarray | str:
    """The verified read-only memory map of ``path``, or why it fails verification."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:  # truncated, garbled or missing
        return f"it cannot be read ({type(err).__name__}: {err})"
    if array.dtype != dtype or array.shape != shape or not array.flags.c_contiguous:
        order = "" if array.flags.c_contiguous else " in Fortran order"
        return f"it holds {array.dtype} {array.shape}{order}, expected {dtype} {shape}"
    size = path.stat().st_size
    if isinstance(array, np.memmap) and size != array.offset + array.nbytes:
        return f"it has {size} bytes, expected {array.offset + array.nbytes}"
    if not isinstance(meta, dict) or _crc32(array) != meta.get("crc32"):
        return "its checksum does not match the one recorded when it was written"
    return array


def _read_entry(paths: dict[str, Path], record: Path, layout: dict) -> dict | tuple[Path, str]:
    """The entry's verified arrays, or (the file that fails, why)."""
    try:
        meta = json.loads(record.read_text())["arrays"]
        if not isinstance(meta, dict):
            raise TypeError(f"'arrays' is {type(meta).__name__}, not a mapping")
    except FileNotFoundError:
        return paths["images"], (f"its entry has no checksum record {record.name} (written "
                                 "before arclab verified its cache, or by a writer that "
                                 "stopped early)")
    except (OSError, ValueError, TypeError, KeyError) as err:
        return record, f"its checksum record cannot be read ({type(err).__name__}: {err})"
    out = {}
    for name in _ARRAYS:
        got = _read_array(paths[name], *layout[name], meta.get(name))
        if isinstance(got, str):
            return paths[name], got
        out[name] = got if name == "images" else np.array(got)
    return out


def cached_render(cfg: SynthConfig, items: dict, *, size: int = 112, aligned: bool = True,
                  directory: Path | None = None, progress: bool = True) -> dict:
    """:func:`render_items` through an on-disk cache; images come back as a read-only memmap.

    Returns the same keys as ``render_items`` plus ``"cached"`` (True if read from disk) and
    ``"path"`` of the image file. A cached entry is verified before it is served (dtype,
    shape, file size, CRC-32 against the record written with it); one that fails is
    re-rendered and rewritten, with a :class:`CacheWarning` naming the file and the reason.

    Raises:
        ValueError: ``size`` not an integer >= 16, or bad items (see :func:`render_items`).
        OSError: the cache directory cannot be created or written.
    """
    size = _integer("size", size, 16)
    directory = Path(directory) if directory is not None else cache_dir() / "synthfaces"
    directory.mkdir(parents=True, exist_ok=True)
    key = _key(cfg, items, size, aligned)
    paths = {k: directory / f"{key}.{k}.npy" for k in _ARRAYS}
    record = directory / f"{key}.json"
    layout = _layout(len(items["identity"]), size)
    found = None
    if any(p.exists() for p in (record, *paths.values())):  # else a plain miss: render
        found = _read_entry(paths, record, layout)
        if isinstance(found, tuple):
            warnings.warn(f"render cache file {found[0]}: {found[1]}; re-rendering its entry",
                          CacheWarning, stacklevel=2)
            found = None
    if found is None:
        out = render_items(cfg, items, size=size, aligned=aligned, progress=progress)
        _write_entry(paths, record, out)
        out["images"] = np.load(paths["images"], mmap_mode="r", allow_pickle=False)
        return {**out, "cached": False, "path": paths["images"]}
    return {**found, "cached": True, "path": paths["images"]}


def _labels(labels, n: int, num_classes: int | None) -> np.ndarray:
    """``labels`` as an int64 (n,) array, checked: integral values in [0, num_classes)."""
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.number) \
            or np.issubdtype(labels.dtype, np.complexfloating):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if not np.issubdtype(labels.dtype, np.integer):
        bad = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels))
                             | (np.abs(labels) >= 2.0**63))
        if bad.size:
            raise ValueError(f"labels must be integers (int64), got {labels[bad[0]].item()!r} "
                             f"at index {bad[0]}")
    high = None if num_classes is None else _integer("num_classes", num_classes, 1)
    wrong = labels < 0 if high is None else (labels < 0) | (labels >= high)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        allowed = ">= 0" if high is None else f"in [0, {high}) (num_classes)"
        raise ValueError(f"labels must be {allowed}, got {labels[i].item()!r} at index {i}")
    return labels.astype(np.int64)


class FaceDataset(Dataset):
    """Images (N, H, W, 3) uint8 with labels, as normalised float tensors for training.

    ``__getitem__`` returns ((3, H, W) float32 in [−1, 1], label int64); with ``flip`` each
    image is mirrored with probability 1/2 (the only augmentation ArcFace training uses).

    Labels are integers in [0, ``num_classes``) (any integer >= 0 without ``num_classes``):
    integer arrays or tensors, or floats that hold whole numbers (1.0); 0.7, −3 or a bool
    array are refused, not rounded or wrapped.

    Raises:
        ValueError: images not uint8 (N, H, W, 3); labels not of shape (N,), not integers
            (the first non-integral index is named), or outside [0, num_classes);
            num_classes not a positive integer.

    Example:
        >>> ds = FaceDataset(np.zeros((2, 4, 4, 3), np.uint8), [1, 0], num_classes=2)
        >>> ds[0][0].shape, ds[0][1]
        (torch.Size([3, 4, 4]), 1)
    """

    def __init__(self, images: np.ndarray, labels, *, flip: bool = False,
                 num_classes: int | None = None) -> None:
        if (not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3
                or images.dtype != np.uint8):
            raise ValueError(f"images must be uint8 (N, H, W, 3), got "
                             f"{getattr(images, 'dtype', type(images).__name__)} "
                             f"{getattr(images, 'shape', '')}")
        self.images, self.labels, self.flip = images, _labels(labels, len(images),
                                                              num_classes), flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).float() / 127.5 - 1
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(2)
        return img, int(self.labels[i])

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``indices`` at once, by array indexing (no per-item Python): the same tensors,
        and the same draws from the global RNG, as stacking ``self[i]`` in that order.

        Shapes: indices (B,) ints -> images (B, 3, H, W) float32 in [−1, 1], labels (B,)
        int64.

        Example:
            >>> ds = FaceDataset(np.arange(96, dtype=np.uint8).reshape(2, 4, 4, 3), [1, 0],
            ...                  flip=True)
            >>> _ = torch.manual_seed(0); x, y = ds.batch([1, 0])
            >>> _ = torch.manual_seed(0); items = [ds[1], ds[0]]
            >>> torch.equal(x, torch.stack([v for v, _ in items])), y.tolist()
            (True, [0, 1])
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        imgs = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        x = imgs.permute(0, 3, 1, 2).contiguous().float() / 127.5 - 1
        if self.flip and len(idx):
            mirror = torch.rand(len(idx)) < 0.5  # the draws self[i] would make, in order
            x[mirror] = x[mirror].flip(3)
        return x, torch.from_numpy(self.labels[idx])


def render_pairs(protocol: dict, *, size: int = 112, directory: Path | None = None,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The left and right images (P, H, W, 3) uint8 of a pair protocol, through the cache.

    Raises:
        ValueError: as :func:`cached_render` (``size`` not an integer >= 16, bad items).
        OSError: as :func:`cached_render`.
    """
    cfg = protocol["config"]
    left = cached_render(cfg, protocol["left"], size=size, directory=directory,
                         progress=progress)["images"]
    right = cached_render(cfg, protocol["right"], size=size, directory=directory,
                          progress=progress)["images"]
    return left, right
