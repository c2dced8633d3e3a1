"""Interactive controls. Each comes with a static figure in the notebook for readers without
a kernel (the rendered book).

Two margin explorers: :func:`margin_explorer` (ipywidgets; redraws the library's matplotlib
panel, so it needs a running kernel) and :func:`margin_explorer_html` (a self-contained
HTML/JavaScript widget that redraws in the page itself, so it also works in the static book).
The face-analysis demo's panels (:func:`face_compare_panel`, :func:`face_search_panel`) need a
kernel; notebook 14 shows static tables beside them.

Taught in: notebooks/02_margin_zoo.ipynb
"""

from __future__ import annotations

import html
import json
import math
import uuid
from pathlib import Path
from typing import get_args

import torch

from arclab.book import plotting
from arclab.losses.geometry import decision_boundary_deg
from arclab.losses.margins import PRESETS, Overflow, target_logit

__all__ = ["EXPLORER_SLIDERS", "face_compare_panel", "face_search_panel", "margin_explorer",
           "margin_explorer_html"]

EXPLORER_SLIDERS: dict[str, tuple[float, float, float]] = {
    "m1": (0.5, 2.0, 0.05),
    "m2": (0.0, 1.5, 0.05),  # radians
    "m3": (0.0, 0.6, 0.05),
    "s": (1.0, 128.0, 1.0),
}
"""(min, max, step) of each slider of both explorers; m2 in radians."""

_ASSETS = Path(__file__).parent / "assets"


def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def margin_explorer(m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, s: float = 64.0,
                    references: tuple[str, ...] = ("normface", "sphereface", "cosface")):
    """Sliders for m1, m2 (radians), m3 and s that redraw :func:`arclab.book.plotting.margin_panel`.

    Returns an ``ipywidgets.VBox``: two rows of sliders above an ``Image`` widget holding the
    figure as PNG. The image is replaced on every slider change; no ``Output`` widget is used,
    so headless execution (papermill/nbclient) never waits on captured output. The defaults are
    ArcFace's (1, 0.5, 0) with s = 64; ``references`` are drawn dashed for comparison.
    """
    import ipywidgets as w

    unknown = [r for r in references if r not in PRESETS]
    if unknown:
        raise ValueError(f"references must be presets {sorted(PRESETS)}, got {unknown}")
    refs = {r: PRESETS[r] for r in references}
    layout = {"continuous_update": False, "readout_format": ".2f"}
    sliders = {
        "m1": w.FloatSlider(m1, min=0.5, max=2.0, step=0.05, description="m1", **layout),
        "m2": w.FloatSlider(m2, min=0.0, max=1.5, step=0.05, description="m2 (rad)", **layout),
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


def _check_slider(name: str, value: float) -> float:
    lo, hi, step = EXPLORER_SLIDERS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    ticks = (value - lo) / step
    if not lo <= value <= hi or abs(ticks - round(ticks)) > 1e-6:
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}] in steps of {step:g} (a slider "
                         f"position), got {value!r}")
    return float(value)


def _initial_rows(m1: float, m2: float, m3: float, s: float, overflow: str,
                  points: int) -> list[tuple[float, float, float]]:
    """(θ in degrees, target logit × s, class 1 boundary θ2 in degrees) by the library."""
    theta = torch.linspace(0.0, 180.0, points, dtype=torch.float64)
    logit = s * target_logit(torch.cos(torch.deg2rad(theta)), m1=m1, m2=m2, m3=m3,
                             overflow=overflow)
    boundary = decision_boundary_deg(theta, m1=m1, m2=m2, m3=m3, overflow=overflow)
    return list(zip(theta.tolist(), logit.tolist(), boundary.tolist()))


def _explorer_config(m1: float, m2: float, m3: float, s: float, overflow: str,
                     references: tuple[str, ...], points: int, element_id: str | None
                     ) -> tuple[dict[str, float], str, dict]:
    """The explorer's checked starting values, its root element id and its JSON config."""
    start = {k: _check_slider(k, v) for k, v in (("m1", m1), ("m2", m2), ("m3", m3), ("s", s))}
    policies = get_args(Overflow)
    if overflow not in policies:
        raise ValueError(f"overflow must be one of {policies}, got {overflow!r}")
    bad = [r for r in references if r not in PRESETS or not PRESETS[r].normalised]
    if bad or len(references) > 5:
        raise ValueError(f"references must be at most 5 normalised presets of "
                         f"{sorted(k for k, m in PRESETS.items() if m.normalised)}, got "
                         f"{list(references)}")
    if isinstance(points, bool) or not isinstance(points, int) or not 19 <= points <= 1441:
        raise ValueError(f"points must be an int in [19, 1441], got {points!r}")
    root_id = element_id or f"arclab-mx-{uuid.uuid4().hex[:12]}"
    config = {"initial": {**start, "overflow": overflow}, "points": points,
              "references": [{"name": r, "label": PRESETS[r].label, "m1": PRESETS[r].m1,
                              "m2": PRESETS[r].m2, "m3": PRESETS[r].m3} for r in references]}
    return start, root_id, config


def margin_explorer_html(m1: float = 1.0, m2: float = 0.5, m3: float = 0.0, s: float = 64.0, *,
                         overflow: Overflow = "monotonic",
                         references: tuple[str, ...] = ("normface", "sphereface", "cosface"),
                         points: int = 181, element_id: str | None = None) -> str:
    """A kernel-free margin explorer: HTML with inline CSS and JavaScript, no external files.

    Sliders for m1, m2 (radians), m3 and s and a menu for the overflow policy redraw, in the
    browser, the target logit s·(cos(m1·θ + m2) − m3) against θ in degrees (``references`` dashed,
    at the same s and policy) and the binary decision margin (class 1 wins above the blue
    curve θ2 = arccos(target logit / s), class 2 right of the red one). Show it with
    ``IPython.display.HTML(...)``; it works in JupyterLab and in the static book.

    The script mirrors :func:`arclab.losses.margins.target_logit` and
    :func:`arclab.losses.geometry.decision_boundary_deg`. Each redraw writes what it drew into a
    hidden table (``table.mx-values``: rows with ``data-theta-deg``, ``data-logit`` (× s) and
    ``data-boundary-deg``) and the settings into the root's ``data-drawn`` JSON. Before any
    script runs, that table holds the library's own values at the starting settings.

    Args:
        m1, m2, m3, s: starting slider positions; each must lie on its slider
            (:data:`EXPLORER_SLIDERS`: range and step; m2 in radians).
        overflow: starting policy, ``"monotonic"`` | ``"raw"`` | ``"easy"``.
        references: names of normalised presets in :data:`arclab.losses.margins.PRESETS`
            (at most 5).
        points: angles drawn, evenly spaced over [0°, 180°] (19 to 1441).
        element_id: the root element's id (default: a fresh random one).

    Returns:
        The HTML fragment, a string.

    Raises:
        ValueError: a value off its slider, an unknown policy or preset, a bad ``points``.

    Example:
        >>> page = margin_explorer_html(m2=0.5, points=19, element_id="mx")
        >>> 'id="mx"' in page and "://" not in page.replace("http://www.w3.org", "")
        True

    Taught in: notebooks/02_margin_zoo.ipynb
    """
    start, root_id, config = _explorer_config(m1, m2, m3, s, overflow, references, points,
                                              element_id)
    policies = get_args(Overflow)
    sliders = "".join(
        f'<label>{k}{" (rad)" if k == "m2" else ""} <input type="range" name="{k}" '
        f'min="{lo:g}" max="{hi:g}" step="{step:g}" value="{start[k]:g}" aria-label="{k}">'
        f'<output data-for="{k}">{start[k]:g}</output></label>'
        for k, (lo, hi, step) in EXPLORER_SLIDERS.items())
    options = "".join(f'<option value="{p}"{" selected" if p == overflow else ""}>{p}</option>'
                      for p in policies)
    rows = "".join(f'<tr data-theta-deg="{t!r}" data-logit="{v!r}" data-boundary-deg="{b!r}">'
                   f"<td>{t:.6f}</td><td>{v:.6f}</td><td>{b:.6f}</td></tr>"
                   for t, v, b in _initial_rows(*start.values(), overflow, points))
    css = (_ASSETS / "margin_explorer.css").read_text()
    js = (_ASSETS / "margin_explorer.js").read_text()
    mount = ("(function(){var s=document.currentScript,r=s&&s.previousElementSibling;"
             f"if(!r||r.id!=={json.dumps(root_id)})r=document.getElementById({json.dumps(root_id)});"
             "if(r&&!r.hasAttribute('data-mounted')){r.setAttribute('data-mounted','1');"
             "window.arclabMarginExplorer.mount(r);}})();")
    return (
        f"<style>{css}</style>"
        f'<div class="arclab-mx" id="{html.escape(root_id)}" '
        f'data-config="{html.escape(json.dumps(config))}">'
        f'<form class="mx-controls" onsubmit="return false">{sliders}'
        f'<label>overflow <select name="overflow" aria-label="overflow">{options}</select>'
        f'</label><button type="button" class="mx-reset">reset</button></form>'
        f'<div class="mx-plots"><svg class="mx-logit" role="img" '
        f'aria-label="target logit against the angle"></svg><svg class="mx-boundary" '
        f'role="img" aria-label="binary decision margin"></svg></div>'
        f'<p class="mx-readout">Move a slider to redraw (needs JavaScript).</p>'
        f'<table class="mx-values" hidden><thead><tr><th>θ (degrees)</th>'
        f"<th>target logit (× s)</th><th>class 1 boundary θ2 (degrees)</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
        f"<script>{js}\n{mount}</script>"
    )


def _image_png(image) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (matplotlib's writer, no extra dependency)."""
    import io

    import matplotlib.pyplot as plt
    import numpy as np

    buf = io.BytesIO()
    plt.imsave(buf, np.asarray(image), format="png")
    return buf.getvalue()


def _uploaded(value, size: int):
    """The first uploaded file of an ipywidgets FileUpload as uint8 (size, size, 3), or None."""
    import io

    import numpy as np
    from PIL import Image

    files = list(value) if isinstance(value, (list, tuple)) else list(dict(value).values())
    if not files:
        return None
    content = files[0]["content"]
    with Image.open(io.BytesIO(bytes(content))) as im:
        return np.asarray(im.convert("RGB").resize((size, size)), dtype=np.uint8)


def face_compare_panel(images, compare_fn, *, names=None):
    """Pick (or upload) two faces and see ``compare_fn(a, b)`` (e.g. a
    :func:`arclab.experiments.pipeline.compare` with its models bound): two dropdowns over
    ``images`` (uint8 (N, H, W, 3)), an upload button per side, the two images and the verdict.

    ``compare_fn(a, b) -> {"match", "score", "reason"}``. Returns an ``ipywidgets.VBox``;
    it needs a running kernel (the book shows the notebook's static table instead). Uploads are
    decoded with Pillow, converted to RGB and resized to the images' size.
    """
    import ipywidgets as w

    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    size = int(images.shape[1])
    picks = [w.Dropdown(options=list(zip(names, range(len(images)))), value=v,
                        description=d) for v, d in ((0, "left"), (min(1, len(images) - 1),
                                                                   "right"))]
    uploads = [w.FileUpload(accept="image/*", multiple=False, description=f"upload {d}")
               for d in ("left", "right")]
    shown = [w.Image(format="png", width=160), w.Image(format="png", width=160)]
    verdict = w.HTML()
    chosen = [None, None]

    def update(_change=None) -> None:
        for k in range(2):
            up = _uploaded(uploads[k].value, size)
            chosen[k] = up if up is not None else images[picks[k].value]
            shown[k].value = _image_png(chosen[k])
        r = compare_fn(chosen[0], chosen[1])
        score = "no score" if r["score"] is None else f"cosine {r['score']:.3f}"
        colour = "#1a7f37" if r["match"] else "#b42318"
        verdict.value = (f"<b style='color:{colour}'>{'same person' if r['match'] else 'different'}"
                         f"</b> ({score}; {html.escape(r['reason'])})")

    for control in (*picks, *uploads):
        control.observe(update, names="value")
    update()
    return w.VBox([w.HBox(picks), w.HBox(uploads), w.HBox(shown), verdict])


def face_search_panel(images, search_fn, *, names=None):
    """Pick (or upload) a query face and see ``search_fn(image)`` (e.g. a
    :func:`arclab.experiments.pipeline.search` over an enrolled gallery): the query and the ranking.

    ``search_fn(image) -> {"found", "ranking": [(identity, cosine), ...], "match"}``. Returns
    an ``ipywidgets.VBox``; it needs a running kernel.
    """
    import ipywidgets as w

    names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
    size = int(images.shape[1])
    pick = w.Dropdown(options=list(zip(names, range(len(images)))), value=0, description="query")
    upload = w.FileUpload(accept="image/*", multiple=False, description="upload")
    shown, table = w.Image(format="png", width=160), w.HTML()

    def update(_change=None) -> None:
        up = _uploaded(upload.value, size)
        query = up if up is not None else images[pick.value]
        shown.value = _image_png(query)
        r = search_fn(query)
        if not r["found"]:
            table.value = "<b>no face found in the query</b>"
            return
        rows = "".join(f"<tr><td>{i + 1}</td><td>{who}</td><td>{s:.3f}</td></tr>"
                       for i, (who, s) in enumerate(r["ranking"]))
        verdict = "no enrolled identity above the threshold" if r["match"] is None \
            else f"match: {r['match']}"
        table.value = (f"<b>{verdict}</b><table><tr><th>rank</th><th>identity</th>"
                       f"<th>cosine</th></tr>{rows}</table>")

    pick.observe(update, names="value")
    upload.observe(update, names="value")
    update()
    return w.VBox([w.HBox([pick, upload]), w.HBox([shown, table])])
