"""Figures of the margin family: target logit curves, binary decision margins, overflow
policies and gradients, all against the angle θ in degrees.

Taught in: notebooks/02_margin_zoo.ipynb
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from arclab.book.plotting.style import axes_or_new, class_colours
from arclab.losses.geometry import decision_boundary_deg, target_gradient
from arclab.losses.margins import Margin, overflow_angle, target_logit

__all__ = ["decision_margins", "gradient_curves", "margin_panel", "overflow_policies",
           "target_logit_curves"]


def _grid(points: int = 721) -> torch.Tensor:
    return torch.linspace(0.0, 180.0, points, dtype=torch.float64)


def _curve(theta_deg: torch.Tensor, m: Margin, overflow: str = "monotonic") -> np.ndarray:
    cos = torch.cos(torch.deg2rad(theta_deg))
    return target_logit(cos, m1=m.m1, m2=m.m2, m3=m.m3, overflow=overflow).numpy()


def target_logit_curves(presets: dict[str, Margin], *, overflow: str = "monotonic",
                        points: int = 721, ax: Axes | None = None) -> Figure:
    """Target logit / s against θ (0–180°) for each preset (the ArcFace paper's figure)."""
    fig, ax = axes_or_new(ax, figsize=(6.5, 4.2))
    theta = _grid(points)
    for colour, (name, m) in zip(class_colours(len(presets)), presets.items()):
        ax.plot(theta.numpy(), _curve(theta, m, overflow), color=colour, lw=1.8,
                label=m.label or name)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set(xlabel="angle θ between feature and target centre (degrees)", xlim=(0, 180),
           ylabel="target logit / s", title=f"Target logit curves (overflow='{overflow}')")
    ax.legend(fontsize=8)
    return fig


def _boundaries(ax: Axes, theta: torch.Tensor, m: Margin, title: str, *, shade: bool) -> None:
    """Class 1 (blue) and class 2 (red) boundaries in (θ1, θ2) degrees, the diagonal, and with
    ``shade`` the band where neither class wins."""
    b = decision_boundary_deg(theta, m1=m.m1, m2=m.m2, m3=m.m3).numpy()
    t = theta.numpy()
    ax.plot(t, b, color="C0", lw=1.6, label="class 1 boundary")
    ax.plot(b, t, color="C3", lw=1.6, label="class 2 boundary")
    if shade:
        lower = np.interp(t, b, t, left=0, right=180)  # the class 2 boundary as θ2(θ1)
        ax.fill_between(t, lower, b, color="0.8", alpha=0.6, lw=0)
    ax.plot([0, 180], [0, 180], color="0.5", lw=0.6, ls=":")
    ax.set(xlim=(0, 180), ylim=(0, 180), aspect="equal", title=title, xlabel="θ1 (degrees)",
           ylabel="θ2 (degrees)")


def decision_margins(presets: dict[str, Margin], *, points: int = 361) -> Figure:
    """Binary decision boundaries in (θ1, θ2) space, one panel per preset.

    Above the upper curve class 1 wins, left of the lower one class 2 wins; the shaded band
    between them is the margin, where neither class is satisfied.
    """
    n = len(presets)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows), squeeze=False)
    theta = _grid(points)
    for ax, (name, m) in zip(axes.ravel(), presets.items()):
        _boundaries(ax, theta, m, m.label or name, shade=True)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Decision margins, binary case (shaded: neither class wins)", y=1.0)
    fig.tight_layout()
    return fig


def overflow_policies(presets: dict[str, Margin], *, points: int = 721) -> Figure:
    """The three overflow policies side by side for each preset, with θ* marked."""
    n = len(presets)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False, sharey=True)
    theta = _grid(points)
    styles = {"raw": ("C3", "-"), "easy": ("C2", "--"), "monotonic": ("C0", "-")}
    for ax, (name, m) in zip(axes[0], presets.items()):
        for policy, (colour, ls) in styles.items():
            lw = 2.4 if policy == "monotonic" else 1.3
            ax.plot(theta.numpy(), _curve(theta, m, policy), color=colour, ls=ls, lw=lw,
                    label=policy)
        ax.plot(theta.numpy(), np.cos(np.deg2rad(theta.numpy())), color="0.6", lw=0.8,
                ls=":", label="cos θ (no margin)")
        star = math.degrees(overflow_angle(m.m1, m.m2))
        if star < 180:
            ax.axvline(star, color="0.4", lw=0.8, ls="-.")
            ax.text(star, 0.85, f" θ*={star:.0f}°", fontsize=8)
        ax.set(xlim=(0, 180), xlabel="θ (degrees)", title=m.label or name)
    axes[0, 0].set_ylabel("target logit / s")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Past θ* = (π − m2)/m1 the raw formula rewards worse angles", y=1.02)
    return fig


def gradient_curves(presets: dict[str, Margin], *, points: int = 361,
                    ax: Axes | None = None) -> Figure:
    """d(target logit / s)/dθ: exact (solid) vs straight-through (dashed), per radian."""
    fig, ax = axes_or_new(ax, figsize=(6.5, 4.2))
    theta = _grid(points)[1:-1]
    for colour, (name, m) in zip(class_colours(len(presets)), presets.items()):
        kw = {"m1": m.m1, "m2": m.m2, "m3": m.m3}
        ax.plot(theta.numpy(), target_gradient(theta, **kw).numpy(), color=colour, lw=1.8,
                label=f"{m.label or name}, exact")
        ax.plot(theta.numpy(), target_gradient(theta, gradient="straight_through", **kw).numpy(),
                color=colour, lw=1.0, ls="--")
    ax.set(xlim=(0, 180), xlabel="θ (degrees)", ylabel="d(target logit / s) / dθ (per radian)",
           title="Exact gradient (solid) vs straight-through (dashed: −sin θ for all)")
    ax.legend(fontsize=7)
    return fig


def margin_panel(m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, s: float = 64.0, *,
                 references: dict[str, Margin] | None = None, fig: Figure | None = None,
                 points: int = 361) -> Figure:
    """The interactive panel's figure: a margin's target logit (×s) against the references,
    and its binary decision boundary. Used by :func:`arclab.book.widgets.margin_explorer`."""
    if fig is None:
        fig = plt.figure(figsize=(10, 3.8))
    fig.clear()
    left, right = fig.subplots(1, 2)
    theta = _grid(points)
    m = Margin(m1, m2, m3, label=f"(m1={m1:.2f}, m2={m2:.2f} rad, m3={m3:.2f})")
    for name, ref in (references or {}).items():
        left.plot(theta.numpy(), s * _curve(theta, ref), lw=0.9, ls="--",
                  label=ref.label or name)
    left.plot(theta.numpy(), s * _curve(theta, m), color="k", lw=2.2, label=m.label)
    left.set(xlim=(0, 180), xlabel="θ (degrees)", ylabel="target logit (× s)",
             title=f"Target logit, s = {s:g}")
    left.legend(fontsize=7)
    _boundaries(right, theta, m, "Binary decision margin", shade=False)
    right.legend(fontsize=7, loc="lower right")
    return fig
