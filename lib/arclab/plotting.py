"""One figure style and the figure functions the notebooks call.

Every function takes ``ax=None`` (a new figure when absent), labels its axes with units and
returns the ``Figure``.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

__all__ = ["class_colours", "decision_regions", "use_style"]


def use_style() -> None:
    """The book's figure style: SVG output in notebooks, readable sizes, light grid."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "axes.titlesize": 11,
                         "figure.figsize": (6.0, 4.0)})
    try:  # only inside IPython
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("svg")
    except Exception:  # noqa: BLE001 - outside a kernel there is nothing to set
        pass


def class_colours(n_classes: int) -> list:
    """A qualitative palette with one colour per class."""
    import seaborn as sns

    return sns.color_palette("tab10" if n_classes <= 10 else "husl", n_classes)


def _axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 4.5)) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def decision_regions(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     y: torch.Tensor, *, weight: torch.Tensor | None = None,
                     extent: float | None = None, resolution: int = 300, title: str = "",
                     ax: Axes | None = None) -> Figure:
    """Class regions of a 2-D classifier, the points, and the class weight directions.

    Args:
        predict: maps (M, 2) features to (M,) class indices.
        x, y: (N, 2) features (arbitrary feature units) and (N,) labels.
        weight: (C, 2) class weights, drawn as arrows of unit length from the origin.
        extent: half-width of the square plotted; default 1.1 × the largest |coordinate|.
    """
    fig, ax = _axes(ax)
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
