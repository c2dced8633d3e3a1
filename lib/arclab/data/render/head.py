"""The head's geometry: pose (``rotation``), the landmarks on the head ellipsoid and their
projection to pixels, and the per-image coefficients of every per-pixel map that is affine or
quadratic in the pixel coordinates (the ray cast into the head, its shading, the hair
silhouette, the hand). The torch engine evaluates them as whole maps (``affine_map``,
``quad_map``, ``coverage``), the kernel pixel by pixel.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["affine_map", "coverage", "ellipse", "hand_coef", "head_axes", "head_coefficients",
           "landmarks_3d", "per_image", "project", "quad_map", "rotation"]


def rotation(yaw_deg: Tensor, pitch_deg: Tensor, roll_deg: Tensor) -> Tensor:
    """R = R_roll · R_pitch · R_yaw, (B, 3, 3); yaw turns about y, pitch about x, roll about z."""
    y, p, r = (torch.deg2rad(t) for t in (yaw_deg, pitch_deg, roll_deg))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], 1)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], 1)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], 1)
    return rz.view(-1, 3, 3) @ rx.view(-1, 3, 3) @ ry.view(-1, 3, 3)


def head_axes(ident: dict[str, Tensor]) -> Tensor:
    """The head ellipsoid's semi-axes (B, 3): half-width, half-height and depth."""
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
    ax = head_axes(ident)[:, None, :]
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


def ellipse(x: Tensor, y: Tensor, cx, cy, rx, ry, px: Tensor) -> Tensor:
    """Coverage of an axis-aligned ellipse; near the edge 1 − d² ≈ 2·(1 − d), so
    (1 − d²)·r/2 is the signed distance in face units there."""
    d2 = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
    r = torch.minimum(torch.as_tensor(rx), torch.as_tensor(ry))
    return _soft((1 - d2) * (0.5 * r), px)


# Per-pixel quantities that are affine or quadratic in the pixel coordinates are evaluated from
# per-image coefficients: affine (B, 3) as (j, i, 1) and quadratic (B, 6) as
# (j², i·j, i², j, i, 1), with j the column and i the row, both centred on the image.


def _sq(lin: Tensor) -> Tensor:
    """The quadratic coefficients of the square of an affine function."""
    cj, ci, c0 = lin.unbind(1)
    return torch.stack([cj * cj, 2 * cj * ci, ci * ci, 2 * cj * c0, 2 * ci * c0, c0 * c0], 1)


def _with_const(q: Tensor, const: Tensor) -> Tensor:
    return torch.cat([q[:, :-1], q[:, -1:] + const[:, None]], 1)


def affine_map(lin: Tensor, gi: Tensor, gj: Tensor) -> Tensor:
    """The per-pixel map (B, H, W) of affine coefficients ``lin`` (B, 3), in float32."""
    c = lin.float()[:, :, None, None]
    return (c[:, 0] * gj + c[:, 2]) + c[:, 1] * gi


def quad_map(q: Tensor, gi: Tensor, gj: Tensor) -> Tensor:
    """The per-pixel map (B, H, W) of quadratic coefficients ``q`` (B, 6), in float32."""
    q = q.float()[:, :, None, None]
    return ((q[:, 2] * gi + q[:, 4]) * gi + q[:, 5] + (q[:, 0] * gj + q[:, 3]) * gj).addcmul_(
        q[:, 1] * gi, gj)


def _ellipse_coef(x: Tensor, y: Tensor, cx: Tensor, cy: Tensor, rx: Tensor, ry: Tensor,
                  px: Tensor) -> Tensor:
    """Quadratic coefficients of ``ellipse``'s coverage before clamping, for x, y affine."""
    e0 = torch.tensor([0.0, 0.0, 1.0], dtype=x.dtype)
    d2 = _sq((x - cx[:, None] * e0) / rx[:, None]) + _sq((y - cy[:, None] * e0) / ry[:, None])
    s = 0.5 * torch.minimum(rx, ry) / px
    return _with_const(-s[:, None] * d2, s + 0.5)


def coverage(q: Tensor, gi: Tensor, gj: Tensor) -> Tensor:
    """``quad_map`` clamped to [0, 1]: an ellipse's coverage from ``_ellipse_coef``."""
    return quad_map(q, gi, gj).clamp_(0, 1)


def per_image(t: Tensor) -> Tensor:
    """A per-image value (B,) shaped (B, 1, 1), to broadcast over per-pixel maps (B, H, W)."""
    return t[:, None, None]


def head_coefficients(ident, nuis, rot, face_to_px, px, size):
    """Per-image coefficients (float64 unless noted) of every per-pixel map that is affine or
    quadratic in the centred pixel coordinates (see ``affine_map`` / ``quad_map``): the face
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
    axes = head_axes(ident)
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


def hand_coef(nuis, xa, ya, px):
    """Quadratic coefficients of the hand's coverage: an ellipse in the face plane."""
    hx, hy = nuis["occ_u"].double() * 0.5, nuis["occ_v"].double() * 0.5
    return _ellipse_coef(xa, ya, hx, hy, torch.full_like(hx, 0.32), torch.full_like(hx, 0.45),
                         px)
