"""Anchor boxes ("priors") of a single-stage face detector, as configs that are data.

``"port"`` is the popular PyTorch RetinaFace port: three pyramid levels with strides 8, 16 and
32 and two square anchors per cell ((16, 32), (64, 128), (256, 512) pixels), 16,800 priors at
640 × 640. ``"paper"`` is the RetinaFace paper's P2–P6: strides 4 to 64, three scales per level
(2^(k/3) steps from 16 px), square. Order (the heads' output order): level by level, then cell
rows, cell columns, then the anchor sizes of a cell.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["PRIOR_CONFIGS", "priors", "priors_per_level", "resolve_prior_config"]

PRIOR_CONFIGS: dict[str, dict[str, tuple]] = {
    "port": {"min_sizes": ((16, 32), (64, 128), (256, 512)), "steps": (8, 16, 32)},
    "paper": {"min_sizes": tuple(tuple(16 * 2 ** (level + k / 3) for k in range(3))
                                 for level in range(5)),
              "steps": (4, 8, 16, 32, 64)},
}
"""Anchor sizes (pixels) per level and the level's stride (pixels)."""


def resolve_prior_config(config: str | dict) -> dict:
    """The prior config ``config`` names: a key of :data:`PRIOR_CONFIGS`, or a dict with
    ``min_sizes`` (anchor sizes per level, pixels) and ``steps`` (one stride per level, pixels),
    returned as it is.

    Raises:
        ValueError: an unknown name, or a dict without both keys or with different lengths.

    Example:
        >>> resolve_prior_config("port")["steps"]
        (8, 16, 32)
    """
    if isinstance(config, str):
        if config not in PRIOR_CONFIGS:
            raise ValueError(f"config must be one of {sorted(PRIOR_CONFIGS)} or a dict, got "
                             f"{config!r}")
        return PRIOR_CONFIGS[config]
    if not isinstance(config, dict) or {"min_sizes", "steps"} - set(config) \
            or len(config["min_sizes"]) != len(config["steps"]):
        raise ValueError("config must be a dict with 'min_sizes' (sizes per level) and "
                         "'steps' (one stride per level)")
    return config


def _size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                   for v in image_size):
        raise ValueError(f"image_size must be (height, width) in positive pixels, got "
                         f"{image_size!r}")
    return int(image_size[0]), int(image_size[1])


def priors_per_level(image_size: tuple[int, int], config: str | dict = "port") -> list[int]:
    """Number of priors on each level: ⌈H/stride⌉ · ⌈W/stride⌉ · anchors per cell.

    Raises:
        ValueError: image_size not (height, width) positive integers; a config
            :func:`resolve_prior_config` refuses.

    Example:
        >>> priors_per_level((640, 640))
        [12800, 3200, 800]
    """
    h, w = _size(image_size)
    cfg = resolve_prior_config(config)
    return [math.ceil(h / s) * math.ceil(w / s) * len(m)
            for m, s in zip(cfg["min_sizes"], cfg["steps"])]


def priors(image_size: tuple[int, int], config: str | dict = "port", *,
           clip: bool = False) -> Tensor:
    """Priors (P, 4) float32 as (cx, cy, w, h), normalised by the image width and height.

    Raises:
        ValueError: image_size not (height, width) positive integers; a config
            :func:`resolve_prior_config` refuses.

    Example:
        >>> p = priors((640, 640))
        >>> tuple(p.shape), (p[0] * 640).tolist()  # first cell centre (4, 4), 16 px anchor
        ((16800, 4), [4.0, 4.0, 16.0, 16.0])
    """
    h, w = _size(image_size)
    cfg = resolve_prior_config(config)
    levels = []
    for sizes, step in zip(cfg["min_sizes"], cfg["steps"]):
        fh, fw = math.ceil(h / step), math.ceil(w / step)
        cy = (torch.arange(fh, dtype=torch.float64) + 0.5) * step / h
        cx = (torch.arange(fw, dtype=torch.float64) + 0.5) * step / w
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")  # (fh, fw): rows, then columns
        k = len(sizes)
        sw = torch.tensor([s / w for s in sizes], dtype=torch.float64)
        sh = torch.tensor([s / h for s in sizes], dtype=torch.float64)
        level = torch.stack([gx[..., None].expand(fh, fw, k), gy[..., None].expand(fh, fw, k),
                             sw.expand(fh, fw, k), sh.expand(fh, fw, k)], dim=-1)
        levels.append(level.reshape(-1, 4))
    out = torch.cat(levels).float()
    return out.clamp(0, 1) if clip else out
