"""SynthFaces: render identities under nuisances, aligned crops or whole images, with exact
landmarks and boxes.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

from arclab.data.align import template, umeyama
from arclab.data.params import SynthConfig, identity_params, nuisance_params
from arclab.data.render import landmarks_3d, project, render, rotation

__all__ = ["face_boxes", "plane_landmarks", "render_faces"]


def plane_landmarks(ident: dict[str, Tensor], nuis: dict[str, Tensor]) -> Tensor:
    """The 5 landmarks (B, 5, 2) in the face plane under each image's pose, which alignment
    maps to the template."""
    rot = rotation(nuis["yaw"], nuis["pitch"], nuis["roll"])
    eye = torch.eye(2, 3).expand(len(rot), 2, 3)
    return project(landmarks_3d(ident, nuis), rot, eye)


def face_boxes(ident: dict[str, Tensor], nuis: dict[str, Tensor], face_to_px: Tensor) -> Tensor:
    """Face boxes (B, 4) as x1, y1, x2, y2 in output pixels: the extent of the head surface
    from the hairline down to the chin, over the half of the head facing the camera."""
    rot = rotation(nuis["yaw"], nuis["pitch"], nuis["roll"])
    a, b = ident["face_w"][:, None], ident["face_h"][:, None]
    theta = torch.linspace(0, torch.pi, 13)[1:-1]  # polar angle from the top of the head
    phi = torch.linspace(0, 2 * torch.pi, 25)
    th, ph = (t.reshape(-1) for t in torch.meshgrid(theta, phi, indexing="ij"))
    x, y, z = a * th.sin() * ph.cos(), -b * th.cos(), 0.85 * a * th.sin() * ph.sin()
    pts = torch.stack([x, y, z], 2)
    facing = (pts @ rot.transpose(1, 2))[..., 2] >= 0  # towards the camera
    below = y >= ident["hairline"][:, None] * b
    proj = project(pts, rot, face_to_px)
    keep = (facing & below)[..., None]
    lo = torch.where(keep, proj, torch.full_like(proj, float("inf"))).min(1).values
    hi = torch.where(keep, proj, torch.full_like(proj, -float("inf"))).max(1).values
    lm = project(landmarks_3d(ident, nuis), rot, face_to_px)
    return torch.cat([torch.minimum(lo, lm.min(1).values), torch.maximum(hi, lm.max(1).values)],
                     1)


def render_faces(cfg: SynthConfig, identities, indices, *, size: int = 112,
                 aligned: bool = True, post: bool = True, engine: str = "auto",
                 **overrides) -> dict[str, Tensor]:
    """Render pictures ``indices`` of ``identities``: deterministic in (cfg, identity, index).

    Args:
        aligned: crops whose 5 landmarks match the ArcFace template scaled to ``size``;
            otherwise the face sits near the centre with scale and shift jitter.
        engine: the renderer's engine (see :func:`arclab.data.render.render`): the compiled
            kernel unless gradients are needed.
        overrides: fixed nuisance values, e.g. ``yaw=70.0`` (see ``nuisance_params``).

    Returns:
        {"images": (B, 3, size, size) float32 in [0, 1], "landmarks": (B, 5, 2) pixels,
        "boxes": (B, 4) pixels, "identities": (B,) int64, "nuisance": dict of (B,)}.

    Raises:
        ValueError: size < 16, or bad identities / indices / overrides.

    Example:
        >>> out = render_faces(SynthConfig(), [0, 1], [0, 0], size=32)
        >>> tuple(out["images"].shape), tuple(out["landmarks"].shape)
        ((2, 3, 32, 32), (2, 5, 2))
    """
    if not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
    ident = identity_params(cfg, identities)
    nuis = nuisance_params(cfg, identities, indices, **overrides)
    b = len(ident["face_w"])
    if aligned:
        face_to_px = umeyama(plane_landmarks(ident, nuis).double(),
                             template(size).expand(b, 5, 2)).float()
    else:
        k = size * 0.33 * nuis["scale"]
        cx = size / 2 + nuis["shift_x"] * k
        cy = size / 2 + nuis["shift_y"] * k
        face_to_px = torch.zeros(b, 2, 3)
        face_to_px[:, 0, 0], face_to_px[:, 1, 1] = k, k
        face_to_px[:, 0, 2], face_to_px[:, 1, 2] = cx, cy
    images, landmarks = render(ident, nuis, face_to_px, size, background=cfg.background,
                               post=post, engine=engine)
    return {"images": images, "landmarks": landmarks,
            "boxes": face_boxes(ident, nuis, face_to_px),
            "identities": torch.as_tensor(identities, dtype=torch.int64), "nuisance": nuis}
