"""The training loop: a resumed run continues the same loss curve; configs fail early."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from arclab.data.cache import FaceDataset, render_items
from arclab.data.params import SynthConfig
from arclab.data.protocols import training_set
from arclab.models import get_model
from arclab.train import TrainConfig, learning_rate, load_config, train


@pytest.fixture(scope="module")
def tiny():
    cfg = SynthConfig()
    t = training_set(cfg, 6, 4)
    images = render_items(cfg, t["items"], size=16, progress=False)["images"]
    return FaceDataset(images, t["label"], flip=True)


CFG = TrainConfig(backbone="r18", embedding_size=16, input_size=16, batch_size=6, epochs=3,
                  lr=0.05, checkpoint_every=4, milestones=(0.5,), warmup_steps=2, s=16.0)


def test_resume_continues_the_same_loss_curve_exactly(tiny, tmp_path):
    whole = train(CFG, tiny, 6, tmp_path / "a", progress=False, device="cpu")
    assert whole["step"] == 12 and len(whole["losses"]) == 12
    train(CFG, tiny, 6, tmp_path / "b", max_steps=7, progress=False, device="cpu")
    resumed = train(CFG, tiny, 6, tmp_path / "b", progress=False, device="cpu")
    assert resumed["losses"] == whole["losses"]  # bit for bit on CPU
    for a, b in zip(whole["model"].state_dict().values(),
                    resumed["model"].state_dict().values()):
        assert torch.equal(a, b)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(12))
    assert [r["lr"] for r in log] == [learning_rate(CFG, s, 12) for s in range(12)]
    assert np.isfinite([r["loss"] for r in log]).all()


def test_learning_rate_schedules():
    cfg = TrainConfig(lr=1.0, warmup_steps=2, milestones=(0.5, 0.75))
    assert [learning_rate(cfg, s, 8) for s in range(8)] == [0.5, 1, 1, 1, 0.1, 0.1,
                                                             pytest.approx(0.01),
                                                             pytest.approx(0.01)]
    poly = TrainConfig(lr=1.0, schedule="poly")
    assert learning_rate(poly, 0, 10) == 1.0 and learning_rate(poly, 5, 10) == 0.25


def test_bad_configs_fail_before_training(tmp_path, tiny):
    with pytest.raises(ValueError, match="unknown config keys \\['lrr'\\]"):
        load_config({"lrr": 0.1})
    with pytest.raises(ValueError, match="margin must be one of"):
        TrainConfig(margin="arc")
    with pytest.raises(ValueError, match="batch_size must be"):
        load_config({"batch_size": 0})
    path = tmp_path / "cfg.yaml"
    path.write_text("backbone: r18\nmilestones: [0.3, 0.6]\n")
    assert load_config(path).milestones == (0.3, 0.6)
    with pytest.raises(ValueError, match="must not exceed the data set"):
        train(TrainConfig(batch_size=1000, input_size=16), tiny, 6, tmp_path / "c",
              progress=False)
    train(CFG, tiny, 6, tmp_path / "d", max_steps=2, progress=False, device="cpu")
    other = TrainConfig(**{**CFG.__dict__, "lr": 0.01})
    with pytest.raises(ValueError, match="another config"):
        train(other, tiny, 6, tmp_path / "d", progress=False, device="cpu")


def test_training_on_tiny_synthfaces_verifies_better_than_its_untrained_start(tmp_path):
    from arclab.data.cache import render_pairs
    from arclab.data.protocols import lfw_pairs
    from arclab.evaluation import verification_accuracy_10fold
    from arclab.models import extract_embeddings

    cfg = SynthConfig(nuisance=0.5)
    t = training_set(cfg, 30, 8)
    data = FaceDataset(render_items(cfg, t["items"], size=32, progress=False)["images"],
                       t["label"], flip=True)
    run = train(TrainConfig(backbone="r18", embedding_size=64, input_size=32, batch_size=40,
                            epochs=6, lr=0.1, s=16.0, warmup_steps=5, checkpoint_every=1000),
                data, 30, tmp_path / "run", progress=False, device="cpu")
    assert run["losses"][-1] < 0.5 * run["losses"][0]
    pairs = lfw_pairs(cfg, 100, 40)  # unseen identities
    left, right = render_pairs(pairs, size=32, progress=False, directory=tmp_path / "cache")

    def accuracy(model):
        def embed(images):
            x = torch.stack([FaceDataset(images, np.zeros(len(images), int))[i][0]
                             for i in range(len(images))])
            return extract_embeddings(model, [x])
        return verification_accuracy_10fold(embed(left), embed(right), pairs["issame"])["mean"]

    torch.manual_seed(0)  # the same initial weights train() starts from
    untrained = get_model("r18", embedding_size=64, input_size=32)
    before, after = accuracy(untrained), accuracy(run["model"])
    # random CNN features already verify SynthFaces somewhat (about 0.8 here): training has to
    # add clearly more than that, which a broken head, margin or loop does not
    assert after > before + 0.08, (before, after)
