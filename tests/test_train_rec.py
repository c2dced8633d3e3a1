"""Training from an insightface ``train.rec`` at scale: the image range from the header record,
array labels, no image read before step 1, a DataLoader whose workers never change a batch, and
a run through ``python -m arclab.train`` that resumes onto the uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from arclab.book.notebook import repo_root
from arclab.data.recordio import RecordIOReader, RecordIOWriter
from arclab.train import TrainConfig
from arclab.train.batches import StepSampler, step_batch, step_batches
from arclab.train.sources import DecodedFaces, build_dataset
from arclab.train.spec import load_spec, run_dir

N_CLASSES, PER_CLASS, SIZE = 96, 32, 16
N_IMAGES = N_CLASSES * PER_CLASS  # 3,072 images, keys 1 .. 3072


def _label(i: int):
    """Image i's label as written: every other one an array (flag 2), arcface_torch's label[0]."""
    c = float(i // PER_CLASS)
    return [c, 0.5] if i % 2 else c


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """An insightface-style train.rec: header record 0 (N + 1, N + 1 + C), the images by
    class (JPEG, 16 x 16), then one identity record per class (its image key range)."""
    folder = tmp_path_factory.mktemp("rec")
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (N_CLASSES, 1, 1, 3))
    noise = rng.integers(-40, 40, (N_IMAGES, SIZE, SIZE, 3))
    with RecordIOWriter(folder / "train.rec", folder / "train.idx", image_format="jpeg") as w:
        w.write(b"", [N_IMAGES + 1.0, N_IMAGES + 1.0 + N_CLASSES])
        for i in range(N_IMAGES):
            img = np.clip(colours[i // PER_CLASS] + noise[i], 0, 255).astype(np.uint8)
            w.write(img, _label(i))
        for c in range(N_CLASSES):
            w.write(b"", [1.0 + c * PER_CLASS, 1.0 + (c + 1) * PER_CLASS])
    return {"source": "recordio", "rec": str(folder / "train.rec"),
            "idx": str(folder / "train.idx")}


def _count_reads(monkeypatch) -> dict:
    """Count RecordIOReader.read (a payload read) and .heads (a header pass) calls."""
    counts = {"read": 0, "heads": 0}
    for name in counts:
        real = getattr(RecordIOReader, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(RecordIOReader, name, spy)
    return counts


def test_the_header_record_gives_the_images_and_classes_without_reading_them(rec, monkeypatch):
    counts = _count_reads(monkeypatch)
    data, n_classes = build_dataset(rec, SIZE)
    assert counts == {"read": 1, "heads": 0}  # record 0 only: nothing else before step 1
    assert isinstance(data, DecodedFaces) and data.base.keys == range(1, N_IMAGES + 1)
    assert (len(data), n_classes) == (N_IMAGES, N_CLASSES)
    x, y = data[(1, False)]  # key 2: an array label [0, 0.5] -> class 0
    assert x.shape == (3, SIZE, SIZE) and x.dtype == torch.float32 and y == 0
    assert data[(N_IMAGES - 1, True)][1] == N_CLASSES - 1
    assert data.labels.tolist() == [i // PER_CLASS for i in range(N_IMAGES)]  # one header pass
    assert counts["heads"] == 1 and data.labels is data.labels


def _write(path, records) -> dict:
    with RecordIOWriter(path, path.with_suffix(".idx"), image_format="png") as w:
        for image, label in records:
            w.write(image, label)
    return {"source": "recordio", "rec": str(path), "idx": str(path.with_suffix(".idx"))}


def test_without_a_header_record_one_header_pass_finds_the_images_and_labels(tmp_path,
                                                                            monkeypatch):
    img = np.full((8, 8, 3), 50, np.uint8)
    records = [(img, 2.0), (b"", [1.0, 3.0]), (img, [4.0, 9.0]), (img, 0.0), (b"", 3.0)]
    spec = _write(tmp_path / "plain.rec", records)
    counts = _count_reads(monkeypatch)
    data, n_classes = build_dataset(spec, 8)
    # one header pass; whole reads: record 0 (identity_range) and the 24-byte record 4 (a
    # payload too short for the 36-byte quick read, and nothing more to read in it)
    assert counts == {"read": 2, "heads": 1}
    assert data.base.keys.tolist() == [0, 2, 3]  # header-only records are not images
    assert n_classes == 5 and data.labels.tolist() == [2, 4, 0]
    assert [data[(i, False)][1] for i in range(3)] == [2, 4, 0]
    # an empty identity range in the header: the labels give the classes
    spec = _write(tmp_path / "h.rec", [(b"", [3.0, 3.0]), (img, 1.0), (img, [6.0])])
    assert build_dataset(spec, 8)[1] == 7


def test_hostile_train_rec_files_name_the_file_and_record(tmp_path):
    img = np.full((8, 8, 3), 50, np.uint8)
    spec = _write(tmp_path / "far.rec", [(b"", [5.0, 6.0]), (img, 0.0), (img, 1.0)])
    with pytest.raises(ValueError, match=r"far\.rec: its header record 0 gives image keys "
                                         r"\[1, 5\), the index holds 2 of them"):
        build_dataset(spec, 8)
    spec = _write(tmp_path / "half.rec", [(img, 0.0), (img, [1.5, 0.0])])
    with pytest.raises(ValueError, match=r"half\.rec: record 1 has label 1\.5: labels must be "
                                         r"whole numbers >= 0"):
        build_dataset(spec, 8)
    spec = _write(tmp_path / "neg.rec", [(img, 0.0), (img, -2.0)])
    with pytest.raises(ValueError, match=r"neg\.rec: record 1 has label -2\.0"):
        build_dataset(spec, 8)
    spec = _write(tmp_path / "big.rec", [(b"", [3.0, 5.0]), (img, 0.0), (img, 7.0)])
    data, n_classes = build_dataset(spec, 8)  # 2 classes by the header: checked when read
    with pytest.raises(ValueError, match=r"big\.rec: record 2 has label 7\.0: labels must be "
                                         r"whole numbers in \[0, 2\)"):
        data[(1, False)]
    data.workers = 1  # read in a worker: the same message, not the worker's traceback
    with pytest.raises(ValueError, match=r"^data\.rec .*big\.rec: record 2 has label 7\.0"):
        list(step_batches(data, TrainConfig(batch_size=2), 0, 1))
    spec = _write(tmp_path / "none.rec", [(b"", [1.0, 1.0])])
    with pytest.raises(ValueError, match=r"none\.rec holds no image records"):
        build_dataset(spec, 8)
    spec = _write(tmp_path / "big_img.rec", [(np.zeros((9, 9, 3), np.uint8), 0.0)] * 2)
    with pytest.raises(ValueError, match=r"big_img\.rec: record 1 is \(9, 9\), expected "
                                         r"\(8, 8\) \(train\.input_size\)"):
        build_dataset(spec, 8)[0][(1, False)]


CFG = TrainConfig(backbone="mbf", embedding_size=16, input_size=SIZE, batch_size=64, epochs=2)


def test_the_sampler_sees_every_record_exactly_once_an_epoch(rec):
    data, _ = build_dataset(rec, SIZE)
    per_epoch = N_IMAGES // CFG.batch_size
    for epoch in range(2):
        seen = [data.base.keys[i] for batch in StepSampler(
            data, CFG, epoch * per_epoch, (epoch + 1) * per_epoch) for i, _ in batch]
        assert sorted(seen) == list(range(1, N_IMAGES + 1))
    halves = [[i for b in StepSampler(data, CFG, 0, per_epoch, rank=r, world_size=2)
               for i, _ in b] for r in range(2)]
    assert sorted(halves[0] + halves[1]) == list(range(N_IMAGES))  # two ranks: split, whole


def test_batches_are_the_same_with_0_or_2_workers_and_after_a_resume(rec):
    data, _ = build_dataset(rec, SIZE)
    results = {}
    for workers, start in ((0, 0), (2, 0), (2, 3)):
        data.workers = workers
        results[workers, start] = list(step_batches(data, CFG, start, 6))
    for step in range(6):
        x, y = results[0, 0][step]
        assert x.shape == (64, 3, SIZE, SIZE) and y.dtype == torch.int64
        assert torch.equal(x, results[2, 0][step][0]) and torch.equal(y, results[2, 0][step][1])
        if step >= 3:
            assert torch.equal(x, results[2, 3][step - 3][0])
        x1, y1 = step_batch(data, CFG, step)
        assert torch.equal(x, x1) and torch.equal(y, y1)
    assert not torch.equal(results[0, 0][0][0], results[0, 0][1][0])


def test_data_workers_is_checked_and_leaves_the_run_hash_alone(rec):
    spec = load_spec({"train": CFG.to_dict(), "data": rec | {"workers": 3}})
    assert run_dir(spec) == run_dir(load_spec({"train": CFG.to_dict(), "data": rec}))
    assert build_dataset(spec["data"], SIZE)[0].workers == 3
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"data\.workers must be an integer >= 0"):
            load_spec({"data": rec | {"workers": bad}})
    with pytest.raises(ValueError, match=r"unknown data keys \['workers'\]"):
        load_spec({"data": {"n_identities": 4, "n_per_identity": 2, "workers": 2}})


def _cli(spec: dict, folder, out, *extra) -> None:
    path = folder / f"spec_{out}.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "ARCLAB_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "arclab.train", str(path), "--out",
                           str(folder / out), "--device", "cpu", "--no-progress", *extra],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _log(path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in path.read_text().splitlines()]


def test_the_cli_trains_20_steps_from_the_rec_and_a_resumed_run_equals_it(rec, tmp_path):
    """configs/synthfaces_mbf_cpu.yaml pointed at the train.rec: 20 steps uninterrupted (read
    in the training process) equal 8 steps with 2 workers, then 12 more with 1."""
    spec = yaml.safe_load((repo_root() / "configs" / "synthfaces_mbf_cpu.yaml").read_text())
    spec["train"] |= {"embedding_size": 16, "input_size": SIZE, "batch_size": 64, "epochs": 2,
                      "warmup_steps": 4, "checkpoint_every": 5}
    spec["data"], spec["validation"] = rec, {}
    _cli(spec | {"data": rec | {"workers": 0}}, tmp_path, "whole", "--max-steps", "20")
    _cli(spec | {"data": rec | {"workers": 2}}, tmp_path, "cut", "--max-steps", "8")
    _cli(spec | {"data": rec | {"workers": 1}}, tmp_path, "cut", "--max-steps", "20")
    whole, cut = _log(tmp_path / "whole" / "log.jsonl"), _log(tmp_path / "cut" / "log.jsonl")
    assert [r["step"] for r in whole] == list(range(20)) and whole == cut
    assert all(np.isfinite(r["loss"]) for r in whole)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 20
    for part in ("model", "head"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), (part, name)
