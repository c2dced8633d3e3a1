"""The simplest face matcher: raw pixels, PCA, cosine similarity. It calibrates how hard a
SynthFaces protocol is: a protocol this baseline solves (≥ 99.5%) or cannot beat chance with
says nothing about margins.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from arclab.data.cache import render_pairs
from arclab.data.params import SynthConfig
from arclab.data.splits import verification_pairs
from arclab.evaluation.verification import verification_accuracy_10fold

__all__ = ["NUISANCE_SWEEPS", "clean_config", "difficulty_sweep", "fit_pixel_pca",
           "pair_accuracy", "pixel_pca_embed"]


def _pixels(images: np.ndarray, size: int) -> torch.Tensor:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got {images.shape}")
    x = torch.tensor(np.asarray(images))  # a copy: cached images are read-only memmaps
    x = x.permute(0, 3, 1, 2).float() / 255
    return F.adaptive_avg_pool2d(x, size).flatten(1)


def fit_pixel_pca(images: np.ndarray, dim: int = 64, *, size: int = 32) -> dict:
    """PCA of images (N, H, W, 3) uint8 downsampled to ``size``×``size``: keeps ``dim``
    components. Returns {"mean": (P,), "components": (dim, P), "size": size}.

    Raises:
        ValueError: images not (N, H, W, 3); dim not an integer in [1, min(N, pixels)].

    Example:
        >>> imgs = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
        >>> fit_pixel_pca(imgs, 5, size=8)["components"].shape
        torch.Size([5, 192])
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    x = _pixels(images, size).double()
    if dim > min(x.shape):
        raise ValueError(f"dim must be <= min(N, pixels) = {min(x.shape)}, got {dim}")
    mean = x.mean(0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return {"mean": mean.float(), "components": vh[:dim].float(), "size": size}


def pixel_pca_embed(images: np.ndarray, model: dict, batch_size: int = 2048) -> torch.Tensor:
    """Project images (N, H, W, 3) uint8 on the PCA components: (N, dim) float32.

    Raises:
        ValueError: images not (N, H, W, 3).
    """
    if getattr(images, "ndim", 0) != 4:
        raise ValueError(f"images must be (N, H, W, 3), got {getattr(images, 'shape', None)}")
    out = [(_pixels(images[s:s + batch_size], model["size"]) - model["mean"])
           @ model["components"].T for s in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, len(model["components"]))


NUISANCE_SWEEPS: dict[str, tuple[float, ...]] = {
    "yaw_deg": (0.0, 15.0, 30.0, 45.0),
    "blur_px": (0.0, 1.0, 2.0, 3.0),
    "occlusion_rate": (0.0, 0.33, 0.67, 1.0),
    "noise": (0.0, 0.06, 0.12, 0.18),
    "age_jitter": (0.0, 0.1, 0.2, 0.3),
}
"""Levels of each nuisance knob (a ``SynthConfig`` field) for the difficulty curves."""


def clean_config(seed: int = 0) -> SynthConfig:
    """A config with every nuisance off: frontal, sharp, noiseless, unoccluded, neutral."""
    return SynthConfig(seed=seed, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, blur_px=0.0,
                       noise=0.0, jpeg_rate=0.0, occlusion_rate=0.0, expression=0.0,
                       age_jitter=0.0, scale_jitter=0.0, shift_jitter=0.0)


def pair_accuracy(model: dict, left: np.ndarray, right: np.ndarray, issame) -> dict:
    """10-fold verification accuracy of the pixel-PCA baseline on image pairs (LFW rule).

    Raises:
        ValueError: left or right not (N, H, W, 3); as
            :func:`~arclab.evaluation.verification_accuracy_10fold` (fewer than 10 pairs,
            issame not (P,) booleans).
    """
    return verification_accuracy_10fold(pixel_pca_embed(left, model),
                                        pixel_pca_embed(right, model), np.asarray(issame))


def difficulty_sweep(model: dict, knob: str, levels=None, *, seed: int = 0,
                     n_identities: int = 300, n_pairs: int = 600, size: int = 112,
                     directory=None) -> list[float]:
    """Baseline accuracy as one nuisance knob rises from off, all other nuisances off.

    Raises:
        ValueError: knob not one of :data:`NUISANCE_SWEEPS`.
    """
    if knob not in NUISANCE_SWEEPS:
        raise ValueError(f"knob must be one of {sorted(NUISANCE_SWEEPS)}, got {knob!r}")
    accuracies = []
    for level in levels if levels is not None else NUISANCE_SWEEPS[knob]:
        cfg = replace(clean_config(seed), **{knob: float(level)})
        pairs = verification_pairs(cfg, n_identities, n_pairs)
        left, right = render_pairs(pairs, size=size, directory=directory, progress=False)
        accuracies.append(pair_accuracy(model, left, right, pairs["issame"])["mean"])
    return accuracies
