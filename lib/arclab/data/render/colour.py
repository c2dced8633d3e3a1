"""Colours: the palette of skin, hair, eyes and lips drawn for each identity, the colours
under the light that both engines paint (``lit_colours``), and the cluttered background (a
gradient and soft blobs from each image's own seed, independent of the batch).

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from arclab.data.render.head import ellipse

__all__ = ["background", "background_low", "lit_colours", "palette"]


def _colour(*channels: Tensor | float) -> Tensor:
    ref = next(c for c in channels if isinstance(c, Tensor))
    full = [c if isinstance(c, Tensor) else torch.full_like(ref, c) for c in channels]
    return torch.stack(full, 1)[..., None, None]  # (B, 3, 1, 1)


def palette(ident: dict[str, Tensor], nuis: dict[str, Tensor]) -> dict[str, Tensor]:
    """Skin, hair, iris and lip colours and the light's tint, (B, 3, 1, 1) each."""
    t, hue, age = ident["skin_tone"], ident["skin_hue"], nuis["age"]
    skin = _colour(0.93 - 0.57 * t + hue, 0.78 - 0.55 * t, 0.68 - 0.52 * t - hue)
    skin = skin * (1 - 0.12 * age)[:, None, None, None]
    dark = ident["hair_dark"].clamp(0, 1)
    hair = _colour(0.78 - 0.70 * dark + 0.25 * ident["hair_red"].clamp(0, 1),
                   0.62 - 0.56 * dark, 0.36 - 0.31 * dark)
    grey = (age.clamp(0, 1) ** 2)[:, None, None, None]
    hair = hair * (1 - grey) + 0.72 * grey
    iris = _colour(0.45 - 0.3 * ident["iris_dark"], 0.38 - 0.22 * ident["iris_dark"],
                   0.45 - 0.35 * ident["iris_dark"])
    lip = _colour(0.62 + 0.2 * ident["lip_red"], 0.30, 0.30 + 0.05 * ident["lip_red"])
    light = _colour(1 + nuis["light_warm"], torch.ones_like(t), 1 - nuis["light_warm"])
    return {"skin": skin, "hair": hair, "iris": iris, "lip": lip, "light": light}


def lit_colours(pal: dict[str, Tensor]) -> dict[str, Tensor]:
    """The colours both engines paint, under the light, (B, 3, 1, 1) each: skin, hair (on
    the head, and 0.8 of it behind), brows, sclera, iris, lips, the mask's cloth and the hand."""
    light = pal["light"]
    skin = pal["skin"] * light
    return {"skin": skin, "hair": pal["hair"] * light, "hair_bg": pal["hair"] * light * 0.8,
            "brow": pal["hair"] * 0.6 * light, "white": 0.95 * light,
            "iris": pal["iris"] * light, "lip": pal["lip"] * skin * 1.4,
            "cloth": light * torch.tensor([0.75, 0.85, 0.95])[:, None, None],
            "hand": pal["skin"] * 0.9 * light}


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective hash of uint64s."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniform(seeds: Tensor, n: int, salt: int) -> Tensor:
    """(B, n) uniforms in [0, 1), each row from its own seed (SplitMix64: column k of a row is
    the hash of the row's hashed seed plus k golden-ratio steps): independent of how images
    are batched, and vectorised over the batch."""
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        row = _mix64(np.asarray(seeds.tolist(), dtype=np.float64).astype(np.uint64)
                     + np.uint64(salt) * np.uint64(0xD1B54A32D192ED03))
        z = _mix64(row[:, None] + np.arange(1, n + 1, dtype=np.uint64)[None] * golden)
    return torch.from_numpy((z >> np.uint64(40)).astype(np.float32) / np.float32(2**24))


def background(bg_seed: Tensor, px_x: Tensor, px_y: Tensor, size: int) -> Tensor:
    """Cluttered background in output pixels: a colour gradient and soft blobs, (B, 3, H, W)."""
    u = _uniform(bg_seed, 32, 1)
    base = (u[:, 0:3] * 0.8 + 0.1)[..., None, None]
    tilt = ((u[:, 3:9] - 0.5) * 0.8 / size).view(-1, 3, 2)
    img = base + tilt[..., 0, None, None] * px_x[:, None] + tilt[..., 1, None, None] * px_y[:, None]
    for k in range(4):
        c = u[:, 9 + 5 * k:12 + 5 * k]
        cx, cy = u[:, 12 + 5 * k] * size, u[:, 13 + 5 * k] * size
        r = (0.1 + u[:, 29 + k % 3] * 0.35) * size
        m = ellipse(px_x, px_y, cx[:, None, None], cy[:, None, None], r[:, None, None],
                    0.6 * r[:, None, None], torch.full((), 4.0))
        img = img.lerp_(c[..., None, None], m[:, None])
    return img.clamp_(0, 1)


def background_low(bg_seed: Tensor, size: int) -> Tensor:
    """The smooth clutter at a quarter of ``size`` (at least 8 px), (B, 3, low, low): both
    engines upsample it bilinearly to ``size``."""
    b, low = len(bg_seed), max(8, size // 4)
    gl = torch.arange(low, dtype=torch.float32) * (size / low)
    ly, lx = torch.meshgrid(gl, gl, indexing="ij")
    return background(bg_seed, lx.expand(b, low, low), ly.expand(b, low, low), size)
