"""configs/: every shipped spec loads and validates, and says what it claims to mirror."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import arclab.train.__main__ as cli
from arclab.book.notebook import repo_root
from arclab.data.formats import write_bin
from arclab.data.recordio import RecordIOWriter
from arclab.train.spec import load_spec, run_dir, tutorial_spec

CONFIGS = sorted((repo_root() / "configs").glob("*.yaml"))


def _with_data_in(raw: dict, folder: Path) -> dict:
    """The spec with its RecordIO and .bin paths moved into ``folder``, where small files of
    the right formats are written (a header record, as insightface's train.rec has)."""
    rng = np.random.default_rng(0)
    data = raw["data"]
    if data["source"] == "recordio":
        rec, idx = folder / "train.rec", folder / "train.idx"
        with RecordIOWriter(rec, idx, image_format="png") as w:
            w.write(b"", [5.0, 5.0])  # insightface: images are keys [1, 5)
            for label in range(4):
                w.write(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), float(label))
        data = {**data, "rec": str(rec), "idx": str(idx)}
    validation = {}
    for name, entry in raw.get("validation", {}).items():
        if "bin" in entry:
            path = folder / Path(entry["bin"]).name
            write_bin(path, rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), [True, False])
            entry = {"bin": str(path)}
        validation[name] = entry
    return {**raw, "data": data, "validation": validation}


def test_configs_are_shipped():
    names = {p.stem for p in CONFIGS}
    assert {"synthfaces_mbf_cpu", "ms1mv3_r50", "ms1mv3_r100", "glint360k_r100_pfc"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_validates(path, tmp_path):
    raw = yaml.safe_load(path.read_text())
    spec = load_spec(_with_data_in(raw, tmp_path))  # every key, range and file checked
    cfg = spec["train"]
    text = path.read_text()
    assert f"-m arclab.train configs/{path.name}" in text  # the command that runs it
    if raw["data"]["source"] == "recordio":  # arcface_torch: 128 per GPU on 8 GPUs
        assert cfg.batch_size == 8 * 128 and "--nproc-per-node 8" in text
        assert cfg.input_size == 112 and cfg.embedding_size == 512 and cfg.amp == "bf16"
    if cfg.sample_rate < 1:
        assert cfg.fc == "sharded"


def test_the_ms1mv3_warm_up_is_two_epochs_of_global_batches():
    raw = yaml.safe_load((repo_root() / "configs" / "ms1mv3_r50.yaml").read_text())["train"]
    images = 5_179_510  # MS1MV3 (ms1m-retinaface-t1), arcface_torch's num_image
    assert raw["warmup_steps"] == images // raw["batch_size"] * 2  # arcface_torch's rule


def test_the_cpu_config_is_the_notebooks_recipe():
    """The CPU config trains exactly the run the notebooks cache (same hash, same folder)."""
    spec = load_spec(repo_root() / "configs" / "synthfaces_mbf_cpu.yaml")
    same = tutorial_spec(backbone="mbf", n_train_ids=100, n_per_id=10, epochs=53, seed=0)
    assert run_dir(spec) == run_dir(same)
    steps = 53 * (100 * 10 // 64)
    assert re.search(rf"in {steps} steps", (repo_root() / "configs" /
                                            "synthfaces_mbf_cpu.yaml").read_text())


def test_the_training_cli_cites_configs_that_exist():
    cited = re.findall(r"configs/[\w.]+\.yaml", cli.__doc__ + cli._parser().format_help())
    assert cited and all((repo_root() / c).is_file() for c in cited)
    readme = (repo_root() / "README.md").read_text()
    assert all(f"configs/{p.name}" in readme for p in CONFIGS)
