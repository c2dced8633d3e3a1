"""Figures for the detection pages: detections on a scene, the prior sizes, loss terms.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from arclab.book.plotting.images import LANDMARK_COLOURS, to_hwc_uint8
from arclab.book.plotting.style import axes_or_new
from arclab.detection.priors import resolve_prior_config

__all__ = ["DIFFICULTY_COLOURS", "detections_on_scene", "loss_terms", "pr_curves",
           "prior_boxes"]

DIFFICULTY_COLOURS = ("#2ca02c", "#ff7f0e", "#d62728")
"""Ground-truth box colours: easy, medium, hard."""


def detections_on_scene(image, gt_boxes, difficulty, detection: dict, *,
                        score_min: float = 0.5, ax: Axes | None = None,
                        title: str = "") -> Figure:
    """A scene with its faces (dashed, coloured by difficulty) and the detections scoring at
    least ``score_min`` (white boxes with their score, landmarks as coloured dots).

    ``detection``: {"boxes": (D, 4), "scores": (D,), "landmarks": (D, 5, 2)} in pixels, as
    :func:`arclab.detection.postprocess.detect` returns for one image.
    """
    fig, ax = axes_or_new(ax, (5.0, 5.0))
    ax.imshow(to_hwc_uint8(image))
    for (x1, y1, x2, y2), d in zip(np.asarray(gt_boxes), np.asarray(difficulty)):
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ls="--",
                                   ec=DIFFICULTY_COLOURS[int(d)]))
    scores = np.asarray(detection["scores"].cpu())
    keep = scores >= score_min
    for (x1, y1, x2, y2), s, pts in zip(np.asarray(detection["boxes"].cpu())[keep],
                                        scores[keep],
                                        np.asarray(detection["landmarks"].cpu())[keep]):
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.0,
                                   ec="white"))
        ax.text(x1, y1 - 1, f"{s:.2f}", color="white", fontsize=6, va="bottom")
        for (x, y), colour in zip(pts, LANDMARK_COLOURS):
            ax.plot(x, y, "o", ms=2, color=colour)
    ax.set_xticks([]), ax.set_yticks([])
    handles = [plt.Line2D([], [], ls="--", color=c, label=f"{n} face")
               for c, n in zip(DIFFICULTY_COLOURS, ("easy", "medium", "hard"))]
    handles.append(plt.Line2D([], [], color="white", label=f"detection ≥ {score_min}"))
    leg = ax.legend(handles=handles, fontsize=7, loc="lower right", facecolor="0.3",
                    labelcolor="white", framealpha=0.8)
    leg.get_frame().set_edgecolor("none")
    ax.set_title(title or "ground truth (dashed) and detections (white)")
    return fig


def prior_boxes(image_size: tuple[int, int], config: str | dict = "port", *,
                ax: Axes | None = None) -> Figure:
    """The anchor boxes of one cell per pyramid level, drawn at their true size on the image
    frame (the cells of a level repeat every ``stride`` pixels)."""
    h, w = image_size
    cfg = resolve_prior_config(config)
    fig, ax = axes_or_new(ax, (5.0, 5.0 * h / w))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(cfg["steps"])))
    for level, (sizes, step, colour) in enumerate(zip(cfg["min_sizes"], cfg["steps"],
                                                      colours)):
        cx, cy = w * (level + 1) / (len(cfg["steps"]) + 1), h / 2
        for s in sizes:
            ax.add_patch(plt.Rectangle((cx - s / 2, cy - s / 2), s, s, fill=False, lw=1.2,
                                       ec=colour))
        ax.plot(cx, cy, "+", color=colour, label=f"stride {step}: "
                f"{', '.join(f'{s:.0f}' for s in sizes)} px")
    ax.set_xlim(0, w), ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("x (pixels)"), ax.set_ylabel("y (pixels)")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"anchor sizes per pyramid level on a {w}×{h} image")
    return fig


def loss_terms(terms: dict[str, list[float]], *, smooth: int = 20,
               ax: Axes | None = None) -> Figure:
    """Each loss term over the training steps (moving average of ``smooth`` steps), log y."""
    fig, ax = axes_or_new(ax, (6.0, 3.6))
    for name, values in terms.items():
        v = np.asarray(values, dtype=float)
        if len(v) == 0 or not np.any(v > 0):
            continue
        k = max(1, min(smooth, len(v)))
        ax.plot(np.arange(k - 1, len(v)), np.convolve(v, np.ones(k) / k, mode="valid"),
                label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step"), ax.set_ylabel("loss term (unweighted)")
    ax.legend(fontsize=8)
    ax.set_title("multitask loss terms during training")
    return fig


def pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], *,
              ap: dict[str, float] | None = None, ax: Axes | None = None) -> Figure:
    """Precision against recall per subset ({name: (recall, precision)}), AP in the legend."""
    fig, ax = axes_or_new(ax, (4.6, 4.0))
    for (name, (recall, precision)), colour in zip(curves.items(), DIFFICULTY_COLOURS):
        label = name if ap is None else f"{name} (AP {100 * ap[name]:.1f})"
        ax.plot(recall, precision, color=colour, label=label)
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall"), ax.set_ylabel("precision")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("precision-recall at IoU 0.5, WIDER rules")
    return fig
