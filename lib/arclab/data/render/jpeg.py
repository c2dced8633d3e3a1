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


# RGB in [0, 1] -> (Y, Cb, Cr) in 0..255 units, and back (the 255 folded in)
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5],
                         [0.5, -0.418688, -0.081312]]) * 255
_YCC2RGB = torch.tensor([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136],
                         [1.0, 1.772, 0.0]]) / 255
_K = torch.kron(_D, _D)  # 64×64: the 2-D DCT of a row-major flattened 8×8 block


def _blocks_roundtrip(x: Tensor, table: Tensor) -> Tensor:
    """DCT-quantise-inverse on (B, H, W) planes with H, W multiples of 8; table (B, 8, 8).

    Each 8×8 block, flattened to 64 values, meets the 2-D DCT as one 64×64 matrix (D ⊗ D),
    so a whole batch is two matrix products instead of many tiny ones."""
    b, h, w = x.shape
    blk = x.reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(b, -1, 64)
    coeff = blk @ _K.T
    t = table.reshape(b, 1, 64)
    coeff = coeff.div_(t).round_().mul_(t)
    return (coeff @ _K).reshape(b, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(b, h, w)


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
    x = F.pad(images, (0, pw, 0, ph), mode="replicate") if ph or pw else images
    hp, wp = x.shape[2:]
    ycc = (_RGB2YCC @ x.reshape(b, 3, -1)).view(b, 3, hp, wp)  # Y, Cb, Cr in 0..255 units
    luma_t, chroma_t = quant_tables(quality.to(torch.float32))
    y = _blocks_roundtrip(ycc[:, 0] - 128, luma_t).add_(128)
    c = ycc[:, 1:]  # 4:2:0: the mean of each 2×2 block
    chroma = (c[..., ::2, ::2] + c[..., 1::2, ::2]).add_(c[..., ::2, 1::2]).add_(
        c[..., 1::2, 1::2]).div_(4)
    chroma = _blocks_roundtrip(chroma.reshape(2 * b, hp // 2, wp // 2),
                               chroma_t.repeat_interleave(2, 0)).view(b, 2, hp // 2, wp // 2)
    up = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    out = _YCC2RGB @ torch.cat([y[:, None], up], 1).view(b, 3, -1)
    return out.view(b, 3, hp, wp)[:, :, :h, :w].clamp_(0, 1)
