"""Detection scenes: many SynthFaces of varied size on one cluttered image, with exact boxes,
landmarks and WIDER-like easy / medium / hard labels.

Difficulty (WIDER FACE groups faces by how hard they are to detect; here the rule is explicit):
hard if the face is under 20 px wide, blurred by more than 1 px, or occluded and under 40 px;
easy if at least 50 px wide, unoccluded and blurred by under 0.5 px; medium otherwise.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from arclab.data.params import SynthConfig, identity_params, nuisance_params
from arclab.data.render import background, render
from arclab.data.synth import face_boxes

__all__ = ["DIFFICULTY", "SCENE_OFFSET", "render_scene"]

DIFFICULTY = ("easy", "medium", "hard")
SCENE_OFFSET = 3_000_000
"""Scene faces use identities from here on, apart from training and evaluation identities."""


def _difficulty(width: float, blur: float, occluded: bool) -> int:
    if width < 20 or blur > 1.0 or (occluded and width < 40):
        return 2
    if width >= 50 and not occluded and blur < 0.5:
        return 0
    return 1


def render_scene(cfg: SynthConfig, scene: int, *, height: int = 480, width: int = 640,
                 n_faces: tuple[int, int] = (3, 12),
                 face_px: tuple[float, float] = (12.0, 160.0)) -> dict:
    """One scene, deterministic in (cfg.seed, scene).

    Returns {"image": (3, H, W) float32 in [0, 1], "boxes": (F, 4) x1, y1, x2, y2 pixels,
    "landmarks": (F, 5, 2) pixels, "difficulty": (F,) int (0 easy, 1 medium, 2 hard),
    "identities": (F,) int64}. Face widths are log-uniform in ``face_px``.

    Raises:
        ValueError: non-positive sizes or counts, or an empty range.
    """
    if height < 32 or width < 32:
        raise ValueError(f"height and width must be >= 32 pixels, got {height}×{width}")
    lo, hi = n_faces
    if not 1 <= lo <= hi:
        raise ValueError(f"n_faces must be (low, high) with 1 <= low <= high, got {n_faces}")
    if not 4 <= face_px[0] <= face_px[1]:
        raise ValueError(f"face_px must be (low, high) with 4 <= low <= high, got {face_px}")
    rng = np.random.default_rng([cfg.seed, 3, scene])
    count = int(rng.integers(lo, hi + 1))
    low = (max(8, height // 4), max(8, width // 4))
    gy, gx = torch.meshgrid(torch.arange(low[0]) * (height / low[0]),
                            torch.arange(low[1]) * (width / low[1]), indexing="ij")
    image = F.interpolate(background(torch.tensor([float(rng.integers(2**31))]), gx[None],
                                     gy[None], max(height, width)),
                          size=(height, width), mode="bilinear", align_corners=False)[0]
    ids = SCENE_OFFSET + rng.integers(0, 1_000_000, count)
    idx = scene * 1000 + np.arange(count)
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, idx)
    boxes, landmarks, difficulty, kept = [], [], [], []
    for f in range(count):
        w_px = math.exp(rng.uniform(math.log(face_px[0]), math.log(face_px[1])))
        k = w_px / (2 * float(ident["face_w"][f]))
        patch = int(math.ceil(3.2 * k * float(ident["hair_volume"][f]))) + 4
        x0 = int(rng.integers(-patch // 4, max(1, width - 3 * patch // 4)))
        y0 = int(rng.integers(-patch // 4, max(1, height - 3 * patch // 4)))
        f2p = torch.tensor([[[k, 0.0, patch / 2], [0.0, k, patch / 2]]])
        one = {key: v[f:f + 1] for key, v in ident.items()}
        nu = {key: v[f:f + 1] for key, v in nuis.items()}
        img, lm, alpha = render(one, nu, f2p, patch, background=False, return_alpha=True)
        ys, xs = slice(max(y0, 0), min(y0 + patch, height)), slice(max(x0, 0),
                                                                   min(x0 + patch, width))
        py, px = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
        if ys.stop <= ys.start or xs.stop <= xs.start:
            continue
        a = alpha[0, py, px][None]
        image[:, ys, xs] = image[:, ys, xs] * (1 - a) + img[0][:, py, px] * a
        box = face_boxes(one, nu, f2p)[0] + torch.tensor([x0, y0, x0, y0])
        boxes.append(box), landmarks.append(lm[0] + torch.tensor([x0, y0])), kept.append(f)
        blur_px = float(nu["blur"][0]) * patch / 112  # as render's post-processing applies it
        difficulty.append(_difficulty(float(box[2] - box[0]), blur_px,
                                      bool(nu["occlusion"][0] > 0)))
    return {"image": image.clamp(0, 1),
            "boxes": torch.stack(boxes) if boxes else torch.zeros(0, 4),
            "landmarks": torch.stack(landmarks) if landmarks else torch.zeros(0, 5, 2),
            "difficulty": torch.tensor(difficulty, dtype=torch.int64),
            "identities": torch.as_tensor(ids[kept], dtype=torch.int64)}
