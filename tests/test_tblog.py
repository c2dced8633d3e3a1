"""TensorBoard logging mirrors log.jsonl, and a resumed run purges what its checkpoint undid."""

from __future__ import annotations

import io
import json

import pytest

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

from arclab.train.tblog import TensorBoardLog  # noqa: E402


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard would show, by tag: (step, value) in step order."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_lines_go_to_the_file_unchanged_and_to_tensorboard(tmp_path):
    lines = [{"step": 0, "loss": 2.5, "lr": 0.1, "images_per_s": 100.0, "theta_y_deg": 88.0},
             {"step": 1, "loss": 2.25, "lr": 0.1, "images_per_s": 120.0, "theta_y_deg": 80.5},
             {"step": 2, "validation": {"lfw": 0.75, "cfp_fp": 0.5}}]
    text = io.StringIO()
    log = TensorBoardLog(text, tmp_path / "tb", start=0)
    for line in lines:
        log.write(json.dumps(line) + "\n")
    log.writer.close()
    assert text.getvalue().splitlines() == [json.dumps(line) for line in lines]
    got = scalars(tmp_path / "tb")
    assert got["loss"] == [(1, 2.5), (2, 2.25)]  # steps done: arcface_torch's global_step
    assert got["theta_y_deg"] == [(1, 88.0), (2, 80.5)]
    assert got["validation/lfw"] == [(2, 0.75)] and got["validation/cfp_fp"] == [(2, 0.5)]
    assert set(got) == {"loss", "lr", "images_per_s", "theta_y_deg", "validation/lfw",
                        "validation/cfp_fp"}


def test_a_resume_purges_the_steps_after_the_checkpoint(tmp_path):
    first = TensorBoardLog(io.StringIO(), tmp_path, start=0)
    for step, loss in enumerate([4.0, 3.0, 2.0, 1.0]):  # killed after step 3
        first.write(json.dumps({"step": step, "loss": loss}) + "\n")
    first.writer.close()
    again = TensorBoardLog(io.StringIO(), tmp_path, start=2)  # the checkpoint was at step 2
    for step, loss in [(2, 2.5), (3, 1.5)]:
        again.write(json.dumps({"step": step, "loss": loss}) + "\n")
    again.writer.close()
    assert scalars(tmp_path)["loss"] == [(1, 4.0), (2, 3.0), (3, 2.5), (4, 1.5)]


def test_a_spec_with_tensorboard_logs_the_run_that_log_jsonl_holds(tmp_path, monkeypatch):
    import yaml

    from arclab.train.__main__ import main
    from arclab.train.spec import load_spec, run_dir

    spec = {"train": {"backbone": "mbf", "embedding_size": 16, "input_size": 16,
                      "batch_size": 8, "epochs": 2, "s": 16.0, "checkpoint_every": 2,
                      "validate_every": 3},
            "data": {"source": "synthfaces", "n_identities": 6, "n_per_identity": 4},
            "validation": {"lfw": {"n_identities": 20, "pairs_per_fold": 4}},
            "log": ["tensorboard"]}
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    path, run = tmp_path / "spec.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(spec))
    args = [str(path), "--out", str(run), "--device", "cpu", "--no-progress"]
    assert main([*args, "--max-steps", "3"]) == 0  # stopped after step 3, then resumed
    assert main(args) == 0
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [(x["step"], x["loss"]) for x in lines if "loss" in x]
    got = scalars(run / "tensorboard")
    assert [s for s, _ in got["loss"]] == list(range(1, 7))  # the redone step once
    assert [v for _, v in got["loss"]] == pytest.approx([v for _, v in losses], rel=1e-6)
    assert [s for s, _ in got["validation/lfw"]] == [3, 6]
    # logging never changes the weights: the run is the same run without it
    plain = {k: v for k, v in spec.items() if k != "log"}
    assert run_dir(load_spec(spec)) == run_dir(load_spec(plain))
    assert load_spec(spec)["log"] == ["jsonl", "tensorboard"]
    with pytest.raises(ValueError, match=r"log must be a list of \['jsonl', 'tensorboard'\]"):
        load_spec({**plain, "log": ["wandb"]})
