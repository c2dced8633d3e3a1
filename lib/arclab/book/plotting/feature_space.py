"""Figures of feature geometry: decision regions, features on the circle and the sphere,
angle distributions.

Taught in: notebooks/00_tour.ipynb and notebooks/01_softmax_to_arcface.ipynb
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from arclab.book.plotting.style import axes_or_new, class_colours

__all__ = ["angle_histograms", "decision_regions", "features_2d", "features_3d"]


def decision_regions(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     y: torch.Tensor, *, weight: torch.Tensor | None = None,
                     extent: float | None = None, resolution: int = 300,
                     title: str = "Decision regions",
                     ax: Axes | None = None) -> Figure:
    """Class regions of a 2-D classifier, the points, and the class weight directions.

    Args:
        predict: maps (M, 2) features to (M,) class indices.
        x, y: (N, 2) features (arbitrary feature units) and (N,) labels.
        weight: (C, 2) class weights, drawn as arrows of unit length from the origin.
        extent: half-width of the square plotted; default 1.1 × the largest |coordinate|.
    """
    fig, ax = axes_or_new(ax)
    n_classes = int(y.max()) + 1
    colours = class_colours(n_classes)
    extent = extent or 1.1 * float(x.abs().max())
    grid = torch.linspace(-extent, extent, resolution)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    regions = predict(torch.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape)
    ax.imshow(regions.numpy(), origin="lower", extent=(-extent, extent, -extent, extent),
              cmap=ListedColormap(colours), alpha=0.25, vmin=-0.5, vmax=n_classes - 0.5,
              interpolation="nearest")
    for c in range(n_classes):
        pts = x[y == c].numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=9, color=colours[c], label=f"class {c}",
                   edgecolors="none")
    if weight is not None:
        w = weight / weight.norm(dim=1, keepdim=True) * 0.6 * extent
        for c, (wx, wy) in enumerate(np.asarray(w)):
            ax.annotate("", xy=(wx, wy), xytext=(0, 0),
                        arrowprops={"arrowstyle": "->", "color": colours[c], "lw": 2})
    ax.plot([0], [0], "k+", ms=8)
    ax.set(xlim=(-extent, extent), ylim=(-extent, extent), aspect="equal",
           xlabel="feature $x_1$ (a.u.)", ylabel="feature $x_2$ (a.u.)", title=title)
    ax.legend(loc="lower left", fontsize=7, markerscale=1.5, framealpha=0.8)
    return fig


def _unit_circle(ax: Axes) -> None:
    t = np.linspace(0, 2 * np.pi, 361)
    ax.plot(np.cos(t), np.sin(t), color="0.6", lw=0.8, zorder=0)


def features_2d(features: torch.Tensor, y: torch.Tensor, *, weight: torch.Tensor | None = None,
                normalise: bool = False, title: str = "Embeddings by identity",
                ax: Axes | None = None) -> Figure:
    """2-D embeddings coloured by class, with the class weight directions as lines.

    ``normalise`` projects features onto the unit circle (what a cosine head sees).
    Shapes: features (N, 2), y (N,), weight (C, 2). Units: arbitrary feature units.
    """
    fig, ax = axes_or_new(ax)
    f = torch.nn.functional.normalize(features, dim=1) if normalise else features
    n_classes = int(y.max()) + 1
    colours = class_colours(n_classes)
    reach = 1.15 if normalise else 1.1 * float(f.abs().max())
    if normalise:
        _unit_circle(ax)
    for c in range(n_classes):
        pts = f[y == c].numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=6, color=colours[c], label=f"id {c}",
                   edgecolors="none", alpha=0.8)
    if weight is not None:
        w = torch.nn.functional.normalize(weight, dim=1).numpy() * reach
        for c, (wx, wy) in enumerate(w):
            ax.plot([0, wx], [0, wy], color=colours[c], lw=1.2, ls="--")
    ax.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal", title=title,
           xlabel="embedding $x_1$" + (" (unit norm)" if normalise else " (a.u.)"),
           ylabel="embedding $x_2$" + (" (unit norm)" if normalise else " (a.u.)"))
    return fig


def features_3d(features: torch.Tensor, y: torch.Tensor, *,
                title: str = "Embeddings on the unit sphere",
                ax: Axes | None = None) -> Figure:
    """3-D embeddings normalised onto the unit sphere, coloured by class.

    ``ax`` must be a 3-D axes (``projection="3d"``) if given. Shapes: features (N, 3), y (N,).
    """
    if ax is None:
        fig = plt.figure(figsize=(4.5, 4.5))
        ax = fig.add_subplot(projection="3d")
    fig = ax.figure
    f = torch.nn.functional.normalize(features, dim=1).numpy()
    u, v = np.mgrid[0:2 * np.pi:30j, 0:np.pi:15j]
    ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85",
                      lw=0.4)
    colours = class_colours(int(y.max()) + 1)
    for c in range(int(y.max()) + 1):
        pts = f[(y == c).numpy()]
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=5, color=colours[c], depthshade=False)
    ax.set(xlabel="$x_1$", ylabel="$x_2$", zlabel="$x_3$ (unit norm)", title=title,
           xlim=(-1, 1), ylim=(-1, 1), zlim=(-1, 1))
    ax.set_box_aspect((1, 1, 1))
    return fig


def angle_histograms(angles: dict[str, tuple[torch.Tensor, torch.Tensor]], *,
                     ax: Axes | None = None) -> Figure:
    """Per loss: angles to the own class centre (solid) and to the nearest other centre
    (dashed), in degrees. The space between the two groups is the angular gap.

    ``angles`` maps a loss name to (own_deg, nearest_other_deg), each (N,).
    """
    fig, ax = axes_or_new(ax, figsize=(7.0, 3.6))
    bins = np.linspace(0, 180, 91)
    palette = class_colours(len(angles))
    for colour, (name, (own, other)) in zip(palette, angles.items()):
        ax.hist(own.numpy(), bins=bins, histtype="step", color=colour, lw=1.6,
                label=f"{name}: to own centre")
        ax.hist(other.numpy(), bins=bins, histtype="step", color=colour, lw=1.6, ls="--",
                label=f"{name}: to nearest other centre")
    ax.set(xlabel="angle θ (degrees)", ylabel="samples", xlim=(0, 180),
           title="Margins push own-class angles down and other-class angles up")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
