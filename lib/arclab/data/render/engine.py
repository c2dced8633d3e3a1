"""The renderer's entry point, ``render``, and its two engines: the torch engine draws a batch in
chunks of whole-image tensor ops (differentiable), the kernel engine hands per-image
coefficients to the compiled per-pixel kernel (:mod:`~arclab.data.render.kernel`, faster, no
gradients). Both take their per-image values from the same functions (head, regions,
colour), and ``"auto"`` picks the kernel unless a gradient is needed.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from arclab.data.render.colour import background_low, lit_colours, palette
from arclab.data.render.head import (
    affine_map,
    coverage,
    hand_coef,
    head_axes,
    head_coefficients,
    landmarks_3d,
    per_image,
    project,
    quad_map,
    rotation,
)
from arclab.data.render.kernel import render_scene
from arclab.data.render.paint import occluders, texture
from arclab.data.render.post import jpeg_then_noise, post_plan, post_process
from arclab.data.render.regions import feature_boxes, features, pixel_boxes

__all__ = ["render"]


def render(ident: dict[str, Tensor], nuis: dict[str, Tensor], face_to_px: Tensor, size: int,
           *, background: bool = True, post: bool = True, return_alpha: bool = False,
           dense: bool = False, engine: str = "auto"):
    """Render B faces into ``size``×``size`` images.

    Args:
        ident, nuis: parameter dicts of (B,) tensors (see :mod:`arclab.data.params`).
        face_to_px: (B, 2, 3) affine from the face plane to output pixels.
        background: cluttered background (else mid grey). post: blur, quantisation, noise.
        dense: paint the small features (eyes, nose, mouth, marks, glasses) over the whole
            frame instead of a window around each: the same pixels, bit for bit, only
            slower; for tests of the windows (torch engine).
        engine: ``"torch"`` (batched tensor ops, differentiable), ``"kernel"`` (the compiled
            per-pixel kernel of :mod:`arclab.data.render.kernel`, 2-3× faster end to
            end, no gradients) or ``"auto"``: the kernel unless a gradient is needed (grad
            mode on and a parameter that requires grad) or ``dense`` is set. The two agree to
            float round-off (JPEG's rounding can turn it into a grey level, rarely).

    Returns:
        images (B, 3, size, size) float32 in [0, 1]; landmarks (B, 5, 2) in output pixels;
        with ``return_alpha`` also the face's coverage (B, size, size) in [0, 1] (head, hair
        and hand), for compositing faces into scenes.

    Each image depends only on its own parameters, never on the rest of the batch. The batch
    is rendered in chunks of about ``_CHUNK_PIXELS`` pixels, which keeps the per-pixel
    arrays in cache.
    """
    b = len(face_to_px)
    engine = _engine(engine, dense, ident, nuis, face_to_px)
    ident, nuis = _positive_sizes(ident), _positive_sizes(nuis)
    rot = rotation(nuis["yaw"], nuis["pitch"], nuis["roll"])
    lm = project(landmarks_3d(ident, nuis), rot, face_to_px)
    # face units per pixel, and where each small feature can paint, in pixels: per image,
    # once for the whole batch
    px = 1.0 / torch.linalg.det(face_to_px[:, :, :2].double()).abs().sqrt()
    pxf = px.float()
    feat = features(ident, nuis)
    pix = pixel_boxes(feature_boxes(feat, ident["face_w"], pxf), rot, face_to_px,
                      head_axes(ident), pxf)
    if engine == "kernel":
        return _render_kernel(ident, nuis, feat, rot, face_to_px, px, pix, size, background,
                              post, return_alpha, lm)
    step = max(1, _CHUNK_PIXELS // (size * size))
    parts = []
    for s in range(0, max(b, 1), step):
        e = min(s + step, b)
        parts.append(_render_chunk({k: v[s:e] for k, v in ident.items()},
                                   {k: v[s:e] for k, v in nuis.items()},
                                   {k: v[s:e] for k, v in feat.items()}, rot[s:e],
                                   face_to_px[s:e], px[s:e], pix[s:e], size, background,
                                   post, return_alpha, dense))
    img = torch.cat([p[0] for p in parts])
    if return_alpha:
        return img, lm, torch.cat([p[1] for p in parts])
    return img, lm


_CHUNK_PIXELS = 2**19
# images per JPEG call in the kernel engine: 10 at 112 px (groups of 8-12 rendered about 10 %
# faster than 41 or all at once, benchmarks/synthfaces.py, 2026-12-03)
_JPEG_PIXELS = 2**17
_ENGINES = ("auto", "torch", "kernel")


def _engine(engine: str, dense: bool, ident, nuis, face_to_px) -> str:
    if engine not in _ENGINES:
        raise ValueError(f"engine must be one of {_ENGINES}, got {engine!r}")
    grad = torch.is_grad_enabled() and any(
        isinstance(t, Tensor) and t.requires_grad
        for t in (*ident.values(), *nuis.values(), face_to_px))
    if engine == "kernel" and (grad or dense):
        raise ValueError("engine='kernel' renders without gradients and paints windows only: "
                         "use engine='torch' (or 'auto') for grad-tracking parameters or dense")
    if engine == "auto":
        return "torch" if grad or dense else "kernel"
    return engine


# sizes and shape ratios that an ellipse needs positive
_SIZES = ("face_w", "face_h", "eye_r", "eye_aspect", "brow_w", "brow_t", "nose_len", "nose_w",
          "mouth_w", "lip_t", "hair_volume", "eye_open")


def _positive_sizes(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """The parameters with every size drawn <= 0 made a hairline (0.001 face units). Gaussian
    draws reach below zero far in their tails (a brow's thickness at 3.6 sigma) and often with
    ``identity_spread`` > 1 or ``expression`` > 1.6; an ellipse with a negative radius would
    paint everything outside itself. Positive sizes pass unchanged. (Beauty marks with a
    radius <= 0 are left out instead: see ``texture``.)"""
    out = dict(params)
    for key in _SIZES:
        if key in out and bool((out[key] <= 0).any()):
            out[key] = torch.where(out[key] > 0, out[key], torch.full_like(out[key], 1e-3))
    return out


def _render_chunk(ident, nuis, feat, rot, face_to_px, px, pix, size, background, post,
                  return_alpha, dense=False):
    """The torch engine on one chunk of the batch: images, and the coverage or None."""
    b = len(face_to_px)
    half = (size - 1) / 2
    h = head_coefficients(ident, nuis, rot, face_to_px, px, size)
    xa, ya = h["xa"], h["ya"]
    g = torch.arange(size, dtype=torch.float32) - half
    gi, gj = g[None, :, None], g[None, None, :]
    pxf = px.float()
    ipx = per_image(1 / pxf)
    if background:
        bg = F.interpolate(background_low(nuis["bg_seed"], size), size=(size, size),
                           mode="bilinear", align_corners=False)
    else:
        bg = torch.full((b, 3, size, size), 0.5)
    lit = lit_colours(palette(ident, nuis))
    hair_mask = coverage(h["hair_q"], gi, gj)
    img = bg.lerp_(lit["hair_bg"], hair_mask[:, None])
    disc = quad_map(h["disc_q"], gi, gj)
    head = torch.addcmul(torch.full((), 0.5), disc, per_image(h["kh"])).clamp_(0, 1)
    t = affine_map(h["t_lin"], gi, gj).addcmul_(disc.clamp(min=0).sqrt_(), per_image(h["iqa"]))
    df = h["d"]
    qx, qy, qz = (affine_map(h["o"][k], gi, gj).addcmul_(t, per_image(df[:, k])) for k in range(3))
    axes = h["axes"]
    a, bh, c = (per_image(axes[:, k]) for k in range(3))
    jaw_start = 0.2 * bh
    u = (qy - jaw_start).clamp_(min=0)
    kj = a * (1 - per_image(ident["jaw"])) / (bh - jaw_start) ** 2 * ipx
    side = torch.addcmul(a * ipx + 0.5, u * u, -kj).addcmul_(qx.abs(), -ipx)
    head = head.mul_(side.clamp_(0, 1))
    num = affine_map(h["num_lin"], gi, gj).addcmul_(t, per_image(h["dw"]))
    ia4 = h["ia4"]
    nn = (qx * per_image(ia4[:, 0])).mul_(qx)
    nn = nn.addcmul_(qy * per_image(ia4[:, 1]), qy).addcmul_(qz * per_image(ia4[:, 2]), qz)
    lam = num.mul_(nn.clamp_(min=1e-12).rsqrt_()).clamp_(min=0)
    amb = per_image(nuis["ambient"])
    shade = torch.addcmul(amb, lam, 1 - amb)
    # features and glasses sit on the front of the head and fade out towards its sides; at a
    # large yaw the back of the head is in view, where (qx, qy) repeat the front's values
    front = torch.addcmul(0.5 - 0.2 * c * ipx, qz, ipx).clamp_(0, 1)
    col, gain = texture(feat, lit, qx, qy, qz, front, c, pxf, pix, size, dense)
    face = col.mul_(shade.mul_(gain)[:, None])
    img = img.lerp_(face, head[:, None])
    img = occluders(img, ident, nuis, lit, xa, ya, gi, gj, qx, qy, head, front, pxf,
                    pix, size, dense)
    img = post_process(img, nuis, size / 112.0) if post else img.clamp(0, 1)
    if not return_alpha:
        return img, None
    alpha = torch.maximum(hair_mask, head)
    hand_on = nuis["occlusion"] == 3
    if bool(hand_on.any()):
        hand = coverage(hand_coef(nuis, xa, ya, px), gi, gj) * per_image(hand_on.float())
        alpha = torch.maximum(alpha, hand)
    return img, alpha


def _render_kernel(ident, nuis, feat, rot, face_to_px, px, pix, size, background, post,
                   return_alpha, lm):
    """``render`` through the compiled kernel: per-image coefficients from the torch
    renderer's functions; the per-pixel scene, blur and noise in the kernel; then JPEG and
    its images' noise."""
    h = head_coefficients(ident, nuis, rot, face_to_px, px, size)
    pxf = px.float()
    lit = lit_colours(palette(ident, nuis))
    bg_low = background_low(nuis["bg_seed"], size) if background else None  # kernel upsamples
    mark_ok = feat["mark_r"] > 0
    columns = dict(
        **{k: h[k] for k in ("xa", "ya", "hair_q", "disc_q", "kh", "t_lin", "iqa", "d", "axes",
                           "num_lin", "dw", "ia4")},
        **{k: feat[k] for k in ("hair_line", "ey", "age", "ex", "er", "eh", "brow_y", "tilt",
                              "brow_w", "brow_t", "tip_y", "nl", "nw", "mouth_y", "smile",
                              "half", "lip_h", "gap_h", "mark_x", "mark_y", "mark2_x",
                              "mark2_y", "mark_r")},
        o=torch.cat(h["o"], 1), hair_bg=lit["hair_bg"], jaw=ident["jaw"], ipx=1 / pxf,
        amb=nuis["ambient"], skin=lit["skin"], hair_c=lit["hair"], brow_c=lit["brow"],
        white=lit["white"], iris_c=lit["iris"], lip_c=lit["lip"],
        mark_on=(feat["mark_on"] > 0.5) & mark_ok,
        mark2_on=(feat["mark2_on"] > 0.5) & mark_ok, occlusion=nuis["occlusion"],
        mask_top=ident["eye_y"] + 0.65 * ident["nose_len"],
        cloth=lit["cloth"], hand_q=hand_coef(nuis, h["xa"], h["ya"], pxf.double()),
        hand_c=lit["hand"])
    plan = post_plan(nuis, size / 112.0, 3 * size * size) if post else None
    img, alpha = render_scene(columns, pix, bg_low, size, plan)  # blurred, and noised
    if post:  # where there is no JPEG; JPEG in small groups, whose temporaries stay in cache
        jpeg_then_noise(img, nuis, plan, max(1, _JPEG_PIXELS // (size * size)))
    else:
        img.clamp_(0, 1)
    return (img, lm, alpha) if return_alpha else (img, lm)
