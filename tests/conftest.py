"""Shared fixtures: the smoke run of every notebook happens once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from arclab.book import runner
from arclab.book.notebook import repo_root

ROOT = repo_root()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> dict[str, Path]:
    """Execute every notebook with the smoke profile into a temporary folder.

    Returns the executed-notebooks folder and the results folder. A notebook that raises or
    writes no results JSON fails every test that uses this fixture, with the runner's message.
    """
    import os

    base = tmp_path_factory.mktemp("smoke")
    executed, results = base / "executed", base / "results"
    os.environ["ARCLAB_CACHE"] = str(base / "cache")  # the kernels inherit it: no ~/.cache
    # ARCLAB_SMOKE_ONLY=05_margin_ablation,06_subcenter_arcface: only those (for work on one
    # notebook; the tests of the others then fail for want of results)
    only = [n for n in os.environ.get("ARCLAB_SMOKE_ONLY", "").split(",") if n]
    runner.run_notebooks("smoke", only, out_dir=executed, results_dir=results, keep_going=True)
    return {"executed": executed, "results": results}


@pytest.fixture()
def results_dir(tmp_path, monkeypatch) -> Path:
    """Point save_results at a temporary folder."""
    monkeypatch.setenv("ARCLAB_RESULTS_DIR", str(tmp_path))
    return tmp_path
