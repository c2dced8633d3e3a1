"""The SynthFaces renderer: a textured head ellipsoid, ray-cast under pose, shaded, composited
on a cluttered background, then blurred, block-quantised and noised. Batched torch ops only,
so it is fast on a batch and differentiable with respect to the identity/nuisance tensors.

Coordinates: the *face plane* has x to the right, y down, in units of about one head half-width
(eyes at y ≈ −0.16, mouth at y ≈ 0.42). A per-image affine ``face_to_px`` (B, 2, 3) maps face
plane to output pixels; rendering evaluates the scene at every output pixel's preimage, so an
aligned crop is rendered directly, without resampling.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from arclab.data.jpeg import jpeg_compress

__all__ = ["landmarks_3d", "project", "render", "rotation"]


def rotation(yaw_deg: Tensor, pitch_deg: Tensor, roll_deg: Tensor) -> Tensor:
    """R = R_roll · R_pitch · R_yaw, (B, 3, 3); yaw turns about y, pitch about x, roll about z."""
    y, p, r = (torch.deg2rad(t) for t in (yaw_deg, pitch_deg, roll_deg))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], 1)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], 1)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], 1)
    return rz.view(-1, 3, 3) @ rx.view(-1, 3, 3) @ ry.view(-1, 3, 3)


def _axes(ident: dict[str, Tensor]) -> Tensor:
    return torch.stack([ident["face_w"], ident["face_h"], 0.85 * ident["face_w"]], 1)


def _mouth_corner(ident: dict[str, Tensor], nuis: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    half = ident["mouth_w"] * (1 + 0.15 * nuis["smile"])
    return half, ident["mouth_y"] - 0.9 * nuis["smile"] * half**2


def landmarks_3d(ident: dict[str, Tensor], nuis: dict[str, Tensor]) -> Tensor:
    """The 5 landmarks on the head surface in head coordinates, (B, 5, 3): left eye, right
    eye, nose tip, left and right mouth corner (left/right in a frontal image)."""
    ex, ey = ident["eye_dx"], ident["eye_y"]
    mx, my = _mouth_corner(ident, nuis)
    xs = torch.stack([-ex, ex, torch.zeros_like(ex), -mx, mx], 1)
    ys = torch.stack([ey, ey, ey + ident["nose_len"], my, my], 1)
    ax = _axes(ident)[:, None, :]
    inside = (1 - (xs / ax[..., 0]) ** 2 - (ys / ax[..., 1]) ** 2).clamp(min=1e-6)
    return torch.stack([xs, ys, ax[..., 2] * inside.sqrt()], 2)


def project(points: Tensor, rot: Tensor, face_to_px: Tensor) -> Tensor:
    """Head-coordinate points (B, P, 3) -> output pixels (B, P, 2): rotate, drop z
    (orthographic camera looking down −z), then the face-plane -> pixel affine."""
    plane = (points @ rot.transpose(1, 2))[..., :2]
    return plane @ face_to_px[:, :, :2].transpose(1, 2) + face_to_px[:, None, :, 2]


def _soft(signed: Tensor, px: Tensor) -> Tensor:
    """Coverage from a signed distance (positive inside) with a one-pixel ramp."""
    return (signed / px + 0.5).clamp(0, 1)


def _ellipse(x: Tensor, y: Tensor, cx, cy, rx, ry, px: Tensor) -> Tensor:
    """Coverage of an axis-aligned ellipse; near the edge 1 − d² ≈ 2·(1 − d), so
    (1 − d²)·r/2 is the signed distance in face units there."""
    d2 = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    r = torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))
    return _soft((1 - d2) * (0.5 * r), px)


def _colour(*channels: Tensor | float) -> Tensor:
    ref = next(c for c in channels if isinstance(c, Tensor))
    full = [c if isinstance(c, Tensor) else torch.full_like(ref, c) for c in channels]
    return torch.stack(full, 1)[..., None, None]  # (B, 3, 1, 1)


def _palette(ident: dict[str, Tensor], nuis: dict[str, Tensor]) -> dict[str, Tensor]:
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


def _uniform(seeds: Tensor, n: int, salt: int) -> Tensor:
    """(B, n) uniforms, each row from its own seed: independent of how images are batched."""
    rows = [torch.rand(n, generator=torch.Generator().manual_seed((int(s) * 7919 + salt)
                                                                   % (2**63 - 1)))
            for s in seeds.tolist()]
    return torch.stack(rows) if rows else torch.zeros(0, n)


def _background(bg_seed: Tensor, px_x: Tensor, px_y: Tensor, size: int) -> Tensor:
    """Cluttered background in output pixels: a colour gradient and soft blobs, (B, 3, H, W)."""
    u = _uniform(bg_seed, 32, 1)
    base = (u[:, 0:3] * 0.8 + 0.1)[..., None, None]
    tilt = ((u[:, 3:9] - 0.5) * 0.8 / size).view(-1, 3, 2)
    img = base + tilt[..., 0, None, None] * px_x[:, None] + tilt[..., 1, None, None] * px_y[:, None]
    for k in range(4):
        c = u[:, 9 + 5 * k:12 + 5 * k]
        cx, cy = u[:, 12 + 5 * k] * size, u[:, 13 + 5 * k] * size
        r = (0.1 + u[:, 29 + k % 3] * 0.35) * size
        m = _ellipse(px_x, px_y, cx[:, None, None], cy[:, None, None], r[:, None, None],
                     0.6 * r[:, None, None], torch.full((), 4.0))
        img = torch.lerp(img, c[..., None, None], m[:, None])
    return img.clamp(0, 1)


def _gaussian_blur(img: Tensor, sigma: float) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k = (k / k.sum()).expand(img.shape[1], 1, 1, -1)
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode="replicate"), k, groups=img.shape[1])
    return F.conv2d(F.pad(img, (0, 0, radius, radius), mode="replicate"), k.transpose(2, 3),
                    groups=img.shape[1])


def _post(img: Tensor, nuis: dict[str, Tensor], scale: float) -> Tensor:
    """Blur (Gaussian, sigma in px at 112 × ``scale``, rounded to 1/8 px so that images with
    the same sigma share one convolution), JPEG compression at ``jpeg_quality`` where ``jpeg``
    is 1, and additive Gaussian noise seeded per image."""
    b, c, h, w = img.shape
    levels = torch.round(nuis["blur"] * scale * 8) / 8
    out = img.clone()
    for level in torch.unique(levels).tolist():
        if level > 0:
            sel = (levels == level).nonzero().squeeze(1)
            out[sel] = _gaussian_blur(img[sel], level)
    img = out
    sel = (nuis["jpeg"] > 0).nonzero().squeeze(1)
    if sel.numel():
        img = img.clone() if img.requires_grad else img
        img[sel] = jpeg_compress(img[sel], nuis["jpeg_quality"][sel])
    noise = torch.empty_like(img)
    for i, seed in enumerate(nuis["bg_seed"].tolist()):
        torch.randn(noise.shape[1:], generator=torch.Generator().manual_seed(int(seed) + 104729),
                    out=noise[i])
    return (img + nuis["noise"][:, None, None, None] * noise).clamp(0, 1)


def render(ident: dict[str, Tensor], nuis: dict[str, Tensor], face_to_px: Tensor, size: int,
           *, background: bool = True, post: bool = True, return_alpha: bool = False):
    """Render B faces into ``size``×``size`` images.

    Args:
        ident, nuis: parameter dicts of (B,) tensors (see :mod:`arclab.data.params`).
        face_to_px: (B, 2, 3) affine from the face plane to output pixels.
        background: cluttered background (else mid grey). post: blur, quantisation, noise.

    Returns:
        images (B, 3, size, size) float32 in [0, 1]; landmarks (B, 5, 2) in output pixels;
        with ``return_alpha`` also the face's coverage (B, size, size) in [0, 1] (head, hair
        and hand), for compositing faces into scenes.
    """
    b = len(face_to_px)
    rot = rotation(nuis["yaw"], nuis["pitch"], nuis["roll"])
    lin = face_to_px[:, :, :2]
    inv = torch.linalg.inv(lin)
    px = 1.0 / torch.linalg.det(lin).abs().sqrt()  # face units per pixel, (B,)
    grid = torch.arange(size, dtype=torch.float32)
    gy, gx = torch.meshgrid(grid, grid, indexing="ij")
    px_x, px_y = gx.expand(b, size, size), gy.expand(b, size, size)
    rel_x, rel_y = px_x - face_to_px[:, 0, 2, None, None], px_y - face_to_px[:, 1, 2, None, None]
    x = inv[:, 0, 0, None, None] * rel_x + inv[:, 0, 1, None, None] * rel_y
    y = inv[:, 1, 0, None, None] * rel_x + inv[:, 1, 1, None, None] * rel_y
    pxs = px[:, None, None]
    if background:  # smooth clutter: rendered at a quarter resolution, then upsampled
        low = max(8, size // 4)
        g = torch.arange(low, dtype=torch.float32) * (size / low)
        ly, lx = torch.meshgrid(g, g, indexing="ij")
        bg = F.interpolate(_background(nuis["bg_seed"], lx.expand(b, low, low),
                                       ly.expand(b, low, low), size),
                           size=(size, size), mode="bilinear", align_corners=False)
    else:
        bg = torch.full((b, 3, size, size), 0.5)
    pal = _palette(ident, nuis)
    # hair volume: a 2-D silhouette around the projected head, upper part only
    axes = _axes(ident)
    top = project(torch.stack([torch.zeros(b), -0.35 * ident["face_h"], torch.zeros(b)], 1)
                  [:, None], rot, torch.eye(2, 3).expand(b, 2, 3))[:, 0]
    hv = ident["hair_volume"][:, None, None]
    hair_mask = _ellipse(x, y, top[:, 0, None, None], top[:, 1, None, None],
                         axes[:, 0, None, None] * hv, axes[:, 1, None, None] * 0.8 * hv, pxs)
    img = torch.lerp(bg, pal["hair"] * pal["light"] * 0.8, hair_mask[:, None])
    # ray-cast the head ellipsoid: view ray p(t) = (x, y, t); head coordinates q = Rᵀ p
    rt = rot.transpose(1, 2)
    o = [rt[:, i, 0, None, None] * x + rt[:, i, 1, None, None] * y for i in range(3)]
    d = rt[:, :, 2]  # (B, 3)
    inv_a2 = 1.0 / axes**2
    qa = (d**2 * inv_a2).sum(1)[:, None, None]
    qb = sum(o[i] * (d[:, i] * inv_a2[:, i])[:, None, None] for i in range(3))
    qc = sum(o[i] ** 2 * inv_a2[:, i, None, None] for i in range(3)) - 1
    disc = qb**2 - qa * qc
    t = (-qb + disc.clamp(min=0).sqrt()) / qa
    qx, qy, qz = (o[i] + t * d[:, i, None, None] for i in range(3))
    head = _soft(disc / (qa**2 * 2 * axes[:, 0, None, None]), pxs)
    a, bh, c = (axes[:, i, None, None] for i in range(3))
    jaw_start = 0.2 * bh
    narrow = 1 - (1 - ident["jaw"][:, None, None]) * ((qy - jaw_start).clamp(min=0) /
                                                      (bh - jaw_start)) ** 2
    head = head * _soft(a * narrow - qx.abs(), pxs)
    # shading: Lambert with the ellipsoid normal turned into view space
    az, el = torch.deg2rad(nuis["light_az"]), torch.deg2rad(nuis["light_el"])
    light = torch.stack([el.cos() * az.sin(), -el.sin(), el.cos() * az.cos()], 1)
    lh = (rt @ light[:, :, None])[:, :, 0]  # the light in head coordinates: n·(Rᵀl) = (Rn)·l
    nx, ny, nz = qx / a**2, qy / bh**2, qz / c**2
    lam = (lh[:, 0, None, None] * nx + lh[:, 1, None, None] * ny + lh[:, 2, None, None] * nz)
    lam = lam / (nx**2 + ny**2 + nz**2).clamp(min=1e-12).sqrt()
    amb = nuis["ambient"][:, None, None]
    shade = amb + (1 - amb) * lam.clamp(min=0)
    to_px = _head_to_px(rot, face_to_px, axes)
    face = _texture(ident, nuis, pal, qx, qy, qz, a, bh, c, pxs, to_px, size)
    face = face * shade[:, None] * pal["light"]
    img = torch.lerp(img, face, head[:, None])
    img = _occluders(img, ident, nuis, pal, x, y, qx, qy, head, pxs, to_px, size)
    if post:
        img = _post(img, nuis, size / 112.0)
    lm = project(landmarks_3d(ident, nuis), rot, face_to_px)
    if return_alpha:
        hand = _ellipse(x, y, nuis["occ_u"][:, None, None] * 0.5, nuis["occ_v"][:, None, None]
                        * 0.5, 0.32, 0.45, pxs) * (nuis["occlusion"] == 3)[:, None, None]
        alpha = torch.maximum(torch.maximum(hair_mask, head), hand)
        return img.clamp(0, 1), lm, alpha
    return img.clamp(0, 1), lm


def _head_to_px(rot: Tensor, face_to_px: Tensor, axes: Tensor):
    """Maps head-surface points (B, P, 2) given by x, y (z on the ellipsoid's front) to pixels."""
    def to_px(xy: Tensor) -> Tensor:
        a, b, c = (axes[:, i, None] for i in range(3))
        z = c * (1 - (xy[..., 0] / a) ** 2 - (xy[..., 1] / b) ** 2).clamp(min=0).sqrt()
        return project(torch.cat([xy, z[..., None]], -1), rot, face_to_px)
    return to_px


def _window(centre_px: Tensor, radius_px: Tensor, size: int) -> tuple[slice, slice] | None:
    """The smallest pixel window holding every image's disc (centre (B, 2), radius (B,))."""
    lo = (centre_px - radius_px[:, None]).min(0).values.floor().clamp(0, size)
    hi = (centre_px + radius_px[:, None]).max(0).values.ceil().clamp(0, size)
    y0, y1, x0, x1 = int(lo[1]), int(hi[1]), int(lo[0]), int(hi[0])
    return (slice(y0, y1), slice(x0, x1)) if y1 > y0 and x1 > x0 else None


def _paint(col: Tensor, maps: tuple[Tensor, ...], centre: Tensor, radius: Tensor, to_px,
           ppu: Tensor, size: int, paint) -> Tensor:
    """``col[..., window] = paint(col[..., window], *maps[..., window])`` where the window holds,
    for every image, the disc of ``radius`` (B,) head units around ``centre`` (B, 2) head
    coordinates; ``ppu`` (B,) is pixels per head unit. Pixels outside are left as they are."""
    win = _window(to_px(centre[:, None])[:, 0], radius * ppu * 1.25 + 2, size)
    if win is None:
        return col
    ys, xs = win
    col = col.clone() if col.requires_grad else col
    col[:, :, ys, xs] = paint(col[:, :, ys, xs], *(m[:, ys, xs] for m in maps))
    return col


def _texture(ident, nuis, pal, qx, qy, qz, a, bh, c, pxs, to_px, size) -> Tensor:
    """The head's colour in head coordinates, before shading, (B, 3, H, W). Small features
    are painted only inside the pixel window that holds them in every image of the batch."""
    def p(key: str) -> Tensor:
        return (ident[key] if key in ident else nuis[key])[:, None, None]

    def v(key: str) -> Tensor:
        return ident[key] if key in ident else nuis[key]

    ppu = 1.0 / pxs[:, 0, 0]
    front = _soft(qz - 0.2 * c, pxs)  # facial features fade out towards the sides
    hair_line = p("hairline") * bh
    hair = torch.maximum(_soft(hair_line - qy, pxs), _soft(-qz - 0.1 * c, pxs))
    col = torch.lerp(pal["skin"].expand(-1, -1, *qx.shape[1:]), pal["hair"], hair[:, None])
    wrinkle = (0.5 + 0.5 * torch.sin(qy * 70)) * _soft(p("eye_y") - 0.12 - qy, pxs) * \
        _soft(qy - hair_line - 0.04, pxs)
    col = col * (1 - 0.18 * (p("age") ** 2 * wrinkle * front))[:, None]
    maps = (qx, qy, front, pxs.expand_as(qx))
    ex, ey, er = p("eye_dx"), p("eye_y"), p("eye_r")
    eh = er * p("eye_aspect") * p("eye_open")
    brow_y = ey - p("brow_dy") - 0.04 * p("brow_raise")
    tilt = p("brow_tilt")
    for side in (-1.0, 1.0):
        def eye(cw, x, y, fr, pw, side=side):
            brow = _ellipse(x, y - side * tilt * (x - side * ex), side * ex, brow_y,
                            p("brow_w"), p("brow_t"), pw) * fr
            cw = torch.lerp(cw, pal["hair"] * 0.6, brow[:, None])
            sclera = _ellipse(x, y, side * ex, ey, er, eh, pw) * fr
            cw = torch.lerp(cw, torch.full_like(cw[:, :, :1, :1], 0.95), sclera[:, None])
            iris = _ellipse(x, y, side * ex, ey, 0.5 * er, 0.5 * er, pw) * sclera
            cw = torch.lerp(cw, pal["iris"], iris[:, None])
            pupil = _ellipse(x, y, side * ex, ey, 0.2 * er, 0.2 * er, pw) * sclera
            return cw * (1 - 0.9 * pupil[:, None])

        centre = torch.stack([side * v("eye_dx"), v("eye_y") - 0.5 * v("brow_dy")], 1)
        radius = torch.maximum(v("brow_w") + 0.2 * v("brow_w"), 1.2 * v("eye_r")) + v("brow_dy")
        col = _paint(col, maps, centre, radius, to_px, ppu, size, eye)
    tip_y, nl, nw = ey + p("nose_len"), p("nose_len"), p("nose_w")

    def nose(cw, x, y, fr, pw):
        ridge = _ellipse(x, y, 0.0, tip_y - 0.45 * nl, nw * 0.7, 0.55 * nl, pw) * fr
        cw = cw * (1 - 0.10 * ridge[:, None])
        for side in (-1.0, 1.0):
            nostril = _ellipse(x, y, side * nw, tip_y, 0.35 * nw, 0.2 * nw, pw) * fr
            cw = cw * (1 - 0.55 * nostril[:, None])
        tip = _ellipse(x, y, 0.0, tip_y, 0.45 * nw, 0.35 * nw, pw) * fr
        return cw * (1 + 0.12 * tip[:, None])

    centre = torch.stack([torch.zeros_like(v("eye_y")), v("eye_y") + 0.5 * v("nose_len")], 1)
    col = _paint(col, maps, centre, 0.55 * v("nose_len") + 1.4 * v("nose_w"), to_px, ppu, size,
                 nose)
    smile, half = p("smile"), p("mouth_w") * (1 + 0.15 * p("smile"))
    lip_h = p("lip_t") * (1 + 0.8 * p("mouth_open"))

    def mouth(cw, x, y, fr, pw):
        curved = y - p("mouth_y") + 0.9 * smile * (half**2 - x**2)
        lips = _ellipse(x, curved, 0.0, 0.0, half, lip_h, pw) * fr
        cw = torch.lerp(cw, pal["lip"] * pal["skin"] * 1.4, lips[:, None])
        gap = _ellipse(x, curved, 0.0, 0.0, 0.85 * half,
                       p("lip_t") * 0.7 * p("mouth_open") + 1e-3, pw) * lips
        return cw * (1 - 0.8 * gap[:, None])

    centre = torch.stack([torch.zeros_like(v("mouth_y")), v("mouth_y")], 1)
    reach = v("mouth_w") * 1.2 + 2 * v("lip_t") * (1 + v("mouth_open")) + 0.3 * \
        v("mouth_w") ** 2
    col = _paint(col, maps, centre, reach, to_px, ppu, size, mouth)
    for u, w, on in (("mark_u", "mark_v", "mark_on"), ("mark2_u", "mark2_v", "mark2_on")):
        mx, my = v(u) * 0.6 * a[:, 0, 0], v(w) * 0.5 * bh[:, 0, 0]

        def mark(cw, x, y, fr, pw, mx=mx, my=my, on=on):
            spot = _ellipse(x, y, mx[:, None, None], my[:, None, None], p("mark_r"),
                            p("mark_r"), pw)
            return cw * (1 - 0.45 * (spot * fr * (p(on) > 0.5))[:, None])

        col = _paint(col, maps, torch.stack([mx, my], 1), v("mark_r"), to_px, ppu, size, mark)
    return col


def _occluders(img, ident, nuis, pal, x, y, qx, qy, head, pxs, to_px, size) -> Tensor:
    """Glasses and masks on the head surface; a hand-like blob in the image plane."""
    occ = nuis["occlusion"]
    if bool((occ == 1).any()):
        ex, ey, er = (ident[k][:, None, None] for k in ("eye_dx", "eye_y", "eye_r"))
        on = (occ == 1)[:, None, None]

        def glasses(iw, x, y, hd, pw):
            ring = torch.zeros_like(x)
            for side in (-1.0, 1.0):
                outer = _ellipse(x, y, side * ex, ey, 1.9 * er, 1.5 * er, pw)
                inner = _ellipse(x, y, side * ex, ey, 1.6 * er, 1.2 * er, pw)
                ring = torch.maximum(ring, outer - inner)
            return torch.lerp(iw, torch.full_like(iw[:, :, :1, :1], 0.08),
                              (ring * hd * on)[:, None])

        centre = torch.stack([torch.zeros_like(ident["eye_y"]), ident["eye_y"]], 1)
        reach = ident["eye_dx"] + 2.0 * ident["eye_r"]
        img = _paint(img, (qx, qy, head, pxs.expand_as(qx)), centre, reach, to_px,
                     1.0 / pxs[:, 0, 0], size, glasses)
    if bool((occ == 2).any()):
        top = (ident["eye_y"] + 0.65 * ident["nose_len"])[:, None, None]
        mask = _soft(qy - top, pxs) * head * (occ == 2)[:, None, None]
        cloth = pal["light"] * torch.tensor([0.75, 0.85, 0.95])[:, None, None]
        img = torch.lerp(img, cloth, mask[:, None])
    if bool((occ == 3).any()):
        hx, hy = nuis["occ_u"][:, None, None] * 0.5, nuis["occ_v"][:, None, None] * 0.5
        hand = _ellipse(x, y, hx, hy, 0.32, 0.45, pxs) * (occ == 3)[:, None, None]
        img = torch.lerp(img, pal["skin"] * 0.9 * pal["light"], hand[:, None])
    return img
