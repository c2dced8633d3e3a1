"""Render protocol items in batches, cache the pixels on disk, and serve them to torch.

The cache key is a hash of everything that decides the pixels (generator config, items,
size, alignment, renderer version), so a changed parameter never reads stale images. Files are
uint8 ``.npy`` arrays (N, H, W, 3) opened as read-only memory maps, written atomically.

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
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from arclab.atomic import atomic_path
from arclab.data.params import SynthConfig
from arclab.data.synth import render_faces

__all__ = ["RENDER_VERSION", "FaceDataset", "cache_dir", "cached_render", "render_items",
           "render_pairs"]

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


def render_items(cfg: SynthConfig, items: dict, *, size: int = 112, aligned: bool = True,
                 batch_size: int = 256, progress: bool = True) -> dict[str, np.ndarray]:
    """Render every item; returns images uint8 (N, H, W, 3), landmarks float32 (N, 5, 2) and
    boxes float32 (N, 4) in pixels."""
    from tqdm.auto import tqdm

    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
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


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def cached_render(cfg: SynthConfig, items: dict, *, size: int = 112, aligned: bool = True,
                  directory: Path | None = None, progress: bool = True) -> dict:
    """:func:`render_items` through an on-disk cache; images come back as a read-only memmap.

    Returns the same keys as ``render_items`` plus ``"cached"`` (True if read from disk) and
    ``"path"`` of the image file.
    """
    directory = Path(directory) if directory is not None else cache_dir() / "synthfaces"
    directory.mkdir(parents=True, exist_ok=True)
    key = _key(cfg, items, size, aligned)
    paths = {k: directory / f"{key}.{k}.npy" for k in ("images", "landmarks", "boxes")}
    cached = all(p.is_file() for p in paths.values())
    if not cached:
        out = render_items(cfg, items, size=size, aligned=aligned, progress=progress)
        for name in ("landmarks", "boxes", "images"):  # images last: it marks completeness
            _atomic_save(paths[name], out[name])
    result = {k: np.load(p, mmap_mode="r" if k == "images" else None, allow_pickle=False)
              for k, p in paths.items()}
    expected = (len(items["identity"]), size, size, 3)
    if result["images"].shape != expected:
        raise ValueError(f"cache file {paths['images']} has shape {result['images'].shape}, "
                         f"expected {expected}; delete it")
    return {**result, "cached": cached, "path": paths["images"]}


class FaceDataset(Dataset):
    """Images (N, H, W, 3) uint8 with labels, as normalised float tensors for training.

    ``__getitem__`` returns ((3, H, W) float32 in [−1, 1], label int64); with ``flip`` each
    image is mirrored with probability 1/2 (the only augmentation ArcFace training uses).
    """

    def __init__(self, images: np.ndarray, labels, *, flip: bool = False) -> None:
        labels = np.asarray(labels)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} "
                             f"{images.shape}")
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
        self.images, self.labels, self.flip = images, labels.astype(np.int64), flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1).float() / 127.5 - 1
        if self.flip and torch.rand(()) < 0.5:
            img = img.flip(2)
        return img, int(self.labels[i])


def render_pairs(protocol: dict, *, size: int = 112, directory: Path | None = None,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The left and right images (P, H, W, 3) uint8 of a pair protocol, through the cache."""
    cfg = protocol["config"]
    left = cached_render(cfg, protocol["left"], size=size, directory=directory,
                         progress=progress)["images"]
    right = cached_render(cfg, protocol["right"], size=size, directory=directory,
                          progress=progress)["images"]
    return left, right
