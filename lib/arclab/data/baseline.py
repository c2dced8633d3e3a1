"""The simplest face matcher: raw pixels, PCA, cosine similarity. It calibrates how hard a
SynthFaces protocol is: a protocol this baseline solves (≥ 99.5%) or cannot beat chance with
says nothing about margins.

Taught in: notebooks/03_synthfaces.ipynb (planned)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["fit_pixel_pca", "pixel_pca_embed"]


def _pixels(images: np.ndarray, size: int) -> torch.Tensor:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got {images.shape}")
    x = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 255
    return F.adaptive_avg_pool2d(x, size).flatten(1)


def fit_pixel_pca(images: np.ndarray, dim: int = 64, *, size: int = 32) -> dict:
    """PCA of images (N, H, W, 3) uint8 downsampled to ``size``×``size``: keeps ``dim``
    components. Returns {"mean": (P,), "components": (dim, P), "size": size}.

    Example:
        >>> imgs = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
        >>> fit_pixel_pca(imgs, 5, size=8)["components"].shape
        torch.Size([5, 192])
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    x = _pixels(images, size).double()
    if dim > min(x.shape):
        raise ValueError(f"dim must be <= min(N, pixels) = {min(x.shape)}, got {dim}")
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return {"mean": mean.float(), "components": vh[:dim].float(), "size": size}


def pixel_pca_embed(images: np.ndarray, model: dict, batch_size: int = 2048) -> torch.Tensor:
    """Project images (N, H, W, 3) uint8 on the PCA components: (N, dim) float32."""
    out = [(_pixels(images[s:s + batch_size], model["size"]) - model["mean"])
           @ model["components"].T for s in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, len(model["components"]))
