"""Figures carry their labels and the data they claim; the widget is wired to its sliders."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from arclab.book import plotting, widgets
from arclab.experiments import toy  # noqa: E402
from arclab.losses.margins import PRESETS, target_logit  # noqa: E402

NORMALISED = {k: m for k, m in PRESETS.items() if m.normalised}


def test_target_logit_curves_plot_the_formula():
    fig = plotting.target_logit_curves(NORMALISED, points=181)
    ax = fig.axes[0]
    assert "degrees" in ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    arc = lines[PRESETS["arcface"].label]
    theta = np.asarray(arc.get_xdata())
    expected = target_logit(torch.cos(torch.deg2rad(torch.tensor(theta))), m2=0.5).numpy()
    np.testing.assert_allclose(arc.get_ydata(), expected)


def test_every_figure_labels_its_axes():
    x, y = toy.make_identities(3, 10, dim=4)
    figs = [
        plotting.decision_margins(NORMALISED, points=91),
        plotting.overflow_policies({"arcface": PRESETS["arcface"]}, points=91),
        plotting.gradient_curves({"arcface": PRESETS["arcface"]}, points=91),
        plotting.features_2d(x[:, :2], y, weight=torch.randn(3, 2), normalise=True),
        plotting.features_3d(x[:, :3], y),
        plotting.angle_histograms({"a": toy.angles_to_centres(x, y)}),
        plotting.margin_panel(1.0, 0.5, 0.0, 64.0, references={"cosface": PRESETS["cosface"]}),
    ]
    for fig in figs:
        for ax in fig.axes:
            if ax.axison:
                assert ax.get_xlabel() and ax.get_ylabel(), fig
        assert any(ax.get_title() for ax in fig.axes) or fig._suptitle is not None
        matplotlib.pyplot.close(fig)


def test_decision_margin_band_for_arcface_is_m2_wide():
    fig = plotting.decision_margins({"arcface": PRESETS["arcface"]}, points=181)
    blue = fig.axes[0].get_lines()[0]
    t, b = np.asarray(blue.get_xdata()), np.asarray(blue.get_ydata())
    inside = t + math.degrees(0.5) < 179
    np.testing.assert_allclose(b[inside] - t[inside], math.degrees(0.5), atol=1e-9)


def test_margin_explorer_sliders_drive_the_panel(monkeypatch):
    calls, real = [], plotting.margin_panel

    def fake_panel(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(plotting, "margin_panel", fake_panel)
    panel = widgets.margin_explorer(m2=0.3, s=32.0)
    sliders = [w for row in panel.children[:2] for w in row.children]
    assert [w.description for w in sliders] == ["m1", "m2 (rad)", "m3", "s"]
    assert [w.value for w in sliders] == [1.0, 0.3, 0.0, 32.0]
    assert calls[-1] == (1.0, 0.3, 0.0, 32.0)
    first = panel.children[2].value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    sliders[2].value = 0.2
    assert calls[-1] == (1.0, 0.3, 0.2, 32.0)
    assert panel.children[2].value != first  # the picture changed with the margin
    with pytest.raises(ValueError, match="references"):
        widgets.margin_explorer(references=("nope",))


def test_face_panels_call_the_pipeline_with_the_chosen_or_uploaded_images():
    import datetime
    import io

    import numpy as np
    from PIL import Image

    from arclab.book import widgets

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    calls = []

    def fake_compare(a, b):
        calls.append((a.copy(), b.copy()))
        same = bool((a == b).all())
        return {"match": same, "score": 1.0 if same else 0.2, "reason": "r"}

    panel = widgets.face_compare_panel(images, fake_compare)
    (left, right), (up_left, _), _, verdict = [c.children if hasattr(c, "children") else c
                                               for c in panel.children]
    assert np.array_equal(calls[-1][0], images[0]) and np.array_equal(calls[-1][1], images[1])
    assert "different" in verdict.value and "0.200" in verdict.value
    right.value = 0
    assert np.array_equal(calls[-1][1], images[0]) and "same person" in verdict.value
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 30, 4), 200, np.uint8)).save(buf, format="PNG")  # RGBA, 40x30
    up_left.value = ({"name": "me.png", "type": "image/png", "size": len(buf.getvalue()),
                      "content": memoryview(buf.getvalue()),
                      "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert calls[-1][0].shape == (20, 20, 3) and (calls[-1][0] == 200).all()

    def fake_search(q):
        return {"found": bool(q.mean() > 0), "ranking": [(7, 0.9), (3, 0.1)], "match": 7}

    search = widgets.face_search_panel(images, fake_search)
    table = search.children[1].children[1]
    assert "match: 7" in table.value and table.value.count("<tr>") == 3
    search.children[0].children[0].value = 2
    assert "match: 7" in table.value
