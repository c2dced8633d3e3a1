"""Every notebook executed with the smoke profile; assertions on its results JSON."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from arclab import toy
from arclab.notebook import repo_root
from arclab.runner import notebook_paths

ROOT = repo_root()


def smoke_params(name: str, defaults: dict) -> dict:
    data = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text()) or {}
    return {**defaults, **data.get(name, {})}


def results(smoke_run, name: str) -> dict:
    path = smoke_run["results"] / "smoke" / f"{name}.json"
    assert path.is_file(), f"{name} wrote no results JSON"
    return json.loads(path.read_text())


def test_every_notebook_executed_and_wrote_results(smoke_run):
    names = {p.stem for p in notebook_paths(ROOT / "notebooks")}
    assert {p.stem for p in smoke_run["executed"].glob("*.ipynb")} == names
    assert {p.stem for p in (smoke_run["results"] / "smoke").glob("*.json")} == names
    for name in names:
        assert results(smoke_run, name)["_provenance"]["profile"] == "smoke"


def test_00_tour_matches_an_independent_recomputation(smoke_run):
    res = results(smoke_run, "00_tour")
    p = smoke_params("00_tour", {"n_classes": 5, "n_per_class": 120, "angle_spread_deg": 14,
                                 "s": 8.0, "steps": 400, "seed": 0})
    assert res["n_points"] == p["n_classes"] * p["n_per_class"]
    x, y = toy.make_blobs_2d(p["n_classes"], p["n_per_class"],
                             angle_spread_deg=p["angle_spread_deg"], seed=p["seed"])
    w = toy.fit_linear_classifier(x, y, normalised=True, s=p["s"], steps=p["steps"],
                                  seed=p["seed"])["weight"]
    # cos θ by explicit angles, not by the library's normalise-and-multiply
    angles = torch.atan2(x[:, 1:], x[:, :1]) - torch.atan2(w[:, 1], w[:, 0])
    acc = (torch.cos(angles).argmax(1) == y).float().mean().item()
    assert res["accuracy"]["normalised"] == pytest.approx(acc, abs=1e-6)
    assert res["scale_consistency"]["normalised"] == 1.0
    assert res["scale_consistency"]["softmax"] < 0.95  # softmax reads the norm
    assert min(res["accuracy"].values()) > 0.9
    assert res["notebooks_present"] == len(notebook_paths(ROOT / "notebooks"))
