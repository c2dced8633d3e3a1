"""Five-point similarity alignment to the ArcFace 112×112 template, batched in torch.

The 5 points are, in order: left eye, right eye, nose tip, left mouth corner, right mouth
corner (left/right as seen in the image). Coordinates are (x, y) in pixels, x to the right,
y down, with pixel centres at integer coordinates.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ARCFACE_TEMPLATE", "align_faces", "apply_similarity", "template", "umeyama",
           "warp_affine"]

ARCFACE_TEMPLATE = torch.tensor([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=torch.float64)
"""The ArcFace 5-point template in pixels of a 112×112 crop."""


def _size(value: int, name: str = "size", low: int = 8) -> int:
    """``value`` as an int, checked to be an integer (numpy's too, not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low} pixels, got {value!r}")
    return int(value)


def _work_dtype(images: Tensor) -> torch.dtype:
    """The dtype a warp computes in: at least float32 (half precision cannot hold the
    sampling grid of a large image: its coordinates overflow or round to whole pixels)."""
    return torch.promote_types(images.dtype, torch.float32)


def template(size: int = 112) -> Tensor:
    """The template scaled to a ``size``×``size`` crop, (5, 2) float64 pixels.

    Raises:
        ValueError: ``size`` is not an integer >= 8 (numpy integers count; booleans do not).

    Example:
        >>> template(56)[0].tolist()
        [19.1473, 25.84815]
    """
    return ARCFACE_TEMPLATE * (_size(size) / 112.0)


def umeyama(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity transform (rotation, uniform scale, translation) src -> dst.

    Umeyama (1991), batched: minimises Σ‖s·R·src_i + t − dst_i‖² with det R = +1.

    Shapes: src, dst (B, P, 2) or (P, 2) with P ≥ 2 -> (B, 2, 3) or (2, 3) matrices
    [s·R | t] acting on column vectors (x, y, 1).

    Raises:
        ValueError: shapes differ, fewer than 2 points, non-finite values, or all source
            points coincide.

    Example:
        >>> src = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> m = umeyama(src, 2 * src + 3).round(decimals=4)
        >>> (m + 0.0).tolist()  # + 0.0 turns LAPACK's signed zeros into 0.0
        [[2.0, 0.0, 3.0], [0.0, 2.0, 3.0]]
    """
    if not (isinstance(src, Tensor) and isinstance(dst, Tensor)
            and src.is_floating_point() and dst.is_floating_point()):
        raise ValueError(f"src and dst must be floating-point tensors, got "
                         f"{getattr(src, 'dtype', type(src).__name__)} and "
                         f"{getattr(dst, 'dtype', type(dst).__name__)}")
    single = src.ndim == 2
    src, dst = (src[None], dst[None]) if single else (src, dst)
    if src.shape != dst.shape or src.ndim != 3 or src.shape[-1] != 2 or src.shape[1] < 2:
        raise ValueError(f"src and dst must both have shape (B, P>=2, 2), got "
                         f"{tuple(src.shape)} and {tuple(dst.shape)}")
    if not (torch.isfinite(src).all() and torch.isfinite(dst).all()):
        raise ValueError("src and dst must be finite")
    work = torch.promote_types(src.dtype, torch.float64) if src.device.type != "mps" \
        else torch.float32
    s, d = src.to(work), dst.to(work)
    mu_s, mu_d = s.mean(1, keepdim=True), d.mean(1, keepdim=True)
    sc, dc = s - mu_s, d - mu_d
    var_s = sc.pow(2).sum((1, 2)) / s.shape[1]
    if bool((var_s <= 1e-12).any()):
        raise ValueError("src points must not all coincide")
    cov = dc.transpose(1, 2) @ sc / s.shape[1]  # (B, 2, 2)
    u, sigma, vh = torch.linalg.svd(cov)
    sign = torch.ones_like(sigma)
    sign[:, -1] = torch.sign(torch.linalg.det(u) * torch.linalg.det(vh))
    rot = u @ torch.diag_embed(sign) @ vh
    scale = (sigma * sign).sum(1) / var_s
    t = mu_d.squeeze(1) - scale[:, None] * (rot @ mu_s.transpose(1, 2)).squeeze(2)
    out = torch.cat([scale[:, None, None] * rot, t[:, :, None]], 2).to(src.dtype)
    return out[0] if single else out


def apply_similarity(matrix: Tensor, points: Tensor) -> Tensor:
    """Apply (B, 2, 3) or (2, 3) matrices to (B, P, 2) or (P, 2) points.

    Raises:
        ValueError: ``matrix`` is not (..., 2, 3) or ``points`` not (..., P, 2) tensors.

    Example:
        >>> apply_similarity(torch.tensor([[2.0, 0, 1], [0, 2, 0]]), torch.ones(1, 2)).tolist()
        [[3.0, 2.0]]
    """
    if not isinstance(matrix, Tensor) or matrix.ndim < 2 or matrix.shape[-2:] != (2, 3):
        raise ValueError(f"matrix must be a (B, 2, 3) or (2, 3) tensor, got "
                         f"{tuple(getattr(matrix, 'shape', ())) or type(matrix).__name__}")
    if not isinstance(points, Tensor) or points.ndim < 2 or points.shape[-1] != 2:
        raise ValueError(f"points must be a (B, P, 2) or (P, 2) tensor, got "
                         f"{tuple(getattr(points, 'shape', ())) or type(points).__name__}")
    return points @ matrix[..., :2].transpose(-1, -2) + matrix[..., 2].unsqueeze(-2)


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got "
                         f"{getattr(images, 'dtype', type(images).__name__)} of shape "
                         f"{tuple(getattr(images, 'shape', ()))}")
    if images.shape[1] < 1 or images.shape[2] < 2 or images.shape[3] < 2:
        raise ValueError(f"images must have C >= 1 channels and H, W >= 2 pixels (bilinear "
                         f"sampling needs two), got shape {tuple(images.shape)}")


def warp_affine(images: Tensor, matrix: Tensor, size: tuple[int, int]) -> Tensor:
    """Warp images so that output pixel q samples input pixel p with q = M·p (like OpenCV's
    ``warpAffine(img, M, size)``), bilinear, zeros outside.

    Computed in float32 at least (float16 and bfloat16 cannot hold the sampling grid of a
    large image) and returned in the images' dtype.

    Shapes: images (B, C, H, W) float, H, W >= 2; matrix (B, 2, 3) mapping input to output
    pixels; size (out_h, out_w) -> (B, C, out_h, out_w). B = 0 gives an empty batch.

    Raises:
        ValueError: images not a float (B, C, H, W) tensor with H, W >= 2; matrix not
            (B, 2, 3) and finite; size not two integers >= 1.

    Example:
        >>> shift = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])  # one pixel right
        >>> warp_affine(torch.eye(3)[None, None], shift, (3, 3))[0, 0].tolist()
        [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    """
    _check_images(images)
    b, _, h, w = images.shape
    if (not isinstance(matrix, Tensor) or matrix.shape != (b, 2, 3)
            or not bool(torch.isfinite(matrix).all())):
        raise ValueError(f"matrix must be a finite ({b}, 2, 3) tensor, got "
                         f"{tuple(getattr(matrix, 'shape', ())) or type(matrix).__name__}")
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"size must be (out_h, out_w), got {size!r}")
    out_h, out_w = (_size(v, "size", 1) for v in size)
    if b == 0:
        return images.new_zeros((0, images.shape[1], out_h, out_w))
    m = matrix.to(torch.float64)
    full = torch.cat([m, m.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], 1)
    inv = torch.linalg.inv(full)[:, :2]  # output pixel -> input pixel
    # normalised coords (align_corners=True): x_n = 2x/(W-1) - 1
    to_norm_in = m.new_tensor([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
    from_norm_out = m.new_tensor([[(out_w - 1) / 2, 0, (out_w - 1) / 2],
                                  [0, (out_h - 1) / 2, (out_h - 1) / 2], [0, 0, 1]])
    inv_full = torch.cat([inv, m.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], 1)
    work = _work_dtype(images)
    theta = (to_norm_in @ inv_full @ from_norm_out)[:, :2].to(work)
    grid = F.affine_grid(theta, [b, images.shape[1], out_h, out_w], align_corners=True)
    out = F.grid_sample(images.to(work), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out.to(images.dtype)


def align_faces(images: Tensor, landmarks: Tensor, size: int = 112) -> Tensor:
    """Crop ``size``×``size`` faces aligned to the ArcFace template from 5 landmarks.

    Computed in float32 at least and returned in the images' dtype, so float16 and bfloat16
    images align as their float32 values do (rounded once at the end).

    Shapes: images (B, C, H, W) float, H, W >= 2; landmarks (B, 5, 2) pixels ->
    (B, C, size, size); B = 0 gives an empty batch.

    Raises:
        ValueError: images not a float (B, C, H, W) tensor with H, W >= 2; landmarks not
            (B, 5, 2), not finite or all at one point; size not an integer >= 8.

    Example:
        >>> img = torch.rand(2, 3, 200, 160)
        >>> align_faces(img, template(112).float().expand(2, 5, 2) + 20, 112).shape
        torch.Size([2, 3, 112, 112])

    Taught in: notebooks/03_synthfaces.ipynb
    """
    _check_images(images)
    size = _size(size)
    if (not isinstance(landmarks, Tensor) or landmarks.ndim != 3
            or landmarks.shape[1:] != (5, 2) or landmarks.shape[0] != len(images)):
        raise ValueError(f"landmarks must have shape ({len(images)}, 5, 2), got "
                         f"{tuple(getattr(landmarks, 'shape', ())) or type(landmarks).__name__}")
    if len(images) == 0:
        return images.new_zeros((0, images.shape[1], size, size))
    dst = template(size).to(landmarks.device).expand(len(images), 5, 2)
    return warp_affine(images, umeyama(landmarks.double(), dst), (size, size))
