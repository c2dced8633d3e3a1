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


def test_each_run_is_timed_into_results_and_merged(project, monkeypatch):
    def fake_execute(path, profile, out_dir, **kw):
        if path.stem == "02_raises":
            raise runner.NotebookFailed("02_raises.ipynb failed in cell 2")
        return out_dir / path.name

    monkeypatch.setattr(runner, "execute_notebook", fake_execute)
    log = project["results"] / "smoke" / "timings.json"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"00_other": {"seconds": 5.0, "status": "executed",
                                            "when": "2020-01-01T00:00:00+00:00"}}))
    with pytest.raises(runner.NotebookFailed):
        run(project, keep_going=True)
    entries = json.loads(log.read_text())
    assert sorted(entries) == ["00_other", "01_good", "02_raises", "03_silent"]
    assert entries["00_other"]["seconds"] == 5.0  # merged, not replaced
    assert entries["02_raises"]["status"] == "failed" and entries["01_good"]["status"] == "executed"
    assert all(e["seconds"] >= 0 and e["when"].endswith("+00:00") for e in entries.values())
    assert not list(log.parent.glob(".timings.json.*"))  # atomic: no temporary file left
    table = runner.timings_table(log, ["00_other", "01_good", "99_new"], since=1.6e9).splitlines()
    assert table[1].split()[:3] == ["00_other", "5.0", "up"]  # ended before `since`
    assert table[2].split()[2] == "executed" and "never run" in table[3]
    assert table[-1].split()[:2] == ["total", f"{5.0 + entries['01_good']['seconds']:.1f}"]
    log.write_text("{broken")  # a hand-broken file is replaced, not a reason to fail a run
    runner.record_timing(log, "01_good", 1.234, "executed")
    assert json.loads(log.read_text())["01_good"]["seconds"] == 1.23


def test_cli_ends_on_the_timings_table(project, monkeypatch, capsys):
    monkeypatch.setenv("ARCLAB_RESULTS_DIR", str(project["results"]))
    common = ["--notebooks-dir", str(project["nbs"]), "--params-dir", str(project["params"]),
              "--out", str(project["out"])]
    assert runner.main(["run", "--profile", "smoke", "01", "03", *common]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-4].split()[:3] == ["notebook", "seconds", "status"]
    assert out[-3].split()[0] == "01_good" and out[-3].split()[2] == "executed"
    assert out[-2].split()[0] == "03_silent" and out[-2].split()[2] == "failed"
    seconds = [float(line.split()[1]) for line in out[-3:-1]]
    total = float(out[-1].split()[1])  # the sum of the unrounded times, shown rounded
    assert seconds[0] > 0.5 and abs(total - sum(seconds)) <= 0.1 + 1e-9  # a kernel start
    assert runner.main(["timings", "--profile", "smoke", "--since", "4e9",
                        "--notebooks-dir", str(project["nbs"])]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [r.split()[0] for r in rows[1:]] == ["01_good", "02_raises", "03_silent", "total"]
    assert "up to date" in rows[1] and "never run" in rows[2]  # 01 ended before "since"
