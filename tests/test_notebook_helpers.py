"""save_results, provenance, parameters and the package-level helpers."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import torch

import arclab
from arclab.book import notebook
from arclab.book.notebook import load_params, load_results, save_results, summary_table


def test_save_results_round_trip_converts_numpy_and_torch(results_dir):
    path = save_results("07_demo", {"acc": np.float32(0.5), "curve": torch.tensor([1.0, 2.0]),
                                    "n": np.int64(3), "nested": {"ok": True}}, profile="smoke")
    assert path == results_dir / "smoke" / "07_demo.json"
    data = json.loads(path.read_text())
    assert data["acc"] == 0.5 and data["curve"] == [1.0, 2.0] and data["n"] == 3
    assert data["nested"] == {"ok": True}
    assert data["_provenance"]["profile"] == "smoke"
    assert load_results("07_demo", "smoke")["n"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["07_demo.json"]  # no temp file left


def test_save_results_is_atomic_on_failure(results_dir):
    save_results("07_demo", {"a": 1}, profile="smoke")
    with pytest.raises(ValueError, match="finite"):
        save_results("07_demo", {"a": float("nan")}, profile="smoke")
    assert load_results("07_demo", "smoke")["a"] == 1  # previous file intact
    assert len(list((results_dir / "smoke").iterdir())) == 1


@pytest.mark.parametrize("bad, match", [
    ({"x": math.inf}, "finite"),
    ({"x": object()}, "type object"),
    ({"_provenance": 1}, "reserved"),
    ([1, 2], "must be a dict"),
])
def test_save_results_refuses_bad_results(results_dir, bad, match):
    with pytest.raises(ValueError, match=match):
        save_results("07_demo", bad, profile="smoke")


@pytest.mark.parametrize("name", ["tour", "0_tour", "00-tour", "00_Tour", "../00_x"])
def test_save_results_refuses_bad_names(results_dir, name):
    with pytest.raises(ValueError, match="name must look like"):
        save_results(name, {}, profile="smoke")


def test_profile_taken_from_environment(results_dir, monkeypatch):
    monkeypatch.setenv("ARCLAB_PROFILE", "book")
    assert save_results("07_demo", {}).parent.name == "book"
    monkeypatch.delenv("ARCLAB_PROFILE")
    assert save_results("07_demo", {}).parent.name == "interactive"


def test_load_results_missing_says_how_to_make_it(results_dir):
    with pytest.raises(FileNotFoundError, match="arclab.book.runner run --profile smoke 07_demo"):
        load_results("07_demo", "smoke")


def test_provenance_git_sha_matches_git(tmp_path, monkeypatch):
    root = notebook.repo_root()
    expected = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True).stdout.strip()
    info = notebook.provenance("smoke", show=False)
    if expected:
        assert info["git_sha"].removesuffix("-dirty") == expected
    assert info["torch"] == torch.__version__ and info["arclab"] == arclab.__version__
    monkeypatch.setattr(notebook, "repo_root", lambda: tmp_path)  # not a git checkout
    assert notebook.provenance(show=False)["git_sha"] == "unknown"


def test_provenance_prints_one_line(capsys):
    notebook.provenance("smoke")
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "arclab=" in out and "git_sha=" in out and "device=" in out


def test_load_params_merges_profile_and_lists_valid_profiles(tmp_path):
    (tmp_path / "smoke.yaml").write_text("00_tour:\n  steps: 3\n")
    (tmp_path / "book.yaml").write_text("")
    assert load_params("smoke", "00_tour", tmp_path) == {"steps": 3, "profile": "smoke"}
    assert load_params("book", "00_tour", tmp_path) == {"profile": "book"}
    with pytest.raises(ValueError, match=r"profile must be one of \['book', 'smoke'\], got 'fast'"):
        load_params("fast", "00_tour", tmp_path)
    (tmp_path / "full.yaml").write_text("00_tour: [1, 2]\n")
    with pytest.raises(ValueError, match="must be a dict"):
        load_params("full", "00_tour", tmp_path)


def test_summary_table_requires_every_column():
    with pytest.raises(ValueError, match=r"rows\[0\] is missing \['scale'\]"):
        summary_table([{"claim": "c", "ours": 1, "seed": 2, "reproduces": True}])


def test_book_map_marks_present_notebooks():
    table = notebook.book_map()
    root = notebook.repo_root() / "notebooks"
    assert table["present"].to_dict() == {n: (root / f"{n}.ipynb").is_file() for n in table.index}
    assert table.loc["00_tour", "present"]


def test_seed_everything_repeats_all_generators():
    def draw():
        import random
        return random.random(), np.random.rand(), torch.rand(1).item()

    arclab.seed_everything(123)
    first = draw()
    arclab.seed_everything(123)
    assert draw() == first
    arclab.seed_everything(124)
    assert draw() != first


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "1", True])
def test_seed_everything_refuses_bad_seeds(seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        arclab.seed_everything(seed)


def test_get_device(monkeypatch):
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    monkeypatch.delenv("ARCLAB_DEVICE", raising=False)
    assert arclab.get_device().type == expected
    monkeypatch.setenv("ARCLAB_DEVICE", "cpu")
    assert arclab.get_device().type == "cpu"
    with pytest.raises(ValueError, match="prefer must be a device"):
        arclab.get_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            arclab.get_device("cuda")


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    from arclab.atomic import atomic_path

    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.bin"]
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and len(list(tmp_path.iterdir())) == 1
