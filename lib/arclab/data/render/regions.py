"""Where the small features sit (eyes with brows, nose, mouth, beauty marks, forehead lines,
glasses): their layout on the head surface (``features``), the boxes outside which each leaves
the pixels as they are, on the head surface and in output pixels, and the pixel window that
holds a box in every image of a batch. Both engines paint a feature only inside its box, so a
small feature costs little, and an image never depends on the rest of its batch.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

from arclab.data.render.head import project

__all__ = ["feature_boxes", "features", "pixel_boxes", "window"]


def features(ident: dict[str, Tensor], nuis: dict[str, Tensor]) -> dict[str, Tensor]:
    """Where each small feature sits on the head surface and how large it is, {name: (B,)} in
    face units: the one source for ``feature_boxes`` (where a feature can paint) and
    ``texture`` (what it paints). Eyes at (±ex, ey) with radii er, eh; brows centred at
    brow_y, half-width brow_w, half-thickness brow_t, sheared by tilt; the nose tip at
    (0, tip_y); the lips' centre line y = mouth_y − 0.9 smile (half² − x²) with half-height
    lip_h and the gap's gap_h; marks at (mark_x, mark_y) and (mark2_x, mark2_y), radius
    mark_r."""
    def v(key: str) -> Tensor:
        return ident[key] if key in ident else nuis[key]

    ey, er, smile, lip_t = v("eye_y"), v("eye_r"), v("smile"), v("lip_t")
    a, bh = v("face_w"), v("face_h")
    return {
        "hair_line": v("hairline") * bh, "age": v("age"),
        "ex": v("eye_dx"), "ey": ey, "er": er, "eh": er * v("eye_aspect") * v("eye_open"),
        "brow_y": ey - v("brow_dy") - 0.04 * v("brow_raise"), "brow_w": v("brow_w"),
        "brow_t": v("brow_t"), "tilt": v("brow_tilt"),
        "tip_y": ey + v("nose_len"), "nl": v("nose_len"), "nw": v("nose_w"),
        "mouth_y": v("mouth_y"), "smile": smile, "half": v("mouth_w") * (1 + 0.15 * smile),
        "lip_h": lip_t * (1 + 0.8 * v("mouth_open")),
        "gap_h": lip_t * 0.7 * v("mouth_open") + 1e-3,
        "mark_x": v("mark_u") * 0.6 * a, "mark_y": v("mark_v") * 0.5 * bh,
        "mark2_x": v("mark2_u") * 0.6 * a, "mark2_y": v("mark2_v") * 0.5 * bh,
        "mark_r": v("mark_r"), "mark_on": v("mark_on"), "mark2_on": v("mark2_on"),
    }


def _support(cx: Tensor, cy: Tensor, rx: Tensor, ry: Tensor, px: Tensor) -> Tensor:
    """The box (B, 2, 2) as ((x lo, y lo), (x hi, y hi)) outside which an ellipse's coverage,
    as :mod:`~arclab.data.render.paint` draws it, is exactly 0. Its coverage is
    s·(1 − d²) + 0.5 with s = min(rx, ry) / (2 px), positive where d² < 1 + px / min(rx, ry).
    All arguments (B,), in head units."""
    k = (1 + px / torch.minimum(rx, ry)).sqrt()
    return torch.stack([torch.stack([cx - rx * k, cy - ry * k], 1),
                        torch.stack([cx + rx * k, cy + ry * k], 1)], 1)


def _union(*boxes: Tensor) -> Tensor:
    """The smallest box (B, 2, 2) holding the given boxes."""
    stack = torch.stack(boxes)
    return torch.stack([stack[:, :, 0].amin(0), stack[:, :, 1].amax(0)], 1)


def feature_boxes(f: dict[str, Tensor], a: Tensor, px: Tensor) -> Tensor:
    """Head-surface boxes (B, F, 2, 2) outside which each small feature leaves the pixels
    exactly as they are, in the order of ``_FEATURES``: ``f`` from ``features``, ``a`` (B,)
    the head's half-width, ``px`` (B,) face units per pixel."""
    zero = torch.zeros_like(px)
    # wrinkles: nonzero for hairline + 0.04 - px/2 < y < eye_y - 0.12 + px/2, across the head
    boxes = [torch.stack([torch.stack([-a, f["hair_line"] + 0.04 - 0.5 * px], 1),
                          torch.stack([a, f["ey"] - 0.12 + 0.5 * px], 1)], 1)]
    for side in (-1.0, 1.0):
        brow = _support(side * f["ex"], f["brow_y"], f["brow_w"], f["brow_t"], px)
        sheared = f["tilt"].abs() * (brow[:, 1, 0] - brow[:, 0, 0]) / 2  # the brow's tilt
        brow = brow + torch.stack([-sheared, sheared], 1)[:, :, None] * torch.tensor([0.0, 1.0])
        boxes.append(_union(brow, _support(side * f["ex"], f["ey"], f["er"], f["eh"], px)))
    tip, nl, nw = f["tip_y"], f["nl"], f["nw"]
    boxes.append(_union(_support(zero, tip - 0.45 * nl, 0.7 * nw, 0.55 * nl, px),
                        _support(-nw, tip, 0.35 * nw, 0.2 * nw, px),
                        _support(nw, tip, 0.35 * nw, 0.2 * nw, px),
                        _support(zero, tip, 0.45 * nw, 0.35 * nw, px)))
    half = f["half"]
    lips = _support(zero, f["mouth_y"], half, f["lip_h"], px)
    # the lips' centre line is y = mouth_y - 0.9 smile (half² - x²) over the box's x range
    bend = 0.9 * f["smile"][:, None] * torch.stack([half**2, half**2 - lips[:, 1, 0] ** 2], 1)
    boxes.append(lips - torch.stack([bend.amax(1), bend.amin(1)], 1)[:, :, None] *
                 torch.tensor([0.0, 1.0]))
    for m in ("mark", "mark2"):
        boxes.append(_support(f[m + "_x"], f[m + "_y"], f["mark_r"], f["mark_r"], px))
    boxes.append(_union(*(_support(side * f["ex"], f["ey"], 1.9 * f["er"], 1.5 * f["er"], px)
                          for side in (-1.0, 1.0))))
    return torch.stack(boxes, 1)


_FEATURES = ("wrinkles", "eye_l", "eye_r", "nose", "mouth", "mark", "mark2", "glasses")


def pixel_boxes(boxes: Tensor, rot: Tensor, face_to_px: Tensor, axes: Tensor,
                px: Tensor) -> Tensor:
    """Pixel boxes (B, F, 2, 2) holding every pixel that a feature with head-surface box
    (B, F, 2, 2) can change. Such a pixel's ray meets the head at q = (x, y, z) with (x, y) in
    the box and, since features fade out with ``front``, z > 0.2 c − px / 2; z is also at
    least the ellipsoid's height over the box's farthest corner, and at most c. The pixel is
    an affine function of q (orthographic camera), so its extremes over that 3-D box lie at
    the box's 8 corners; 2 px more cover the head's one-pixel soft edge, where q lies just
    off the ellipsoid."""
    b, f = boxes.shape[:2]
    c = axes[:, 2, None]
    far = torch.maximum(boxes[:, :, 0] ** 2, boxes[:, :, 1] ** 2) / axes[:, None, :2] ** 2
    z_lo = torch.maximum(c * (1 - far.sum(-1)).clamp(min=0).sqrt(), 0.2 * c - 0.5 * px[:, None])
    zs = torch.stack([z_lo, c.expand_as(z_lo)], -1)  # (B, F, 2)
    corners = torch.stack([boxes[:, :, [0, 0, 0, 0, 1, 1, 1, 1], 0],
                           boxes[:, :, [0, 0, 1, 1, 0, 0, 1, 1], 1],
                           zs[:, :, [0, 1, 0, 1, 0, 1, 0, 1]]], -1)  # (B, F, 8, 3)
    pix = project(corners.reshape(b, f * 8, 3), rot, face_to_px).view(b, f, 8, 2)
    return torch.stack([pix.amin(2) - 2, pix.amax(2) + 2], 2)


def window(pix_box: Tensor, size: int) -> tuple[slice, slice] | None:
    """The pixel window holding every image's pixel box (B, 2, 2)."""
    lo = pix_box[:, 0].amin(0).floor().clamp(0, size)
    hi = pix_box[:, 1].amax(0).ceil().clamp(0, size)
    y0, y1, x0, x1 = int(lo[1]), int(hi[1]), int(lo[0]), int(hi[0])
    return (slice(y0, y1), slice(x0, x1)) if y1 > y0 and x1 > x0 else None
