"""Post-processing, the nuisances applied to a drawn image: Gaussian blur, JPEG compression
and additive Gaussian noise from a fixed bank, each image's from its own seed. The torch engine
runs ``post_process``; the kernel engine blurs and noises inside its compiled kernel
(:mod:`~arclab.data.render.kernel_post`) from ``post_plan``, then ``jpeg_then_noise`` for the
images with JPEG.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from arclab.data.render.jpeg import jpeg_compress
from arclab.data.render.kernel_post import blur_weights, noise_and_clamp
from arclab.data.render.paint import put

__all__ = ["jpeg_then_noise", "post_plan", "post_process"]


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


def post_process(img: Tensor, nuis: dict[str, Tensor], scale: float) -> Tensor:
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
            img = put(img, sel, _gaussian_blur(img[sel], levels[sel], int(radius)))
    sel = (nuis["jpeg"] > 0).nonzero().squeeze(1)
    if sel.numel():
        img = put(img, sel, jpeg_compress(img[sel], nuis["jpeg_quality"][sel]))
    sigma = nuis["noise"]
    noise = _noise(nuis["bg_seed"], img.shape[1:])
    if img.requires_grad and noise:
        return torch.addcmul(img, torch.stack(noise), sigma[:, None, None, None]).clamp(0, 1)
    for i in (sigma > 0).nonzero().squeeze(1).tolist():  # in place: one pass, no copy
        img[i].add_(noise[i], alpha=float(sigma[i]))
    return img.clamp_(0, 1)


def post_plan(nuis: dict[str, Tensor], scale: float, numel: int) -> dict[str, Tensor]:
    """What the kernel engine's post needs per image (see ``kernel.render_scene``): blur taps
    and reach, the noise bank with each image's offset and std, and which images take their
    noise at once (the ones without JPEG, which must be compressed first)."""
    levels, reach = _blur_levels(nuis, scale)
    bank, offsets = _noise_source(nuis["bg_seed"], numel)
    return {"weights": blur_weights(levels, reach.long()),
            "radius": reach.long(), "bank": bank, "offsets": torch.tensor(offsets),
            "sigma": nuis["noise"], "noise_now": nuis["jpeg"] <= 0}


def jpeg_then_noise(img: Tensor, nuis: dict[str, Tensor], plan: dict[str, Tensor],
                    step: int) -> None:
    """The kernel engine's post for the JPEG images of a blurred batch, in place: compress
    (the torch engine's function, ``step`` images per call), then noise + clamp."""
    sel = (~plan["noise_now"]).nonzero().squeeze(1)
    for s in range(0, len(sel), step):
        part = sel[s:s + step]
        img.index_copy_(0, part, jpeg_compress(img[part], nuis["jpeg_quality"][part]))
    if len(sel):
        noise_and_clamp(img, plan["bank"], plan["offsets"], plan["sigma"], sel)
