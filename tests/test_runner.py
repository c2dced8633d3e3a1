"""The papermill runner: parameters, outputs, and what a user sees when a notebook fails."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from arclab.book import runner


def write_notebook(path: Path, *cells: str) -> Path:
    """A notebook whose first cell is the parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path


SAVE = ("from arclab.book.notebook import save_results\n"
        "save_results('{name}', {{'x': x}}, profile=profile)")


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A tiny project: notebooks/, params/ and a results folder."""
    nbs, params, results = tmp_path / "notebooks", tmp_path / "params", tmp_path / "results"
    nbs.mkdir(), params.mkdir()
    (params / "smoke.yaml").write_text("01_good:\n  x: 7\n")
    (params / "book.yaml").write_text("")
    write_notebook(nbs / "01_good.ipynb", "x = 1\nprofile = 'interactive'",
                   SAVE.format(name="01_good"))
    write_notebook(nbs / "02_raises.ipynb", "profile = 'x'", "y = 2", "1 / 0")
    write_notebook(nbs / "03_silent.ipynb", "profile = 'x'", "z = 3")
    monkeypatch.delenv("ARCLAB_RESULTS_DIR", raising=False)
    return {"nbs": nbs, "params": params, "results": results, "out": tmp_path / "out"}


def run(project, *names, **kw):
    return runner.run_notebooks("smoke", names, out_dir=project["out"],
                                notebooks_dir=project["nbs"], params_dir=project["params"],
                                results_dir=project["results"], **kw)


def test_runner_injects_profile_parameters_and_checks_results(project):
    (out,) = run(project, "01")
    data = json.loads((project["results"] / "smoke" / "01_good.json").read_text())
    assert data["x"] == 7 and data["_provenance"]["profile"] == "smoke"
    executed = nbformat.read(out, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "x = 7" in injected[0].source
    assert sorted(p.name for p in project["out"].iterdir()) == ["01_good.ipynb"]


def test_runner_names_notebook_cell_and_exception(project):
    with pytest.raises(runner.NotebookFailed) as info:
        run(project, "02_raises")
    message = str(info.value)
    assert "02_raises.ipynb failed in cell" in message and "ZeroDivisionError" in message
    assert "1 / 0" in message
    # the failed copy is kept for reading, and no output Make could mistake for fresh exists
    assert (project["out"] / "02_raises.failed.ipynb").is_file()
    assert not (project["out"] / "02_raises.ipynb").exists()


def test_runner_fails_when_no_results_are_written(project):
    with pytest.raises(runner.NotebookFailed, match="wrote no results.*save_results"):
        run(project, "03_silent")
    assert not (project["out"] / "03_silent.ipynb").exists()


def test_keep_going_reports_every_failure(project):
    with pytest.raises(runner.NotebookFailed) as info:
        run(project, keep_going=True)
    assert "02_raises" in str(info.value) and "03_silent" in str(info.value)
    assert (project["out"] / "01_good.ipynb").is_file()


def test_cli_exit_status_and_messages(project, capsys):
    common = ["--notebooks-dir", str(project["nbs"]), "--params-dir", str(project["params"]),
              "--out", str(project["out"])]
    assert runner.main(["run", "--profile", "smoke", "02", *common]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err
    assert runner.main(["run", "--profile", "fast", *common]) == 1
    assert "profile must be one of ['book', 'smoke'], got 'fast'" in capsys.readouterr().err
    assert runner.main(["run", "--profile", "smoke", "99_nope", *common]) == 1
    err = capsys.readouterr().err
    assert "'99_nope' is not one of ['01_good', '02_raises', '03_silent']" in err


def test_resolve_notebooks_accepts_number_stem_and_file(project):
    expected = project["nbs"] / "01_good.ipynb"
    for name in ["01", "01_good", "01_good.ipynb", "notebooks/01_good.ipynb"]:
        assert runner.resolve_notebooks([name], project["nbs"]) == [expected]
    assert len(runner.resolve_notebooks([], project["nbs"])) == 3


def test_a_hanging_cell_fails_instead_of_blocking(project, monkeypatch):
    write_notebook(project["nbs"] / "04_hangs.ipynb", "profile = 'x'", "import time",
                   "time.sleep(60)")
    monkeypatch.setattr(runner, "CELL_TIMEOUT_S", 3)
    with pytest.raises(runner.NotebookFailed, match="04_hangs"):
        run(project, "04")
