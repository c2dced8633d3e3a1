"""Issue 33: every ablation notebook saves its headline comparisons, each record agrees with
its own interval and target, and each is shown on the executed page with its verdict and a
paired-interval figure (the smoke profile's executions)."""

from __future__ import annotations

import html
import json

import nbformat
import pytest

ABLATIONS = ("05_margin_ablation", "06_subcenter_arcface", "09_lightweight_challenge",
             "11_retinaface_ablation", "12_alignment_improves_arcface")


def _shown(path) -> str:
    nb = nbformat.read(path, as_version=4)
    parts = [str(out.get("data", {}).get(m, "")) + out.get("text", "")
             for cell in nb.cells for out in cell.get("outputs", [])
             for m in ("text/markdown", "text/html", "text/plain")]
    return html.unescape("\n".join(parts))


def _figures(path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [out["data"].get("image/svg+xml", "") or out["data"].get("image/png", "")
            for cell in nb.cells if "paired_intervals" in cell.source
            for out in cell.get("outputs", []) if "data" in out
            and ({"image/svg+xml", "image/png"} & set(out["data"]))]


@pytest.mark.parametrize("name", ABLATIONS)
def test_headlines_follow_from_their_intervals_and_are_shown(smoke_run, name):
    path = smoke_run["results"] / "smoke" / f"{name}.json"
    assert path.is_file(), f"{name} wrote no results JSON"
    heads = json.loads(path.read_text())["headlines"]
    assert heads, f"{name} saved no headline comparison"
    shown = _shown(smoke_run["executed"] / f"{name}.ipynb")
    for h in heads:
        assert h["low"] <= h["mean"] <= h["high"]
        assert h["half_width"] == pytest.approx((h["high"] - h["low"]) / 2, rel=1e-9, abs=1e-12)
        inside = h["low"] <= 0 <= h["high"]
        assert (h["better"] is None) == inside, h
        if not inside:  # higher is better: the side of zero names the winner
            assert h["better"] == (h["a"] if h["low"] > 0 else h["b"]), h
            assert h["verdict"].startswith(h["better"])
        else:
            assert h["verdict"].startswith("not resolved at this scale")
        assert h["met"] == (h["half_width"] <= h["target"])
        assert (h["to_resolve"] == "met") == h["met"]
        assert h["comparison"] in shown and h["verdict"] in shown, (name, h["comparison"])
    assert "headline comparisons resolved" in shown  # the resolution summary sentence
    assert _figures(smoke_run["executed"] / f"{name}.ipynb"), f"{name} draws no interval plot"
