"""The book's figure style and palette.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["axes_or_new", "class_colours", "use_style"]


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


def axes_or_new(ax: Axes | None,
                figsize: tuple[float, float] = (4.5, 4.5)) -> tuple[Figure, Axes]:
    """``ax`` and its figure, or a new figure with one axes of ``figsize`` inches."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
