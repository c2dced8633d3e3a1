"""Detection data: SynthFaces scenes rendered once, cached on disk, served as training targets.

A scene set holds square images with many faces (:func:`arclab.data.scenes.render_scene`):
boxes, 5 landmarks and a WIDER-like difficulty per face. Boxes are clipped to the image and
faces with less than 4 visible pixels in either direction are dropped. As in WIDER FACE, small
faces carry no landmarks: faces narrower than ``landmark_min_px`` get landmark visibility
False (the label file's −1), so a detector's landmark loss must skip them.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from arclab.atomic import atomic_path
from arclab.data.cache import RENDER_VERSION, cache_dir
from arclab.data.params import SynthConfig
from arclab.data.scenes import render_scene

__all__ = ["SCENE_SET_VERSION", "flip_targets", "scene_set", "scene_targets"]

SCENE_SET_VERSION = 1
"""Bumped when what a scene set stores changes (invalidates cached scene sets)."""

_FLIP_LANDMARKS = [1, 0, 2, 4, 3]  # left/right eye and mouth corner swap under a mirror


def _render_set(cfg: SynthConfig, scenes: range, size: int, n_faces: tuple[int, int],
                face_px: tuple[float, float], landmark_min_px: float,
                progress: bool) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    images = np.empty((len(scenes), size, size, 3), dtype=np.uint8)
    boxes, landmarks, visible, difficulty, counts = [], [], [], [], []
    for i, scene in enumerate(tqdm(scenes, desc="rendering scenes", unit="scene",
                                   leave=False, disable=not progress)):
        s = render_scene(cfg, scene, height=size, width=size, n_faces=n_faces,
                         face_px=face_px)
        images[i] = (s["image"] * 255 + 0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
        b = s["boxes"].clamp(0, size)
        keep = ((b[:, 2] - b[:, 0]) >= 4) & ((b[:, 3] - b[:, 1]) >= 4)
        b = b[keep]
        boxes.append(b.numpy())
        landmarks.append(s["landmarks"][keep].numpy())
        visible.append(((b[:, 2] - b[:, 0]) >= landmark_min_px).numpy())
        difficulty.append(s["difficulty"][keep].numpy())
        counts.append(int(keep.sum()))
    return {"images": images,
            "boxes": np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
            "landmarks": np.concatenate(landmarks).astype(np.float32).reshape(-1, 5, 2),
            "landmark_visible": np.concatenate(visible).astype(bool),
            "difficulty": np.concatenate(difficulty).astype(np.int64),
            "counts": np.asarray(counts, dtype=np.int64)}


def scene_set(cfg: SynthConfig, n_scenes: int, *, first: int = 0, size: int = 320,
              n_faces: tuple[int, int] = (2, 8), face_px: tuple[float, float] = (12.0, 160.0),
              landmark_min_px: float = 16.0, directory: Path | None = None,
              progress: bool = True) -> dict:
    """Scenes ``first`` .. ``first + n_scenes − 1`` of ``cfg``, size × size, cached on disk.

    Returns {"images": uint8 (N, S, S, 3), "boxes": list of N float32 (G_i, 4) arrays
    x1, y1, x2, y2 in pixels, "landmarks": list of (G_i, 5, 2) pixels, "landmark_visible":
    list of (G_i,) bool, "difficulty": list of (G_i,) int64 (0 easy, 1 medium, 2 hard),
    "cached": bool}. Deterministic in (cfg, scene index, size and the face ranges).

    Raises:
        ValueError: n_scenes < 1, first < 0, size < 32, landmark_min_px < 0.
    """
    if isinstance(n_scenes, bool) or not isinstance(n_scenes, int) or n_scenes < 1:
        raise ValueError(f"n_scenes must be a positive integer, got {n_scenes!r}")
    if isinstance(first, bool) or not isinstance(first, int) or first < 0:
        raise ValueError(f"first must be an integer >= 0, got {first!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an integer >= 32 pixels, got {size!r}")
    if not landmark_min_px >= 0:
        raise ValueError(f"landmark_min_px must be >= 0, got {landmark_min_px!r}")
    directory = Path(directory) if directory is not None else cache_dir() / "scenes"
    key = hashlib.sha256(json.dumps(
        {"cfg": asdict(cfg), "first": first, "n": n_scenes, "size": size,
         "n_faces": list(n_faces), "face_px": list(face_px), "lm_min": landmark_min_px,
         "render": RENDER_VERSION, "version": SCENE_SET_VERSION},
        sort_keys=True).encode()).hexdigest()[:24]
    path = directory / f"{key}.npz"
    cached = path.is_file()
    if cached:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    else:
        data = _render_set(cfg, range(first, first + n_scenes), size, n_faces, face_px,
                           landmark_min_px, progress)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            np.savez(out, **data)
    counts = data["counts"]
    if data["images"].shape != (n_scenes, size, size, 3) or int(counts.sum()) != len(
            data["boxes"]):
        raise ValueError(f"scene cache {path} does not match its key; delete it")
    cuts = np.cumsum(counts)[:-1]
    return {"images": data["images"],
            **{k: np.split(data[k], cuts) for k in
               ("boxes", "landmarks", "landmark_visible", "difficulty")},
            "cached": cached}


def scene_targets(data: dict, index: int) -> dict[str, Tensor]:
    """Scene ``index`` of a :func:`scene_set` as detector targets, normalised to [0, 1] by the
    image size: {"boxes": (G, 4), "landmarks": (G, 5, 2), "landmark_valid": (G,) bool}."""
    size = data["images"].shape[1]
    return {"boxes": torch.from_numpy(np.asarray(data["boxes"][index])) / size,
            "landmarks": torch.from_numpy(np.asarray(data["landmarks"][index])) / size,
            "landmark_valid": torch.from_numpy(np.asarray(data["landmark_visible"][index]))}


def flip_targets(targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Normalised targets of the horizontally mirrored image: x → 1 − x, box corners swapped,
    left and right landmarks swapped (eyes 0 ↔ 1, mouth corners 3 ↔ 4).

    Example:
        >>> t = {"boxes": torch.tensor([[0.1, 0.2, 0.3, 0.4]]),
        ...      "landmarks": torch.zeros(1, 5, 2), "landmark_valid": torch.tensor([True])}
        >>> flip_targets(t)["boxes"]
        tensor([[0.7000, 0.2000, 0.9000, 0.4000]])
    """
    boxes = targets["boxes"].clone()
    boxes[:, [0, 2]] = 1 - targets["boxes"][:, [2, 0]]
    landmarks = targets["landmarks"][:, _FLIP_LANDMARKS].clone()
    landmarks[..., 0] = 1 - landmarks[..., 0]
    return {**targets, "boxes": boxes, "landmarks": landmarks}
