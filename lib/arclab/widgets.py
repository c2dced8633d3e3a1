"""Interactive controls. Each comes with a static figure in the notebook for readers without
a kernel (the rendered book).

Taught in: notebooks/02_margin_zoo.ipynb
"""

from __future__ import annotations

from arclab.margins import PRESETS

__all__ = ["margin_explorer"]


def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def margin_explorer(m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, s: float = 64.0,
                    references: tuple[str, ...] = ("normface", "sphereface", "cosface")):
    """Sliders for m1, m2 (radians), m3 and s that redraw :func:`arclab.plotting.margin_panel`.

    Returns an ``ipywidgets.VBox``: two rows of sliders above an ``Image`` widget holding the
    figure as PNG. The image is replaced on every slider change; no ``Output`` widget is used,
    so headless execution (papermill/nbclient) never waits on captured output. The defaults are
    ArcFace's (1, 0.5, 0) with s = 64; ``references`` are drawn dashed for comparison.
    """
    import ipywidgets as w

    from arclab import plotting

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
    image = w.Image(format="png")

    def redraw(_change=None) -> None:
        values = [sliders[k].value for k in ("m1", "m2", "m3", "s")]
        image.value = _png(plotting.margin_panel(*values, references=refs))

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    redraw()
    rows = list(sliders.values())
    return w.VBox([w.HBox(rows[:2]), w.HBox(rows[2:]), image])
