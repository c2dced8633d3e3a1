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

import functools
import math

import numpy as np
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


def _lit(pal: dict[str, Tensor]) -> dict[str, Tensor]:
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
        img = img.lerp_(c[..., None, None], m[:, None])
    return img.clamp_(0, 1)


def _background_low(bg_seed: Tensor, size: int) -> Tensor:
    """The smooth clutter at a quarter of ``size`` (at least 8 px), (B, 3, low, low): both
    engines upsample it bilinearly to ``size``."""
    b, low = len(bg_seed), max(8, size // 4)
    gl = torch.arange(low, dtype=torch.float32) * (size / low)
    ly, lx = torch.meshgrid(gl, gl, indexing="ij")
    return _background(bg_seed, lx.expand(b, low, low), ly.expand(b, low, low), size)


def _gaussian_blur(img: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Blur each image (B, 3, H, W) by its own Gaussian ``sigma`` (B,) px, taps reaching
    ``radius`` px, edges replicated: separable, each direction a sum of shifted copies
    weighted per image (for these small kernels faster than a grouped convolution)."""
    taps = torch.arange(radius + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (taps / sigma[:, None]) ** 2)
    k = (k / (2 * k.sum(1, keepdim=True) - k[:, :1]))[:, :, None, None, None]  # (B, r+1, ...)
    for dim in (3, 2):
        n = img.shape[dim]
        pad = (radius, radius, 0, 0) if dim == 3 else (0, 0, radius, radius)
        x = F.pad(img, pad, mode="replicate")
        img = x.narrow(dim, radius, n) * k[:, 0]
        for t in range(1, radius + 1):
            img = img.addcmul_(x.narrow(dim, radius - t, n) + x.narrow(dim, radius + t, n),
                               k[:, t])
    return img


def _put(img: Tensor, sel: Tensor, values: Tensor) -> Tensor:
    """``img[sel] = values``, in place unless autograd is tracking ``img``."""
    return img.index_copy(0, sel, values) if img.requires_grad else img.index_copy_(0, sel, values)


_NOISE_BANK = 2**22


@functools.cache
def _noise_bank() -> Tensor:
    """2**22 standard normal numbers (16 MB), drawn once per process from a fixed seed."""
    return torch.randn(_NOISE_BANK, generator=torch.Generator().manual_seed(104729))


def _noise(seeds: Tensor, shape: tuple[int, ...]) -> list[Tensor]:
    """Standard normal noise of ``shape`` per seed (B,), as B views into the bank: each image's
    is the window that starts at an offset drawn from its own seed, so it is independent of
    the batch and costs no draws (torch draws normal numbers on one core at about 7 ns each,
    0.3 ms per 112 px image). Two images share a noise value at the same pixel with
    probability about 1 in 4 million; images larger than the bank (above about 1,180 px
    square) repeat it."""
    n = math.prod(shape)
    bank, offsets = _noise_source(seeds, n)
    return [bank[o:][:n].view(shape) for o in offsets]


def _noise_source(seeds: Tensor, n: int) -> tuple[Tensor, list[int]]:
    """The bank (repeated when one image needs more than it holds) and each seed's offset."""
    bank = _noise_bank()
    if n > len(bank):
        bank = bank.repeat(-(-n // len(bank)) + 1)
    span = len(bank) - n + 1
    return bank, [int(s) * 2654435761 % span for s in seeds.tolist()]


def _blur_levels(nuis: dict[str, Tensor], scale: float) -> tuple[Tensor, Tensor]:
    """Each image's blur sigma in px (rounded to 1/8 px) and its taps' reach (0: no blur)."""
    levels = torch.round(nuis["blur"] * scale * 8) / 8
    return levels, torch.where(levels >= 0.25, torch.ceil(3 * levels), torch.zeros(()))


def _post_plan(nuis: dict[str, Tensor], scale: float, numel: int) -> dict[str, Tensor]:
    """What the kernel engine's post needs per image (see ``kernel.render_scene``):
    blur taps and reach, the noise bank with each image's offset and std, and which images
    take their noise at once (the ones without JPEG, which must be compressed first)."""
    from arclab.data.render import kernel

    levels, reach = _blur_levels(nuis, scale)
    bank, offsets = _noise_source(nuis["bg_seed"], numel)
    return {"weights": kernel.blur_weights(levels, reach.long()),
            "radius": reach.long(), "bank": bank, "offsets": torch.tensor(offsets),
            "sigma": nuis["noise"], "noise_now": nuis["jpeg"] <= 0}


def _jpeg_then_noise(img: Tensor, nuis: dict[str, Tensor], plan: dict[str, Tensor],
                     step: int) -> None:
    """The kernel engine's post for the JPEG images of a blurred batch, in place: compress
    (the torch engine's function, ``step`` images per call), then noise + clamp."""
    from arclab.data.render import kernel

    sel = (~plan["noise_now"]).nonzero().squeeze(1)
    for s in range(0, len(sel), step):
        part = sel[s:s + step]
        img.index_copy_(0, part, jpeg_compress(img[part], nuis["jpeg_quality"][part]))
    if len(sel):
        kernel.noise_and_clamp(img, plan["bank"], plan["offsets"], plan["sigma"], sel)


def _post(img: Tensor, nuis: dict[str, Tensor], scale: float) -> Tensor:
    """Blur (Gaussian, sigma in px at 112 × ``scale``, rounded to 1/8 px), JPEG compression at
    ``jpeg_quality`` where ``jpeg`` is 1, and additive Gaussian noise of std ``noise``, each
    image's from its own seed (see ``_noise``).

    Images whose taps reach equally far (ceil(3σ) px) are blurred together, each with its own
    kernel. A sigma of 1/8 px is no blur: its off-centre taps weigh e^-32, below
    float32's resolution, so images are blurred from 1/4 px on."""
    levels, reach = _blur_levels(nuis, scale)
    for radius in torch.unique(reach).tolist():
        if radius > 0:
            sel = (reach == radius).nonzero().squeeze(1)
            img = _put(img, sel, _gaussian_blur(img[sel], levels[sel], int(radius)))
    sel = (nuis["jpeg"] > 0).nonzero().squeeze(1)
    if sel.numel():
        img = _put(img, sel, jpeg_compress(img[sel], nuis["jpeg_quality"][sel]))
    sigma = nuis["noise"]
    noise = _noise(nuis["bg_seed"], img.shape[1:])
    if img.requires_grad and noise:
        return torch.addcmul(img, torch.stack(noise), sigma[:, None, None, None]).clamp(0, 1)
    for i in (sigma > 0).nonzero().squeeze(1).tolist():  # in place: one pass, no copy
        img[i].add_(noise[i], alpha=float(sigma[i]))
    return img.clamp_(0, 1)


# Per-pixel quantities that are affine or quadratic in the pixel coordinates are evaluated from
# per-image coefficients: affine (B, 3) as (j, i, 1) and quadratic (B, 6) as
# (j², i·j, i², j, i, 1), with j the column and i the row, both centred on the image.


def _sq(lin: Tensor) -> Tensor:
    """The quadratic coefficients of the square of an affine function."""
    cj, ci, c0 = lin.unbind(1)
    return torch.stack([cj * cj, 2 * cj * ci, ci * ci, 2 * cj * c0, 2 * ci * c0, c0 * c0], 1)


def _with_const(q: Tensor, const: Tensor) -> Tensor:
    return torch.cat([q[:, :-1], q[:, -1:] + const[:, None]], 1)


def _affine_map(lin: Tensor, gi: Tensor, gj: Tensor) -> Tensor:
    c = lin.float()[:, :, None, None]
    return (c[:, 0] * gj + c[:, 2]) + c[:, 1] * gi


def _quad_map(q: Tensor, gi: Tensor, gj: Tensor) -> Tensor:
    q = q.float()[:, :, None, None]
    return ((q[:, 2] * gi + q[:, 4]) * gi + q[:, 5] + (q[:, 0] * gj + q[:, 3]) * gj).addcmul_(
        q[:, 1] * gi, gj)


def _ellipse_coef(x: Tensor, y: Tensor, cx: Tensor, cy: Tensor, rx: Tensor, ry: Tensor,
                  px: Tensor) -> Tensor:
    """Quadratic coefficients of ``_ellipse``'s coverage before clamping, for x, y affine."""
    e0 = torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype)
    d2 = _sq((x - cx[:, None] * e0) / rx[:, None]) + _sq((y - cy[:, None] * e0) / ry[:, None])
    s = 0.5 * torch.minimum(rx, ry) / px
    return _with_const(-s[:, None] * d2, s + 0.5)


def _coverage(q: Tensor, gi: Tensor, gj: Tensor) -> Tensor:
    return _quad_map(q, gi, gj).clamp_(0, 1)


def _col(t: Tensor) -> Tensor:
    return t[:, None, None]


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
    feat = _features(ident, nuis)
    pix = _pixel_boxes(_feature_boxes(feat, ident["face_w"], pxf), rot, face_to_px,
                       _axes(ident), pxf)
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


def _render_kernel(ident, nuis, feat, rot, face_to_px, px, pix, size, background, post,
                   return_alpha, lm):
    """``render`` through the compiled kernel: per-image coefficients from the torch
    renderer's functions; the per-pixel scene, blur and noise in the kernel; then JPEG and
    its images' noise."""
    from arclab.data.render.kernel import render_scene

    h = _head_coefficients(ident, nuis, rot, face_to_px, px, size)
    pxf = px.float()
    lit = _lit(_palette(ident, nuis))
    bg_low = _background_low(nuis["bg_seed"], size) if background else None  # kernel upsamples
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
        cloth=lit["cloth"], hand_q=_hand_coef(nuis, h["xa"], h["ya"], pxf.double()),
        hand_c=lit["hand"])
    plan = _post_plan(nuis, size / 112.0, 3 * size * size) if post else None
    img, alpha = render_scene(columns, pix, bg_low, size, plan)  # blurred, and noised
    if post:  # where there is no JPEG; JPEG in small groups, whose temporaries stay in cache
        _jpeg_then_noise(img, nuis, plan, max(1, _JPEG_PIXELS // (size * size)))
    else:
        img.clamp_(0, 1)
    return (img, lm, alpha) if return_alpha else (img, lm)


# sizes and shape ratios that an ellipse needs positive
_SIZES = ("face_w", "face_h", "eye_r", "eye_aspect", "brow_w", "brow_t", "nose_len", "nose_w",
          "mouth_w", "lip_t", "hair_volume", "eye_open")


def _positive_sizes(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """The parameters with every size drawn <= 0 made a hairline (0.001 face units). Gaussian
    draws reach below zero far in their tails (a brow's thickness at 3.6 sigma) and often with
    ``identity_spread`` > 1 or ``expression`` > 1.6; an ellipse with a negative radius would
    paint everything outside itself. Positive sizes pass unchanged. (Beauty marks with a
    radius <= 0 are left out instead: see ``_texture``.)"""
    out = dict(params)
    for key in _SIZES:
        if key in out and bool((out[key] <= 0).any()):
            out[key] = torch.where(out[key] > 0, out[key], torch.full_like(out[key], 1e-3))
    return out


def _head_coefficients(ident, nuis, rot, face_to_px, px, size):
    """Per-image coefficients (float64 unless noted) of every per-pixel map that is affine or
    quadratic in the centred pixel coordinates (see ``_affine_map`` / ``_quad_map``): the face
    plane's x and y (``xa``, ``ya``), the hair silhouette's coverage (``hair_q``), the view
    ray's discriminant with the head ellipsoid (``disc_q``), its entry depth ``t_lin`` +
    sqrt(disc)·``iqa``, the ray's origin ``o`` (3 affine) and direction ``d`` (B, 3) in head
    coordinates, and the Lambert numerator ``num_lin`` + t·``dw`` with the normal's squared
    length weights ``ia4``. Shared by the torch renderer and the compiled kernel."""
    b = len(face_to_px)
    f64 = face_to_px.double()
    half = (size - 1) / 2
    inv = torch.linalg.inv(f64[:, :, :2])
    shift = (inv @ (half - f64[:, :, 2, None]))[:, :, 0]
    xa = torch.cat([inv[:, 0], shift[:, :1]], 1)  # face-plane x, affine in (j, i, 1)
    ya = torch.cat([inv[:, 1], shift[:, 1:]], 1)
    # hair volume: a 2-D silhouette around the projected head, upper part only
    axes = _axes(ident)
    axd = axes.double()
    top = project(torch.stack([torch.zeros(b), -0.35 * ident["face_h"], torch.zeros(b)], 1)
                  [:, None], rot, torch.eye(2, 3).expand(b, 2, 3))[:, 0].double()
    hv = ident["hair_volume"].double()
    hair_q = _ellipse_coef(xa, ya, top[:, 0], top[:, 1], axd[:, 0] * hv, axd[:, 1] * 0.8 * hv,
                           px)
    # ray-cast the head ellipsoid: view ray p(t) = (x, y, t); head coordinates q = Rᵀ p = o + t d
    rt = rot.transpose(1, 2)
    rtd = rt.double()
    o = [rtd[:, k, 0, None] * xa + rtd[:, k, 1, None] * ya for k in range(3)]  # affine
    d = rtd[:, :, 2]
    inv_a2 = 1.0 / axd**2
    qa = (d**2 * inv_a2).sum(1)
    qb = sum(o[k] * (d[:, k] * inv_a2[:, k])[:, None] for k in range(3))
    qc = _with_const(sum(_sq(o[k]) * inv_a2[:, k, None] for k in range(3)), -torch.ones(b))
    # shading: Lambert with the ellipsoid normal turned into view space
    az, el = torch.deg2rad(nuis["light_az"]), torch.deg2rad(nuis["light_el"])
    lvec = torch.stack([el.cos() * az.sin(), -el.sin(), el.cos() * az.cos()], 1)
    lh = (rt @ lvec[:, :, None])[:, :, 0]  # the light in head coordinates: n·(Rᵀl) = (Rn)·l
    w = lh.double() * inv_a2  # n·lh with n = q / axes²
    return {"xa": xa, "ya": ya, "axes": axes, "hair_q": hair_q,
            "disc_q": _sq(qb) - qa[:, None] * qc,
            # disc / (qa² · 2a) is about the signed distance (face units) inside the silhouette
            "kh": (1 / (qa**2 * 2 * axd[:, 0] * px)).float(),
            "t_lin": -qb / qa[:, None], "iqa": (1 / qa).float(), "o": o, "d": d.float(),
            "num_lin": sum(o[k] * w[:, k, None] for k in range(3)),
            "dw": (d * w).sum(1).float(), "ia4": (inv_a2**2).float()}


def _render_chunk(ident, nuis, feat, rot, face_to_px, px, pix, size, background, post,
                  return_alpha, dense=False):
    b = len(face_to_px)
    half = (size - 1) / 2
    h = _head_coefficients(ident, nuis, rot, face_to_px, px, size)
    xa, ya = h["xa"], h["ya"]
    g = torch.arange(size, dtype=torch.float32) - half
    gi, gj = g[None, :, None], g[None, None, :]
    pxf = px.float()
    ipx = _col(1 / pxf)
    if background:
        bg = F.interpolate(_background_low(nuis["bg_seed"], size), size=(size, size),
                           mode="bilinear", align_corners=False)
    else:
        bg = torch.full((b, 3, size, size), 0.5)
    lit = _lit(_palette(ident, nuis))
    hair_mask = _coverage(h["hair_q"], gi, gj)
    img = bg.lerp_(lit["hair_bg"], hair_mask[:, None])
    disc = _quad_map(h["disc_q"], gi, gj)
    head = torch.addcmul(torch.full((), 0.5), disc, _col(h["kh"])).clamp_(0, 1)
    t = _affine_map(h["t_lin"], gi, gj).addcmul_(disc.clamp(min=0).sqrt_(), _col(h["iqa"]))
    df = h["d"]
    qx, qy, qz = (_affine_map(h["o"][k], gi, gj).addcmul_(t, _col(df[:, k])) for k in range(3))
    axes = h["axes"]
    a, bh, c = (_col(axes[:, k]) for k in range(3))
    jaw_start = 0.2 * bh
    u = (qy - jaw_start).clamp_(min=0)
    kj = a * (1 - _col(ident["jaw"])) / (bh - jaw_start) ** 2 * ipx
    side = torch.addcmul(a * ipx + 0.5, u * u, -kj).addcmul_(qx.abs(), -ipx)
    head = head.mul_(side.clamp_(0, 1))
    num = _affine_map(h["num_lin"], gi, gj).addcmul_(t, _col(h["dw"]))
    ia4 = h["ia4"]
    nn = (qx * _col(ia4[:, 0])).mul_(qx)
    nn = nn.addcmul_(qy * _col(ia4[:, 1]), qy).addcmul_(qz * _col(ia4[:, 2]), qz)
    lam = num.mul_(nn.clamp_(min=1e-12).rsqrt_()).clamp_(min=0)
    amb = _col(nuis["ambient"])
    shade = torch.addcmul(amb, lam, 1 - amb)
    # features and glasses sit on the front of the head and fade out towards its sides; at a
    # large yaw the back of the head is in view, where (qx, qy) repeat the front's values
    front = torch.addcmul(0.5 - 0.2 * c * ipx, qz, ipx).clamp_(0, 1)
    col, gain = _texture(feat, lit, qx, qy, qz, front, c, pxf, pix, size, dense)
    face = col.mul_(shade.mul_(gain)[:, None])
    img = img.lerp_(face, head[:, None])
    img = _occluders(img, ident, nuis, lit, xa, ya, gi, gj, qx, qy, head, front, pxf,
                     pix, size, dense)
    img = _post(img, nuis, size / 112.0) if post else img.clamp(0, 1)
    if not return_alpha:
        return img, None
    alpha = torch.maximum(hair_mask, head)
    hand_on = nuis["occlusion"] == 3
    if bool(hand_on.any()):
        hand = _coverage(_hand_coef(nuis, xa, ya, px), gi, gj) * _col(hand_on.float())
        alpha = torch.maximum(alpha, hand)
    return img, alpha


def _hand_coef(nuis, xa, ya, px):
    hx, hy = nuis["occ_u"].double() * 0.5, nuis["occ_v"].double() * 0.5
    return _ellipse_coef(xa, ya, hx, hy, torch.full_like(hx, 0.32), torch.full_like(hx, 0.45),
                         px)


def _support(cx: Tensor, cy: Tensor, rx: Tensor, ry: Tensor, px: Tensor) -> Tensor:
    """The box (B, 2, 2) as ((x lo, y lo), (x hi, y hi)) outside which ``_ellipse_fast`` is
    exactly 0. Its coverage is s·(1 − d²) + 0.5 with s = min(rx, ry) / (2 px), positive where
    d² < 1 + px / min(rx, ry). All arguments (B,), in head units."""
    k = (1 + px / torch.minimum(rx, ry)).sqrt()
    return torch.stack([torch.stack([cx - rx * k, cy - ry * k], 1),
                        torch.stack([cx + rx * k, cy + ry * k], 1)], 1)


def _union(*boxes: Tensor) -> Tensor:
    """The smallest box (B, 2, 2) holding the given boxes."""
    stack = torch.stack(boxes)
    return torch.stack([stack[:, :, 0].amin(0), stack[:, :, 1].amax(0)], 1)


def _features(ident: dict[str, Tensor], nuis: dict[str, Tensor]) -> dict[str, Tensor]:
    """Where each small feature sits on the head surface and how large it is, {name: (B,)} in
    face units: the one source for ``_feature_boxes`` (where a feature can paint) and
    ``_texture`` (what it paints). Eyes at (±ex, ey) with radii er, eh; brows centred at
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


def _feature_boxes(f: dict[str, Tensor], a: Tensor, px: Tensor) -> Tensor:
    """Head-surface boxes (B, F, 2, 2) outside which each small feature leaves the pixels
    exactly as they are, in the order of ``_FEATURES``: ``f`` from ``_features``, ``a`` (B,)
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


def _pixel_boxes(boxes: Tensor, rot: Tensor, face_to_px: Tensor, axes: Tensor,
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


def _window(pix_box: Tensor, size: int) -> tuple[slice, slice] | None:
    """The pixel window holding every image's pixel box (B, 2, 2)."""
    lo = pix_box[:, 0].amin(0).floor().clamp(0, size)
    hi = pix_box[:, 1].amax(0).ceil().clamp(0, size)
    y0, y1, x0, x1 = int(lo[1]), int(hi[1]), int(lo[0]), int(hi[0])
    return (slice(y0, y1), slice(x0, x1)) if y1 > y0 and x1 > x0 else None


def _paint(col: Tensor, maps: tuple[Tensor, ...], pix_box: Tensor, size: int, paint,
           dense: bool = False, sel: Tensor | None = None) -> Tensor:
    """``col[..., window] = paint(col[..., window], *maps[..., window])`` where the window holds,
    for every image, its pixel box ``pix_box`` (B, 2, 2) (see ``_pixel_boxes``). ``paint`` must
    leave every pixel outside the feature's head-surface box exactly as it was, so what an
    image gets does not depend on the rest of the batch. ``col`` may be (B, 3, H, W) or
    (B, H, W). ``sel`` (K,) restricts painting to those images (``pix_box`` is then theirs,
    (K, 2, 2)). ``dense`` paints the whole frame (the same pixels, bit for bit)."""
    if sel is not None and not sel.numel():
        return col
    if dense:
        if sel is None:
            return paint(col, *maps)
        return _put(col, sel, paint(col[sel], *(m[sel] for m in maps)))
    if not len(col):
        return col
    win = _window(pix_box, size)
    if win is None:
        return col
    ys, xs = win
    if sel is None:
        painted = paint(col[..., ys, xs], *(m[:, ys, xs] for m in maps))
    else:
        part = col[sel, :, ys, xs] if col.ndim == 4 else col[sel, ys, xs]
        painted = paint(part, *(m[sel, ys, xs] for m in maps))
    if painted.requires_grad or col.requires_grad:  # autograd saved views of col: copy it
        col = col.clone()
    if sel is None:
        col[..., ys, xs] = painted
    elif col.ndim == 4:
        col[sel, :, ys, xs] = painted
    else:
        col[sel, ys, xs] = painted
    return col


def _ellipse_fast(x: Tensor, y: Tensor, cx, cy, rx, ry, ipx: Tensor) -> Tensor:
    """``_ellipse`` with ``1 / px`` given, in fewer passes over the pixels."""
    s = 0.5 * torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry)) * ipx
    u, v = (x - cx).div_(rx), (y - cy).div_(ry)
    return _cover((u * u).addcmul_(v, v), s)


def _cover(d2: Tensor, s: Tensor) -> Tensor:
    """Coverage s·(1 − d²) + 0.5, clamped to [0, 1], from an ellipse's normalised d²."""
    return torch.addcmul(s + 0.5, d2, -s).clamp_(0, 1)


def _texture(f, lit, qx, qy, qz, front, c, pxf, pix, size, dense=False):
    """The head's colour under the light, before shading, (B, 3, H, W), and a grey gain
    (B, H, W) that multiplies it (wrinkles, nose, marks). ``f``: the chunk's ``_features``.
    Small features are painted only inside the pixel window that holds them in every image
    of the batch. ``lit``: the colours of ``_lit``."""
    def p(key: str) -> Tensor:
        return f[key][:, None, None]

    skin, hair_c = lit["skin"], lit["hair"]
    ipx = _col(1 / pxf)
    hair_line = p("hair_line")
    hair = torch.maximum(torch.addcmul(hair_line * ipx + 0.5, qy, -ipx),
                         torch.addcmul(0.5 - 0.1 * c * ipx, qz, -ipx)).clamp_(0, 1)
    col = torch.lerp(skin, hair_c, hair[:, None])
    maps = (qx, qy, front)

    def wrinkles(g, x, y, fr):  # forehead lines between the hairline and the brows
        band = torch.addcmul((p("ey") - 0.12) * ipx + 0.5, y, -ipx).clamp(0, 1) * \
            torch.addcmul(0.5 - (hair_line + 0.04) * ipx, y, ipx).clamp(0, 1)
        return torch.addcmul(g, (torch.sin(y * 70) + 1) * band * fr, -0.09 * p("age") ** 2)

    gain = _paint(torch.ones_like(qy), maps, pix[:, 0], size, wrinkles, dense)
    ex, ey, er, eh, brow_y, tilt = (p(k) for k in ("ex", "ey", "er", "eh", "brow_y", "tilt"))
    white, iris_c, brow_c = lit["white"], lit["iris"], lit["brow"]
    # _ellipse_fast's terms: 1 / r² per axis and the ramp slope s = min(rx, ry) / (2 px)
    ibw2, ibt2, ier2, ieh2 = p("brow_w") ** -2, p("brow_t") ** -2, er**-2, eh**-2
    sb = 0.5 * torch.minimum(p("brow_w"), p("brow_t")) * ipx
    se, si = 0.5 * torch.minimum(er, eh) * ipx, 0.25 * er * ipx
    for side in (-1.0, 1.0):
        def eye(cw, x, y, fr, side=side):
            # brow, sclera, iris and pupil share the eye's centre column: one u², v² for all
            u, v = x - side * ex, y - ey
            uu, vv = u * u, v * v
            bv = torch.addcmul(v + (ey - brow_y), u, -side * tilt)  # sheared, from brow_y
            brow = _cover((uu * ibw2).addcmul_(bv * ibt2, bv), sb).mul_(fr)
            cw = torch.lerp(cw, brow_c, brow[:, None])  # a new tensor: cw is col's window
            sclera = _cover((uu * ier2).addcmul_(vv, ieh2), se).mul_(fr)
            cw = cw.lerp_(white, sclera[:, None])
            r2 = uu + vv
            iris = _cover(r2 * (4 * ier2), si).mul_(sclera)
            cw = cw.lerp_(iris_c, iris[:, None])
            pupil = _cover(r2 * (25 * ier2), 0.4 * si).mul_(sclera)
            return cw.mul_((1 - 0.9 * pupil)[:, None])

        col = _paint(col, maps, pix[:, 1 if side < 0 else 2], size, eye, dense)
    tip_y, nl, nw = p("tip_y"), p("nl"), p("nw")

    def nose(cw, x, y, fr):
        ridge = _ellipse_fast(x, y, 0.0, tip_y - 0.45 * nl, nw * 0.7, 0.55 * nl, ipx)
        g = 1 - 0.10 * ridge
        for side in (-1.0, 1.0):
            nostril = _ellipse_fast(x, y, side * nw, tip_y, 0.35 * nw, 0.2 * nw, ipx)
            g = g * (1 - 0.55 * nostril)
        tip = _ellipse_fast(x, y, 0.0, tip_y, 0.45 * nw, 0.35 * nw, ipx)
        return cw * torch.lerp(torch.ones(()), g * (1 + 0.12 * tip), fr)

    gain = _paint(gain, maps, pix[:, 3], size, nose, dense)
    smile, half, lip_h = p("smile"), p("half"), p("lip_h")
    lip_c = lit["lip"]

    def mouth(cw, x, y, fr):
        curved = y - p("mouth_y") + 0.9 * smile * (half**2 - x**2)
        lips = _ellipse_fast(x, curved, 0.0, 0.0, half, lip_h, ipx) * fr
        cw = torch.lerp(cw, lip_c, lips[:, None])
        gap = _ellipse_fast(x, curved, 0.0, 0.0, 0.85 * half, p("gap_h"), ipx) * lips
        return cw * (1 - 0.8 * gap[:, None])

    col = _paint(col, maps, pix[:, 4], size, mouth, dense)
    for k, m in enumerate(("mark", "mark2")):
        # the identity draw can give a radius <= 0 (p = 0.2 %): no mark then
        sel = ((f[m + "_on"] > 0.5) & (f["mark_r"] > 0)).nonzero().squeeze(1)
        mx, my, mr = (f[key][sel, None, None] for key in (m + "_x", m + "_y", "mark_r"))
        ip = ipx[sel]

        def mark(cw, x, y, fr, mx=mx, my=my, mr=mr, ip=ip):
            spot = _ellipse_fast(x, y, mx, my, mr, mr, ip)
            return cw * (1 - 0.45 * (spot * fr))

        gain = _paint(gain, maps, pix[sel, 5 + k], size, mark, dense, sel)
    return col, gain


def _occluders(img, ident, nuis, lit, xa, ya, gi, gj, qx, qy, head, front, pxf, pix,
               size, dense=False):
    """Glasses on the front of the head, masks on its surface, a hand-like blob in the image
    plane. Each is drawn only on the images that have it."""
    occ = nuis["occlusion"]
    ipx = _col(1 / pxf)
    sel = (occ == 1).nonzero().squeeze(1)
    if sel.numel():
        ex, ey, er = (ident[k][sel, None, None] for k in ("eye_dx", "eye_y", "eye_r"))
        ip = ipx[sel]

        def glasses(iw, x, y, hd, fr):
            ring = torch.zeros_like(x)
            for side in (-1.0, 1.0):
                outer = _ellipse_fast(x, y, side * ex, ey, 1.9 * er, 1.5 * er, ip)
                inner = _ellipse_fast(x, y, side * ex, ey, 1.6 * er, 1.2 * er, ip)
                ring = torch.maximum(ring, outer - inner)
            return torch.lerp(iw, torch.full_like(iw[:, :, :1, :1], 0.08),
                              (ring * hd * fr)[:, None])

        img = _paint(img, (qx, qy, head, front), pix[sel, 7], size, glasses, dense, sel)
    sel = (occ == 2).nonzero().squeeze(1)
    if sel.numel():
        top = (ident["eye_y"] + 0.65 * ident["nose_len"])[sel, None, None]
        ip = ipx[sel]
        mask = torch.addcmul(0.5 - top * ip, qy[sel], ip).clamp(0, 1) * head[sel]
        cloth = lit["cloth"][sel]
        img = _put(img, sel, torch.lerp(img[sel], cloth, mask[:, None]))
    sel = (occ == 3).nonzero().squeeze(1)
    if sel.numel():
        hand = _coverage(_hand_coef({k: nuis[k][sel] for k in ("occ_u", "occ_v")}, xa[sel],
                                    ya[sel], pxf[sel].double()), gi, gj)
        colour = lit["hand"][sel]
        img = _put(img, sel, torch.lerp(img[sel], colour, hand[:, None]))
    return img
