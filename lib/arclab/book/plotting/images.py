"""Image grids with optional landmarks and boxes, for SynthFaces and detection pages.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

__all__ = ["LANDMARK_COLOURS", "image_grid", "to_hwc_uint8"]

LANDMARK_COLOURS = ("#e41a1c", "#377eb8", "#4daf4a", "#ff7f00", "#984ea3")
"""Colours of the 5 landmarks, in their order: left eye (red), right eye (blue), nose (green),
left and right mouth corners (orange, purple)."""


def to_hwc_uint8(image) -> np.ndarray:
    """An image as matplotlib shows it: (H, W, 3) uint8.

    Accepts a tensor or array (H, W, 3) or (3, H, W); uint8 is kept as it is, anything else is
    taken as [0, 1] floats, clipped and scaled to 0–255 (rounded).
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return arr


def image_grid(images, *, ncols: int = 8, titles=None, landmarks=None, boxes=None,
               row_labels=None, title: str = "", scale: float = 1.3) -> Figure:
    """A grid of images (N, H, W, 3) uint8 or (N, 3, H, W) float in [0, 1].

    ``landmarks`` (N, 5, 2) pixels are drawn as coloured dots (left eye red, right eye blue,
    nose green, mouth corners orange/purple); ``boxes`` (N, 4) x1, y1, x2, y2 as rectangles;
    ``row_labels`` name each row on its left.
    """
    n = len(images)
    if n == 0:
        raise ValueError("images must not be empty")
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.4),
                             squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([]), ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(to_hwc_uint8(images[i]), interpolation="nearest")
        if landmarks is not None:
            for (x, y), colour in zip(np.asarray(landmarks[i]), LANDMARK_COLOURS):
                ax.plot(x, y, "o", ms=2.5, color=colour, mec="white", mew=0.4)
        if boxes is not None:
            x1, y1, x2, y2 = np.asarray(boxes[i])
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8,
                                       ec="#00e000"))
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7, pad=2)
        if row_labels is not None and i % ncols == 0:
            ax.set_ylabel(str(row_labels[i // ncols]), fontsize=8)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout(pad=0.3)
    return fig
