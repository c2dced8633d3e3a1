"""JPEG compression as torch ops: YCbCr, 4:2:0 chroma subsampling, 8×8 DCT, quantisation with
the standard tables scaled by quality, and back. Batched; used as a SynthFaces nuisance.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["jpeg_compress", "quant_tables"]

_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]],
    dtype=torch.float32)
_CHROMA = torch.tensor([
    [17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99], [47, 66, 99, 99, 99, 99, 99, 99]] + [[99] * 8] * 4,
    dtype=torch.float32)


def _dct_matrix() -> Tensor:
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.float()


_D = _dct_matrix()


def quant_tables(quality: Tensor) -> tuple[Tensor, Tensor]:
    """Luma and chroma tables (B, 8, 8) for qualities (B,) in [1, 100], IJG scaling."""
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None]
    luma = torch.floor((_LUMA * scale + 50) / 100).clamp(1, 255)
    chroma = torch.floor((_CHROMA * scale + 50) / 100).clamp(1, 255)
    return luma, chroma


def _blocks_roundtrip(x: Tensor, table: Tensor) -> Tensor:
    """DCT-quantise-inverse on (B, H, W) planes with H, W multiples of 8; table (B, 8, 8)."""
    b, h, w = x.shape
    blk = x.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)
    coeff = _D @ blk @ _D.T
    t = table[:, None, None]
    coeff = torch.round(coeff / t) * t
    return (_D.T @ coeff @ _D).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def jpeg_compress(images: Tensor, quality: Tensor) -> Tensor:
    """Compress and decompress images (B, 3, H, W) in [0, 1] at ``quality`` (B,) (1–100).

    Sizes that are not multiples of 16 are padded by replication and cropped back.

    Example:
        >>> img = torch.rand(2, 3, 16, 16)
        >>> out = jpeg_compress(img, torch.tensor([95.0, 10.0]))
        >>> bool((out[0] - img[0]).abs().mean() < (out[1] - img[1]).abs().mean())
        True
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    ph, pw = (-h) % 16, (-w) % 16
    x = F.pad(images, (0, pw, 0, ph), mode="replicate") * 255
    r, g, bl = x.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * bl - 128
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
    luma_t, chroma_t = quant_tables(quality.to(torch.float32))
    y = _blocks_roundtrip(y, luma_t)
    chroma = F.avg_pool2d(torch.stack([cb, cr], 1), 2)  # 4:2:0
    cb2, cr2 = (_blocks_roundtrip(chroma[:, i], chroma_t) for i in (0, 1))
    up = F.interpolate(torch.stack([cb2, cr2], 1), scale_factor=2, mode="bilinear",
                       align_corners=False)
    cb, cr = up[:, 0], up[:, 1]
    y = y + 128
    out = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return (out / 255).clamp(0, 1)[:, :, :h, :w]
