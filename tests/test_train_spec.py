"""Specs, the CLI, the data sources and torchrun DDP of arclab.train."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from arclab.losses.heads import make_head
from arclab.losses.margins import MarginLoss
from arclab.models import get_model
from arclab.train import TrainConfig, step_batch
from arclab.train.__main__ import main as cli_main
from arclab.train.sources import build_dataset
from arclab.train.spec import load_spec, run_dir

SPEC = {"train": {"backbone": "r18", "embedding_size": 16, "input_size": 16, "batch_size": 8,
                  "epochs": 2, "s": 16.0, "lr": 0.05, "checkpoint_every": 2},
        "data": {"source": "synthfaces", "n_identities": 6, "n_per_identity": 4},
        "validation": {}}


def _cli(*args: str, env_extra: dict | None = None, torchrun: bool = False):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env_extra or {})}
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", "-m", "arclab.train", *args]
    else:
        cmd = [sys.executable, "-m", "arclab.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("raw, message", [
    ({"trian": {}}, r"unknown spec sections \['trian'\]"),
    ({"train": {"lr": -1}}, "lr must be a finite number > 0"),
    ({"data": {"source": "lmdb"}}, "data.source must be one of"),
    ({"data": {"n_identities": 3}}, "data.n_per_identity is required"),
    ({"data": {"n_identities": 3, "n_per_identity": 2, "synth": {"blurr": 1}}},
     r"unknown data.synth keys \['blurr'\]"),
    ({"data": {"source": "imagefolder", "root": "x", "rec": "y"}}, r"unknown data keys \['rec'\]"),
    ({"data": {"n_identities": 3, "n_per_identity": 2}, "validation": {"ijb": {}}},
     "validation.ijb must be a SynthFaces protocol"),
    ({"train": {"milestones": 0.5}}, r"train\.milestones must be a list of fractions"),
    ({"train": {"milestones": ["a"]}}, r"train\.milestones must be fractions"),
    ({"train": {"backbone": "r999"}}, r"train\.backbone must be one of \[.*'mbf'.*\], got 'r999'"),
    ({"train": {"input_size": 8}}, r"train\.input_size must be at least 16"),
    ({"train": {"s": True}}, r"train\.s must be a finite number > 0, got True"),
    ({"train": []}, "train must be a mapping"),
    ({"data": {"n_identities": 0, "n_per_identity": 2}},
     r"data\.n_identities must be an integer >= 2, got 0"),
    ({"data": {"n_identities": 3, "n_per_identity": 2.5}}, r"data\.n_per_identity must be"),
    ({"data": {"n_identities": 3, "n_per_identity": 2, "synth": {"seed": -1}}},
     r"data\.synth\.seed must be"),
    ({"data": {"source": "recordio"}}, r"data\.rec is required"),
    ({"data": {"source": "recordio", "rec": "/no/such.rec"}},
     r"data\.rec '/no/such\.rec' is not an existing file"),
    ({"data": {"source": "imagefolder", "root": "/no/such"}}, r"data\.root '/no/such' is not"),
    ({"data": {"n_identities": 3, "n_per_identity": 2}, "validation": {"x": {"bin": "/no.bin"}}},
     r"validation\.x\.bin '/no\.bin' is not an existing file"),
    ({"data": {"n_identities": 3, "n_per_identity": 2},
      "validation": {"lfw": {"n_idents": 3}}}, r"unknown validation\.lfw keys \['n_idents'\]"),
    ({"data": {"n_identities": 3, "n_per_identity": 2},
      "validation": {"lfw": {"n_identities": 1}}}, r"validation\.lfw\.n_identities must be"),
])
def test_bad_specs_fail_naming_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        load_spec(raw)


def test_run_dir_changes_with_every_key():
    a = load_spec(SPEC)
    b = load_spec({**SPEC, "train": {**SPEC["train"], "lr": 0.06}})
    c = load_spec({**SPEC, "data": {**SPEC["data"], "synth": {"nuisance": 0.5}}})
    assert len({run_dir(a), run_dir(b), run_dir(c)}) == 3
    assert run_dir(a) == run_dir(load_spec(json.loads(json.dumps(SPEC))))
    # validation reads the model and never changes it: the same run serves both
    v = load_spec({**SPEC, "train": {**SPEC["train"], "validate_every": 2},
                   "validation": {"lfw": {"n_identities": 10}}})
    assert run_dir(v) == run_dir(a)


def test_cli_trains_validates_and_refuses_bad_specs(tmp_path):
    spec = {**SPEC, "train": {**SPEC["train"], "validate_every": 3},
            "validation": {"lfw": {"n_identities": 20, "pairs_per_fold": 4}}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {"ARCLAB_CACHE": str(tmp_path / "cache")}
    done = _cli(str(path), "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress",
                env_extra=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["step"] == 6 and summary["validation"]["step"] == 6
    assert 0 <= summary["validation"]["lfw"] <= 1
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert [h["step"] for h in state["validation"]] == [3, 6]
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lrr: 0.1}\n")
    refused = _cli(str(bad), env_extra=env)
    assert refused.returncode == 2 and "unknown config keys ['lrr']" in refused.stderr


def test_imagefolder_and_recordio_sources_read_labels_and_normalise(tmp_path):
    from PIL import Image

    from arclab.data.recordio import RecordIOWriter

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    for i, name in enumerate(["ann", "bob", "cyd"]):
        (tmp_path / "faces" / name).mkdir(parents=True)
        Image.fromarray(pixels[i]).save(tmp_path / "faces" / name / "0.png")
    with RecordIOWriter(tmp_path / "t.rec", tmp_path / "t.idx", image_format="png") as w:
        w.write(b"", [4.0, 4.0])  # the insightface header record: images are keys [1, 4)
        for i, label in enumerate([0, 3, 3]):
            w.write(pixels[i], float(label))
    folder, n_folder = build_dataset({"source": "imagefolder", "root": tmp_path / "faces"}, 8)
    rec, n_rec = build_dataset({"source": "recordio", "rec": str(tmp_path / "t.rec"),
                                "idx": str(tmp_path / "t.idx")}, 8)
    assert (n_folder, len(folder)) == (3, 3) and (n_rec, len(rec)) == (4, 3)
    assert [rec[i][1] for i in range(3)] == [0, 3, 3]
    for ds in (folder, rec):
        img, _ = ds[1]
        expected = torch.from_numpy(pixels[1]).permute(2, 0, 1).float() / 127.5 - 1
        assert torch.equal(img, expected) or torch.equal(img, expected.flip(2))
    with pytest.raises(ValueError, match=r"expected \(16, 16\)"):
        build_dataset({"source": "recordio", "rec": str(tmp_path / "t.rec"),
                       "idx": str(tmp_path / "t.idx")}, 16)[0][0]


def test_torchrun_ddp_averages_the_half_batch_gradients_and_resumes(tmp_path, monkeypatch):
    """Two gloo processes: the logged loss is the mean over ranks, the first update equals one
    SGD step on the mean of the two half-batch losses, and an interrupted DDP run resumes onto
    the uninterrupted curve."""
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    env = {"ARCLAB_CACHE": str(tmp_path / "cache")}
    args = [str(spec_path), "--device", "cpu", "--no-progress"]
    one = _cli(*args, "--out", str(tmp_path / "one"), "--max-steps", "1", env_extra=env,
               torchrun=True)
    assert one.returncode == 0, one.stderr
    whole = _cli(*args, "--out", str(tmp_path / "whole"), env_extra=env, torchrun=True)
    part = _cli(*args, "--out", str(tmp_path / "part"), "--max-steps", "3", env_extra=env,
                torchrun=True)
    rest = _cli(*args, "--out", str(tmp_path / "part"), env_extra=env, torchrun=True)
    assert whole.returncode == part.returncode == rest.returncode == 0, rest.stderr
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 6 and a["losses"] == b["losses"]

    # the reference: one process, the same two half batches, mean loss, one SGD step
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    spec = load_spec(SPEC)
    cfg: TrainConfig = spec["train"]
    data, n_classes = build_dataset(spec["data"], cfg.input_size, progress=False)
    torch.manual_seed(cfg.seed)
    model = get_model("r18", embedding_size=16, input_size=16)
    head = make_head("arcface", 16, n_classes)
    loss_fn = MarginLoss("arcface", s=cfg.s)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    halves = [step_batch(data, cfg, 0, rank=r, world_size=2) for r in range(2)]
    losses = [loss_fn(head(model(x)), y) for x, y in halves]
    mean = (losses[0] + losses[1]) / 2
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=cfg.lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    mean.backward()
    opt.step()
    state = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    assert state["losses"][0] == pytest.approx(mean.item(), rel=1e-5)
    for name, p in model.named_parameters():  # float sums in another order: 1e-5 apart
        assert torch.allclose(state["model"][name], p.detach(), atol=5e-5), name
    assert (state["model"]["conv1.weight"] - start["conv1.weight"]).abs().max() > 0.1
    assert torch.allclose(state["head"]["weight"], head.weight.detach(), atol=5e-5)
    # a wrong split (each rank on the whole batch) would not give this first loss
    x, y = step_batch(data, cfg, 0)
    assert abs(state["losses"][0] - loss_fn(head(model(x)), y).item()) > 1e-3


BAD_CLI = [  # (changes to SPEC, extra arguments, what the one stderr line must say)
    ({"train": {"milestones": 0.5}}, [], r"train\.milestones must be a list"),
    ({"data": {"source": "recordio"}}, [], r"data\.rec is required"),
    ({"train": {"backbone": "r999"}}, [], r"train\.backbone must be one of \[.*\], got 'r999'"),
    ({"data": {"source": "recordio", "rec": "{tmp}/missing.rec"}}, [],
     r"data\.rec '.*/missing\.rec' is not an existing file"),
    ({"data": {"source": "recordio", "rec": "{tmp}/spec.yaml"}}, [],
     r"data\.rec '.*/spec\.yaml' is not a RecordIO file"),
    ({"validation": {"my_lfw": {"bin": "{tmp}/missing.bin"}}}, [],
     r"validation\.my_lfw\.bin '.*/missing\.bin' is not an existing file"),
    ({"data": {"n_identities": 0}}, [], r"data\.n_identities must be an integer >= 2, got 0"),
    ({"train": {"input_size": 8}}, [], r"train\.input_size must be at least 16 pixels"),
    ({"train": {"lr": "0.1"}}, [], r"train\.lr must be a finite number > 0, got '0\.1'"),
    ({"train": {"batch_size": 32}}, [], r"train\.batch_size \(32\) must not exceed the data set "
                                        r"\(24 items"),
    ({"validation": {"lfw": {"pairs_per_fold": 0}}}, [], r"validation\.lfw\.pairs_per_fold"),
    ({"train": {"amp": "fp16"}}, [], r"train\.amp='fp16' needs a CUDA device"),
    ({}, ["--max-steps", "-3"], r"max_steps must be a positive integer, got -3"),
    ({}, ["--max-steps", "0"], r"max_steps must be a positive integer, got 0"),
    pytest.param({}, ["--device", "cuda"], r"device 'cuda' cannot be used",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")),
    ("train: {backbone: r18\ndata: [1, 2\n", [], r"not valid YAML at line \d+, column \d+"),
]


def _spec_text(change, tmp_path) -> str:
    if isinstance(change, str):
        return change
    spec = copy.deepcopy(SPEC)
    for section, keys in change.items():
        spec[section] = ({} if "source" in keys else spec[section]) | keys
    return yaml.safe_dump(spec).replace("{tmp}", str(tmp_path))


def _refused(capsys, args, pattern) -> str:
    """Run the CLI in this process: exit status 2 and one stderr line matching ``pattern``."""
    code = cli_main([*args, "--no-progress"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("change, extra, pattern", BAD_CLI)
def test_cli_refuses_a_bad_spec_in_one_line_before_rendering(change, extra, pattern, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "spec.yaml"
    path.write_text(_spec_text(change, tmp_path))
    line = _refused(capsys, [str(path), "--out", str(tmp_path / "run"), *extra], pattern)
    assert line.startswith(f"error: {path}: ")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_cli_refuses_to_damage_a_run_and_reports_a_crash_with_its_traceback(tmp_path,
                                                                           monkeypatch, capsys):
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    path, run = tmp_path / "spec.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(SPEC))
    assert cli_main([str(path), "--out", str(run), "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    ckpt, stored = (run / "checkpoint.pt").read_bytes(), (run / "spec.json").read_bytes()
    cache = sorted((tmp_path / "cache").rglob("*"))
    _refused(capsys, [str(path), "--out", str(run), "--max-steps", "3"],
             r"max_steps \(3\) is below step 6")
    for change, pattern in (({"train": {"lr": 0.01}}, "written with another config"),
                            ({"data": {"n_per_identity": 5}}, "holds a run on other data")):
        path.write_text(_spec_text(change, tmp_path))
        _refused(capsys, [str(path), "--out", str(run)], pattern)
    assert (run / "checkpoint.pt").read_bytes() == ckpt  # nothing rewritten, spec.json with it
    assert (run / "spec.json").read_bytes() == stored

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path.write_text(yaml.safe_dump(SPEC))
    for name, write in (("truncated", lambda p: p.write_bytes(ckpt[: len(ckpt) // 2])),
                        ("malicious", lambda p: torch.save({"model": Payload()}, p))):
        write((tmp_path / name).mkdir() or tmp_path / name / "checkpoint.pt")
        _refused(capsys, [str(path), "--out", str(tmp_path / name)],
                 rf"{name}/checkpoint\.pt is not a checkpoint torch\.load\(weights_only=True\)")
        assert [p.name for p in (tmp_path / name).iterdir()] == ["checkpoint.pt"]
    assert not marker.exists() and sorted((tmp_path / "cache").rglob("*")) == cache

    def crash(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("arclab.train.spec.train", crash)
    code = cli_main([str(path), "--out", str(tmp_path / "crash"), "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(lines) == 1, lines
    found = re.fullmatch(r"error: RuntimeError: boom second line \(full traceback: (.*)\)",
                         lines[0])
    assert found and found.group(1) == str(tmp_path / "crash" / "traceback.txt")
    assert "in crash" in (tmp_path / "crash" / "traceback.txt").read_text()
