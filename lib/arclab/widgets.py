"""Interactive controls. Each comes with a static figure in the notebook for readers without
a kernel (the rendered book).

Taught in: notebooks/02_margin_zoo.ipynb
"""

from __future__ import annotations

from arclab.margins import PRESETS

__all__ = ["margin_explorer"]


def margin_explorer(m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, s: float = 64.0,
                    references: tuple[str, ...] = ("normface", "sphereface", "cosface")):
    """Sliders for m1, m2 (radians), m3 and s that redraw :func:`arclab.plotting.margin_panel`.

    Returns an ``ipywidgets.VBox``: a row of four sliders above the live figure. The defaults
    are ArcFace's (1, 0.5, 0) with s = 64; ``references`` are drawn dashed for comparison.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from arclab.plotting import margin_panel

    unknown = [r for r in references if r not in PRESETS]
    if unknown:
        raise ValueError(f"references must be presets {sorted(PRESETS)}, got {unknown}")
    refs = {r: PRESETS[r] for r in references}
    layout = {"continuous_update": False, "readout_format": ".2f"}
    sliders = {
        "m1": w.FloatSlider(m1, min=0.5, max=2.0, step=0.05, description="m1", **layout),
        "m2": w.FloatSlider(m2, min=0.0, max=1.0, step=0.05, description="m2 (rad)", **layout),
        "m3": w.FloatSlider(m3, min=0.0, max=0.6, step=0.05, description="m3", **layout),
        "s": w.FloatSlider(s, min=1.0, max=128.0, step=1.0, description="s", **layout),
    }

    def redraw(m1: float, m2: float, m3: float, s: float) -> None:
        fig = margin_panel(m1, m2, m3, s, references=refs)
        display(fig)
        plt.close(fig)

    out = w.interactive_output(redraw, sliders)
    return w.VBox([w.HBox(list(sliders.values())[:2]), w.HBox(list(sliders.values())[2:]), out])
