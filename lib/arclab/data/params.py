"""SynthFaces parameters: who a face is (identity) and how this picture of it was taken
(nuisance), drawn deterministically from (seed, identity, index).

Identity parameters fix the face's shape and appearance; nuisance parameters vary per image.
Both are plain float tensors, so the renderer is differentiable with respect to them.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["IDENTITY_KEYS", "IDENTITY_MEAN_SPREAD", "NUISANCE_KEYS", "OCCLUSIONS", "SynthConfig",
           "identity_params", "nuisance_params"]

OCCLUSIONS = ("none", "glasses", "mask", "hand")

IDENTITY_MEAN_SPREAD: dict[str, tuple[float, float]] = {
    "face_w": (0.80, 0.06), "face_h": (1.00, 0.06), "jaw": (0.72, 0.08),
    "eye_dx": (0.36, 0.035), "eye_y": (-0.16, 0.035), "eye_r": (0.085, 0.012),
    "eye_aspect": (0.55, 0.08), "brow_dy": (0.11, 0.02), "brow_w": (0.14, 0.025),
    "brow_t": (0.025, 0.007), "brow_tilt": (0.0, 0.12), "nose_len": (0.26, 0.04),
    "nose_w": (0.075, 0.015), "mouth_y": (0.42, 0.035), "mouth_w": (0.20, 0.03),
    "lip_t": (0.035, 0.009), "hairline": (-0.50, 0.08), "hair_volume": (1.10, 0.06),
    "base_age": (0.35, 0.15), "skin_tone": (0.5, 0.28), "skin_hue": (0.0, 0.04),
    "hair_dark": (0.55, 0.30), "hair_red": (0.0, 0.25), "iris_dark": (0.5, 0.3),
    "lip_red": (0.5, 0.2),
    "mark_u": (0.0, 0.45), "mark_v": (0.15, 0.30), "mark_r": (0.035, 0.012),
    "mark_on": (0.5, 0.5), "mark2_u": (0.0, 0.45), "mark2_v": (0.0, 0.30),
    "mark2_on": (0.2, 0.5),
}
"""Name: (mean, spread) of each identity parameter, in the renderer's units; a face's value is
mean + spread · z · ``identity_spread`` with z ~ N(0, 1) drawn per identity."""
IDENTITY_KEYS = tuple(IDENTITY_MEAN_SPREAD)


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Angles in degrees, blur in pixels at 112×112.

    ``identity_spread`` scales how far identities lie from the mean face (0: one face for all);
    ``nuisance`` scales every per-image variation at once.

    Raises:
        ValueError: a knob not a finite number >= 0 (the message names it), seed not an
            integer >= 0, jpeg_rate or occlusion_rate above 1.
    """

    seed: int = 0
    identity_spread: float = 1.0
    nuisance: float = 1.0
    yaw_deg: float = 25.0        # standard deviation of yaw
    pitch_deg: float = 10.0
    roll_deg: float = 8.0
    max_yaw_deg: float = 80.0    # yaw is clipped to ±this
    blur_px: float = 1.2         # largest Gaussian blur sigma
    noise: float = 0.04          # largest additive noise std (pixel values in [0, 1])
    jpeg_rate: float = 0.3       # share of images JPEG-compressed (quality 15–75)
    occlusion_rate: float = 0.15
    expression: float = 1.0
    age_jitter: float = 0.08     # per-image age deviation (age in [0, 1])
    scale_jitter: float = 0.08   # relative face-size jitter in unaligned images
    shift_jitter: float = 0.06   # translation jitter, in face widths
    background: bool = True

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if key in ("seed", "background"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for key in ("jpeg_rate", "occlusion_rate"):
            if getattr(self, key) > 1:
                raise ValueError(f"{key} must be in [0, 1], got {getattr(self, key)}")


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _check_ids(ids, name: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0)):
        raise ValueError(f"{name} must be a 1-D array of non-negative integers, got {ids!r}"[:200])
    return arr.astype(np.int64)


@lru_cache(maxsize=2**16)
def _identity_z(seed: int, identity: int) -> np.ndarray:
    """The standard normal draws behind one identity (cached: training sets repeat them)."""
    z = _rng(seed, 1, identity).standard_normal(len(IDENTITY_MEAN_SPREAD))
    z.flags.writeable = False
    return z


def identity_params(cfg: SynthConfig, identities) -> dict[str, Tensor]:
    """Shape and appearance of each identity, {name: (B,) float32}, from (cfg.seed, identity).

    Raises:
        ValueError: identities not a 1-D array of integers >= 0.

    Example:
        >>> p = identity_params(SynthConfig(), [0, 1, 0])
        >>> bool(p["face_w"][0] == p["face_w"][2]), bool(p["face_w"][0] != p["face_w"][1])
        (True, True)
    """
    ids = _check_ids(identities, "identities")
    z = np.stack([_identity_z(cfg.seed, int(i)) for i in ids]) \
        if len(ids) else np.zeros((0, len(IDENTITY_MEAN_SPREAD)))
    out = {}
    for k, (name, (mean, spread)) in enumerate(IDENTITY_MEAN_SPREAD.items()):
        out[name] = torch.tensor(mean + spread * cfg.identity_spread * z[:, k],
                                 dtype=torch.float32)
    out["skin_tone"] = out["skin_tone"].clamp(0, 1)
    out["base_age"] = out["base_age"].clamp(0.05, 0.95)
    return out


def _power(x: np.ndarray, p: int) -> np.ndarray:
    """``x ** p`` element by element as numpy's scalar power computes it (C ``pow``), which
    differs in the last bit from the array power (``x * x``, ...) for about 1 in 1,000 values
    (p = 2) or 1 in 20 (p = 3): the nuisance values drawn before 2026-12-03 came from scalars."""
    return np.array([v ** p for v in x], dtype=np.float64)


def nuisance_params(cfg: SynthConfig, identities, indices, **overrides) -> dict[str, Tensor]:
    """How each picture was taken, {name: (B,) float32}, from (cfg.seed, identity, index).

    Keys: yaw, pitch, roll (degrees), light_az, light_el (degrees), light_warm, ambient, smile,
    mouth_open, brow_raise, eye_open, age (0 young .. 1 old), occlusion (index into
    OCCLUSIONS), occ_u, occ_v, blur (px at 112), noise, jpeg (0/1), jpeg_quality (15–75),
    scale, shift_x, shift_y, bg_seed. ``overrides`` replace keys for all images, e.g.
    ``yaw=torch.full((B,), 70.)`` or a float.

    Raises:
        ValueError: identities or indices not 1-D arrays of integers >= 0 or of different
            lengths, or an unknown override.
    """
    ids, idx = _check_ids(identities, "identities"), _check_ids(indices, "indices")
    if len(ids) != len(idx):
        raise ValueError(f"indices must have the length of identities ({len(ids)}), "
                         f"got {len(idx)}")
    n, m = cfg.nuisance, min(cfg.nuisance, 1.0)
    base_age = identity_params(cfg, ids)["base_age"].numpy() if len(ids) else np.zeros(0)
    # the draws per image, from its own generator; the arithmetic below on whole columns
    u, g, seeds = np.empty((len(ids), 24)), np.empty((len(ids), 8)), np.empty(len(ids))
    for b, (i, j) in enumerate(zip(ids, idx)):
        r = _rng(cfg.seed, 2, i, j)
        u[b], g[b], seeds[b] = r.random(24), r.standard_normal(8), r.integers(0, 2**31 - 1)
    occ = np.where(u[:, 0] < cfg.occlusion_rate * m, 1 + np.floor(u[:, 1] * 3), 0.0)
    table = np.stack([
        np.clip(g[:, 0] * cfg.yaw_deg * n, -cfg.max_yaw_deg, cfg.max_yaw_deg),
        np.clip(g[:, 1] * cfg.pitch_deg * n, -45, 45), np.clip(g[:, 2] * cfg.roll_deg * n, -45, 45),
        (u[:, 2] - 0.5) * 160 * m, 10 + u[:, 3] * 50 * m,
        (u[:, 4] - 0.5) * 0.6 * m, 0.55 - 0.25 * u[:, 5] * m,
        (u[:, 6] * 2 - 1) * cfg.expression, _power(u[:, 7], 2) * cfg.expression,
        (u[:, 8] - 0.5) * cfg.expression, 1 - 0.6 * _power(u[:, 9], 3) * cfg.expression,
        np.clip(base_age + g[:, 3] * cfg.age_jitter, 0, 1),
        occ, u[:, 10] * 2 - 1, u[:, 11] * 2 - 1,
        cfg.blur_px * n * _power(u[:, 12], 2), cfg.noise * n * u[:, 13],
        (u[:, 14] < cfg.jpeg_rate * m).astype(np.float64), 15 + 60 * u[:, 15],
        1 + g[:, 4] * cfg.scale_jitter * n, g[:, 5] * cfg.shift_jitter * n,
        g[:, 6] * cfg.shift_jitter * n, seeds], 1)
    keys = ("yaw", "pitch", "roll", "light_az", "light_el", "light_warm", "ambient", "smile",
            "mouth_open", "brow_raise", "eye_open", "age", "occlusion", "occ_u", "occ_v",
            "blur", "noise", "jpeg", "jpeg_quality", "scale", "shift_x", "shift_y", "bg_seed")
    table = torch.from_numpy(table.reshape(len(ids), len(keys)))
    out = {k: table[:, c].float() for c, k in enumerate(keys)}
    out["bg_seed"] = table[:, -1]  # float64 keeps the integer exact
    for key, value in overrides.items():
        if key not in out:
            raise ValueError(f"unknown nuisance override {key!r}; valid: {sorted(out)}")
        out[key] = torch.as_tensor(value, dtype=out[key].dtype).expand(len(ids)).clone()
    return out


NUISANCE_KEYS = ("yaw", "pitch", "roll", "light_az", "light_el", "light_warm", "ambient",
                 "smile", "mouth_open", "brow_raise", "eye_open", "age", "occlusion", "occ_u",
                 "occ_v", "blur", "noise", "jpeg", "jpeg_quality", "scale", "shift_x",
                 "shift_y", "bg_seed")
