"""The dense pixel term L_pixel, with the SynthFaces renderer as the differentiable decoder.

The RetinaFace paper regresses a 3D face mesh per anchor and renders it with a differentiable
mesh renderer, comparing the rendering with the image pixels (L_pixel). Here the per-anchor
dense head predicts a few parameters of the SynthFaces face model (pose, skin and hair tone,
light direction: :data:`DENSE_PARAMS`); every other shape and appearance parameter is held at
its population mean. The face is rendered (:func:`arclab.data.render.render`, which is built
from soft edges and so differentiable in these parameters) into the face's box resampled to
``R`` × ``R`` pixels, and compared with the image inside that box where the rendered face
covers it. What this simplifies: no per-face shape or texture, no mesh, a coarse resolution,
and only one prior per face (the positive prior of highest IoU) carries the term.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import roi_align

from arclab.data.params import IDENTITY_MEAN_SPREAD, SynthConfig, nuisance_params
from arclab.data.render import render
from arclab.data.synth import face_boxes

__all__ = ["DENSE_PARAMS", "decode_dense", "pixel_loss", "render_dense"]

DENSE_PARAMS: dict[str, tuple[float, float]] = {
    "yaw": (0.0, 30.0), "pitch": (0.0, 15.0), "roll": (0.0, 15.0), "skin_tone": (0.5, 0.28),
    "hair_dark": (0.55, 0.30), "light_az": (0.0, 40.0),
}
"""Parameter: (offset, scale); a head output o gives offset + scale · o (angles in degrees)."""


def decode_dense(raw: Tensor) -> dict[str, Tensor]:
    """(F, len(DENSE_PARAMS)) head outputs -> {parameter: (F,)} in the renderer's units.

    Raises:
        ValueError: raw not (F, len(DENSE_PARAMS)).
    """
    if raw.ndim != 2 or raw.shape[1] != len(DENSE_PARAMS):
        raise ValueError(f"raw must be (F, {len(DENSE_PARAMS)}), got {tuple(raw.shape)}")
    return {k: off + scale * raw[:, i] for i, (k, (off, scale)) in enumerate(DENSE_PARAMS.items())}


def render_dense(raw: Tensor, size: int = 24) -> tuple[Tensor, Tensor]:
    """Render the mean face with the decoded parameters so that its face box fills the
    size × size crop: images (F, 3, size, size) in [0, 1] and coverage (F, size, size).

    Raises:
        ValueError: raw not (F, len(DENSE_PARAMS)).
    """
    f = raw.shape[0]
    params = decode_dense(raw)
    ident = {k: torch.full((f,), mean) for k, (mean, _) in IDENTITY_MEAN_SPREAD.items()}
    nuis = nuisance_params(SynthConfig(nuisance=0.0, expression=0.0), [0] * f, list(range(f)))
    for k, v in params.items():
        (ident if k in ident else nuis)[k] = v
    unit = face_boxes(ident, nuis, torch.eye(2, 3).expand(f, 2, 3))  # box at scale 1
    kx = size / (unit[:, 2] - unit[:, 0])
    ky = size / (unit[:, 3] - unit[:, 1])
    zero = torch.zeros_like(kx)
    f2p = torch.stack([torch.stack([kx, zero, -kx * unit[:, 0]], 1),
                       torch.stack([zero, ky, -ky * unit[:, 1]], 1)], 1)
    img, _, alpha = render(ident, nuis, f2p, size, background=False, post=False,
                           return_alpha=True)
    return img, alpha


def pixel_loss(raw: Tensor, images: Tensor, boxes: Tensor, batch_index: Tensor, *,
               size: int = 24) -> Tensor:
    """Mean absolute pixel error between rendered faces and the image inside their boxes,
    weighted by the rendered coverage.

    Args:
        raw: (F, len(DENSE_PARAMS)) dense-head outputs, one row per face.
        images: (B, 3, H, W) RGB in [0, 1]. boxes: (F, 4) x1, y1, x2, y2 in pixels.
        batch_index: (F,) int64, the image of each face.

    Returns: a scalar; 0 (with a gradient of zeros) when F = 0.

    Raises:
        ValueError: raw not (F, len(DENSE_PARAMS)).
    """
    if raw.shape[0] == 0:
        return raw.sum() * 0.0
    rendered, alpha = render_dense(raw, size)
    rois = torch.cat([batch_index[:, None].to(boxes), boxes], dim=1)
    crops = roi_align(images, rois, (size, size), spatial_scale=1.0, sampling_ratio=0,
                      aligned=True)
    weight = alpha[:, None]
    return ((rendered - crops).abs() * weight).sum() / (weight.sum() * 3).clamp(min=1e-6)
