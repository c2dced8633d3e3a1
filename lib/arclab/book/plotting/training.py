"""Figures of a training run and of the embedding it learned.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from arclab.book.plotting.style import axes_or_new, class_colours

__all__ = ["angle_histogram_grid", "convergence_curves", "embedding_projection",
           "pair_angle_histograms", "target_angle_curves", "training_curves"]


def training_curves(losses: list[float], validation: list[dict], *, smooth: int = 10,
                    steps_per_epoch: int | None = None) -> Figure:
    """Left: training loss per step (raw and a ``smooth``-step running mean); right: the
    validation accuracies (%) against the step. ``validation``: [{"step", name: acc}, ...]."""
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(9.5, 3.2))
    steps = np.arange(1, len(losses) + 1)
    ax_loss.plot(steps, losses, color="C0", lw=0.6, alpha=0.4, label="per step")
    if len(losses) >= smooth > 1:
        mean = np.convolve(losses, np.ones(smooth) / smooth, mode="valid")
        ax_loss.plot(steps[smooth - 1:], mean, color="C0", lw=1.8, label=f"mean of {smooth}")
    if steps_per_epoch:
        for e in range(steps_per_epoch, len(losses) + 1, steps_per_epoch):
            ax_loss.axvline(e, color="0.8", lw=0.6, zorder=0)
    ax_loss.set(xlabel="step", ylabel="margin loss (nats)", title="Training loss")
    ax_loss.legend(fontsize=7)
    names = [k for k in (validation[0] if validation else {}) if k != "step"]
    for colour, name in zip(class_colours(max(len(names), 1)), names):
        ax_val.plot([v["step"] for v in validation], [100 * v[name] for v in validation],
                    "o-", color=colour, lw=1.6, label=name)
    ax_val.axhline(50, color="C3", lw=0.8, ls=":", label="chance")
    ax_val.set(xlabel="step", ylabel="10-fold accuracy (%)",
               title="Verification on unseen identities")
    ax_val.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pair_angle_histograms(angles: dict[str, tuple[np.ndarray, np.ndarray]], *,
                          ax=None) -> Figure:
    """Angles (degrees) between the embeddings of positive pairs (solid) and negative pairs
    (dashed), one colour per model; densities, so sets of different sizes compare.
    ``angles`` maps a model name to (positive_deg, negative_deg)."""
    fig, ax = axes_or_new(ax, figsize=(7.0, 3.4))
    bins = np.linspace(0, 180, 91)
    for colour, (name, (pos, neg)) in zip(class_colours(len(angles)), angles.items()):
        ax.hist(np.asarray(pos), bins=bins, density=True, histtype="step", color=colour,
                lw=1.6, label=f"{name}: same identity")
        ax.hist(np.asarray(neg), bins=bins, density=True, histtype="step", color=colour,
                lw=1.6, ls="--", label=f"{name}: different identities")
    ax.set(xlabel="angle between embeddings (degrees)", ylabel="density", xlim=(0, 180),
           title="Positive pairs close, negative pairs near 90°")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def embedding_projection(features: torch.Tensor | np.ndarray, ids, *, ax=None,
                         title: str = "Embeddings of unseen identities (first two PCs)"
                         ) -> Figure:
    """The L2-normalised embeddings (N, D) projected on their first two principal
    components, coloured by identity."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).numpy()
    ids = np.asarray(ids)
    fig, ax = axes_or_new(ax, figsize=(4.6, 4.2))
    uniq = np.unique(ids)
    for colour, i in zip(class_colours(len(uniq)), uniq):
        ax.scatter(*xy[ids == i].T, s=12, color=colour, alpha=0.85)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def target_angle_curves(curves: dict[str, list[float]], *, smooth: int = 5, ax=None,
                        title: str = "Angle to the own class weight during training",
                        ylabel: str = "mean θ_y (degrees)", xlabel: str = "step") -> Figure:
    """The mean angle θ_y (degrees) between a sample and its own class weight, per training
    step, one line per loss (``smooth``-step running mean); ``title`` and the axis labels
    re-label it for other targets (an inversion's angle to its target embedding)."""
    fig, ax = axes_or_new(ax, figsize=(6.4, 3.6))
    for colour, (name, theta) in zip(class_colours(len(curves)), curves.items()):
        theta = np.asarray(theta, dtype=float)
        if len(theta) >= smooth > 1:
            theta = np.convolve(theta, np.ones(smooth) / smooth, mode="valid")
        ax.plot(np.arange(len(theta)) + 1, theta, color=colour, lw=1.6, label=name)
    ax.axhline(90, color="0.6", lw=0.8, ls=":")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def angle_histogram_grid(hists: dict[str, dict], edges: np.ndarray, *, ncols: int = 4
                         ) -> Figure:
    """One panel per loss: densities of positive-pair (solid) and negative-pair (dashed)
    angles from histogram counts ``{"positive", "negative"}`` over ``edges`` (degrees)."""
    n = len(hists)
    rows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(rows, ncols, figsize=(2.6 * ncols, 2.2 * rows), sharex=True,
                             squeeze=False)
    width = np.diff(edges)
    for ax, (name, h) in zip(axes.flat, hists.items()):
        for key, style in (("positive", "-"), ("negative", "--")):
            counts = np.asarray(h[key], dtype=float)
            ax.stairs(counts / max(counts.sum(), 1) / width, edges, color="C0" if key ==
                      "positive" else "C3", ls=style, lw=1.4, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_yticks([])
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("pair angle (degrees)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Angles between embeddings of unseen identities: same (solid) vs different "
                 "(dashed)", y=1.02)
    fig.tight_layout()
    return fig


def convergence_curves(runs: dict[str, dict], *, smooth: int = 10) -> Figure:
    """What :func:`arclab.train.convergence.convergence` judges, for every run of an ablation:
    left the training loss (nats), right the mean θ_y (degrees), one colour per name and one
    line per seed (``smooth``-step running means); the last fifth of training, where the rule
    looks, is shaded. ``runs``: {name: {seed: {"losses", "target_angles"}}}; a run without
    target angles (triplet loss) appears only on the left.

    Raises:
        ValueError: no runs.
    """
    if not runs or not any(runs.values()):
        raise ValueError("runs must hold at least one run")
    fig, (ax_loss, ax_theta) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    longest = 0
    for colour, (name, by_seed) in zip(class_colours(len(runs)), runs.items()):
        for k, run in enumerate(by_seed.values()):
            for ax, key in ((ax_loss, "losses"), (ax_theta, "target_angles")):
                y = np.asarray(run.get(key) or [], dtype=float)
                if len(y) >= smooth > 1:
                    y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
                if len(y):
                    ax.plot(np.arange(len(y)) + smooth, y, color=colour, lw=1.2, alpha=0.85,
                            label=name if k == 0 else None)
            longest = max(longest, len(run.get("losses") or []))
    for ax in (ax_loss, ax_theta):
        ax.axvspan(0.8 * longest, longest, color="0.9", zorder=0, label="last fifth")
        ax.set_xlabel("step")
    ax_loss.set(ylabel="training loss (nats)", title="Loss, every seed")
    ax_theta.set(ylabel="mean θ_y (degrees)", title="Angle to the own class weight")
    ax_theta.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
