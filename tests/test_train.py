"""The training loop: a resumed run continues the same loss curve; configs fail early."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from arclab.data.cache import FaceDataset, render_items
from arclab.data.params import SynthConfig
from arclab.data.splits import training_set
from arclab.models import get_model
from arclab.train import TrainConfig, learning_rate, load_config, train
from arclab.train.config import weights_key
from arclab.train.loop import step_batch


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
    for run in ("a", "b"):  # the resumed run's log drops the steps it redid: each step once
        log = [json.loads(line)
               for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
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
    from arclab.data.splits import lfw_pairs
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


def test_validation_sees_the_model_of_its_step_and_survives_resume(tiny, tmp_path):
    def probe(model):  # a validator that reports a fingerprint of the weights it was given
        return {"w": float(sum(p.detach().double().sum() for p in model.parameters()))}

    cfg = TrainConfig(**{**CFG.__dict__, "validate_every": 5})
    first = train(cfg, tiny, 6, tmp_path / "v", validate=probe, max_steps=7, progress=False,
                  device="cpu")
    run = train(cfg, tiny, 6, tmp_path / "v", validate=probe, progress=False, device="cpu")
    assert [h["step"] for h in first["validation"]] == [5]
    assert [h["step"] for h in run["validation"]] == [5, 10, 12]  # every 5 and at the end
    at5 = train(cfg, tiny, 6, tmp_path / "w", max_steps=5, progress=False, device="cpu")
    assert run["validation"][0]["w"] == probe(at5["model"])["w"]
    assert run["validation"][-1]["w"] == probe(run["model"])["w"]
    log = [json.loads(x) for x in (tmp_path / "v" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "validation" in r] == [5, 10, 12]


def test_bf16_autocast_runs_the_backbone_in_bf16_and_the_head_in_fp32(tiny, tmp_path):
    from arclab.train import amp_dtype

    cfg = TrainConfig(**{**CFG.__dict__, "epochs": 1})
    fp32 = train(cfg, tiny, 6, tmp_path / "f", progress=False, device="cpu")
    bf16 = train(TrainConfig(**{**cfg.__dict__, "amp": "bf16"}), tiny, 6, tmp_path / "b",
                 progress=False, device="cpu")
    # same data, same init: the first loss differs only by bf16 rounding in the backbone
    assert bf16["losses"][0] != fp32["losses"][0]
    assert bf16["losses"][0] == pytest.approx(fp32["losses"][0], rel=0.05)
    assert all(p.dtype == torch.float32 for p in bf16["model"].parameters())
    assert amp_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        amp_dtype("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainConfig(amp="half")


def test_gradient_clipping_bounds_the_first_update(tiny, tmp_path):
    base = {**CFG.__dict__, "momentum": 0.0, "weight_decay": 0.0, "warmup_steps": 0,
            "lr": 1.0}
    clip = 1e-3
    run = train(TrainConfig(**{**base, "grad_clip": clip}), tiny, 6, tmp_path / "c",
                max_steps=1, progress=False, device="cpu")
    torch.manual_seed(CFG.seed)
    start = get_model("r18", embedding_size=16, input_size=16)
    # one plain SGD step with lr 1: the parameter change is the clipped gradient
    delta = torch.cat([(a - b).flatten() for (n, a), b in zip(
        run["model"].named_parameters(), start.parameters())])
    head_delta = run["head"].weight.detach().flatten()
    torch.manual_seed(CFG.seed)
    get_model("r18", embedding_size=16, input_size=16)
    from arclab.losses.heads import make_head

    head0 = make_head("arcface", 16, 6).weight.detach().flatten()
    total = torch.cat([delta, head_delta - head0]).norm().item()
    assert total == pytest.approx(clip, rel=1e-3)


def test_triplet_batches_are_p_identities_by_k_images_and_training_lowers_the_loss(tiny,
                                                                                  tmp_path):
    from arclab.train import step_batch

    cfg = TrainConfig(**{**CFG.__dict__, "margin": "triplet", "batch_size": 12,
                         "images_per_identity": 3, "epochs": 4, "lr": 0.05})
    seen = []
    for step in range(4):
        _, y = step_batch(tiny, cfg, step)
        counts = np.bincount(y.numpy())
        assert sorted(counts[counts > 0].tolist()) == [3, 3, 3, 3]  # P = 4 ids, K = 3 each
        seen.append(y)
    halves = [step_batch(tiny, cfg, 1, rank=r, world_size=2)[1] for r in range(2)]
    assert torch.equal(torch.cat(halves), seen[1])  # ranks split the same P x K batch
    cfg = TrainConfig(**{**cfg.__dict__, "epochs": 10})
    run = train(cfg, tiny, 6, tmp_path / "t", progress=False, device="cpu")
    assert len(run["losses"]) == 20 and isinstance(run["head"], torch.nn.Identity)
    from arclab.losses.triplet import batch_hard_triplet_loss

    x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 127.5 - 1
                     for im in tiny.images])
    y = torch.as_tensor(tiny.labels)

    def whole_set_loss(model):  # every image, no flips, eval mode: a deterministic yardstick
        with torch.no_grad():
            return float(batch_hard_triplet_loss(model.eval()(x), y, 0.2))

    torch.manual_seed(cfg.seed)
    start = get_model("r18", embedding_size=16, input_size=16)
    assert whole_set_loss(run["model"]) < 0.7 * whole_set_loss(start)
    with pytest.raises(ValueError, match="multiple of images_per_identity"):
        TrainConfig(margin="triplet", batch_size=10, images_per_identity=4)


def test_gradient_and_overflow_options_reach_the_margin_loss(tiny, tmp_path):
    base = {**CFG.__dict__, "epochs": 1}
    exact = train(TrainConfig(**base), tiny, 6, tmp_path / "e", max_steps=3,
                  progress=False, device="cpu")
    st = train(TrainConfig(**{**base, "gradient": "straight_through"}), tiny, 6,
               tmp_path / "s", max_steps=3, progress=False, device="cpu")
    assert st["losses"][0] == exact["losses"][0]  # same forward at the same start
    assert st["losses"][1:] != exact["losses"][1:]  # a different backward moved the weights
    with pytest.raises(ValueError, match="overflow must be"):
        TrainConfig(overflow="wrap")


def test_target_angle_log_equals_the_angle_of_the_first_batch(tiny, tmp_path):
    from arclab.losses.heads import make_head
    from arclab.train import step_batch

    run = train(CFG, tiny, 6, tmp_path / "a", max_steps=2, progress=False, device="cpu")
    torch.manual_seed(CFG.seed)
    model = get_model("r18", embedding_size=16, input_size=16)
    head = make_head("arcface", 16, 6)
    x, y = step_batch(tiny, CFG, 0)
    cos_y = head(model(x)).gather(1, y[:, None]).clamp(-1, 1)
    expected = torch.rad2deg(torch.arccos(cos_y)).mean().item()
    assert run["target_angles"][0] == pytest.approx(expected, rel=1e-5)
    assert len(run["target_angles"]) == 2 and 0 < expected < 180


def _log_rows(path):
    """log.jsonl without its wall-clock field (images_per_s differs between any two runs)."""
    return [{k: v for k, v in json.loads(line).items() if k != "images_per_s"}
            for line in path.read_text().splitlines()]


def test_max_steps_never_moves_a_run_backwards_and_must_be_positive(tiny, tmp_path):
    done = train(CFG, tiny, 6, tmp_path / "a", progress=False, device="cpu")
    ckpt = tmp_path / "a" / "checkpoint.pt"
    before = ckpt.read_bytes()
    with pytest.raises(ValueError, match=r"max_steps \(5\) is below step 12"):
        train(CFG, tiny, 6, tmp_path / "a", max_steps=5, progress=False, device="cpu")
    assert ckpt.read_bytes() == before  # old code wrote "step 5" over the step-12 weights
    assert torch.load(ckpt, weights_only=True)["step"] == done["step"] == 12
    for bad in (-3, 0, 2.5, True):
        with pytest.raises(ValueError, match="max_steps must be a positive integer"):
            train(CFG, tiny, 6, tmp_path / "b", max_steps=bad, progress=False, device="cpu")
    assert not (tmp_path / "b").exists()  # refused before anything was written
    again = train(CFG, tiny, 6, tmp_path / "a", max_steps=12, progress=False, device="cpu")
    assert again["losses"] == done["losses"]  # max_steps at the reached step: nothing to do


def test_the_log_is_on_disk_before_each_checkpoint(tiny, tmp_path, monkeypatch):
    import arclab.train.loop as loop

    seen = []
    real = loop.save_checkpoint

    def spy(ckpt, cfg, parts, record, step, rank):
        lines = (ckpt.parent / "log.jsonl").read_text().splitlines()  # what a kill would leave
        seen.append((step, sum("loss" in json.loads(x) for x in lines)))
        real(ckpt, cfg, parts, record, step, rank)

    monkeypatch.setattr(loop, "save_checkpoint", spy)
    train(CFG, tiny, 6, tmp_path / "a", max_steps=9, progress=False, device="cpu")
    assert seen == [(4, 4), (8, 8), (9, 9)]  # buffered, the file held 0 lines at step 4


def test_resume_cuts_the_log_to_the_checkpoint_and_drops_a_torn_last_line(tiny, tmp_path):
    def probe(model):
        return {"w": float(sum(p.detach().double().sum() for p in model.parameters()))}

    cfg = TrainConfig(**{**CFG.__dict__, "validate_every": 4})  # validations at checkpoints
    train(cfg, tiny, 6, tmp_path / "a", validate=probe, progress=False, device="cpu")
    whole = _log_rows(tmp_path / "a" / "log.jsonl")
    assert [r["step"] for r in whole if "validation" in r] == [4, 8, 12]
    train(cfg, tiny, 6, tmp_path / "b", validate=probe, max_steps=4, progress=False,
          device="cpu")
    log = tmp_path / "b" / "log.jsonl"
    # a kill at step 6: steps 4 and 5 logged after the checkpoint, the last line cut short
    later = (tmp_path / "a" / "log.jsonl").read_text().splitlines()[5:7]
    log.write_text(log.read_text() + "\n".join(later) + '\n{"step": 6, "lo')
    with pytest.warns(UserWarning, match="torn last line"):
        train(cfg, tiny, 6, tmp_path / "b", validate=probe, progress=False, device="cpu")
    # the validation at the checkpoint's own step (4) stays; old code dropped it, then raised
    assert _log_rows(log) == whole
    log.write_text('{"step": 0}\nnot json\n{"step": 1}\n')
    with pytest.raises(ValueError, match="line 2 is not a JSON object"):
        train(cfg, tiny, 6, tmp_path / "b", validate=probe, max_steps=12, progress=False,
              device="cpu")


def _item_by_item(data: FaceDataset) -> FaceDataset:
    """The same set with its batch method hidden: the loop stacks items one by one."""
    plain = copy.copy(data)
    plain.batch = None
    return plain


@pytest.mark.parametrize("margin", ["arcface", "triplet"])
def test_batches_by_array_indexing_equal_the_item_by_item_batches(tiny, margin):
    cfg = TrainConfig(**{**CFG.to_dict(), "margin": margin, "images_per_identity": 2})
    for step in range(8):  # across an epoch boundary (4 steps an epoch)
        x, y = step_batch(tiny, cfg, step)
        rng_after = torch.rand(3)
        x0, y0 = step_batch(_item_by_item(tiny), cfg, step)
        assert torch.equal(x, x0) and torch.equal(y, y0) and x.is_contiguous()
        assert torch.equal(rng_after, torch.rand(3))  # the global RNG is left where it was


def test_channels_last_trains_the_same_model_up_to_rounding_and_resumes_exactly(tiny, tmp_path):
    nhwc = TrainConfig(**{**CFG.to_dict(), "backbone": "mbf", "channels_last": True})
    nchw = TrainConfig(**{**nhwc.to_dict(), "channels_last": False})
    a = train(nhwc, tiny, 6, tmp_path / "a", progress=False, device="cpu")
    b = train(nchw, tiny, 6, tmp_path / "b", progress=False, device="cpu")
    convs = [m.weight for m in a["model"].modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    # the same arithmetic in another order: the first losses agree to float32 rounding (1e-5;
    # 6e-5 by the second step, depending on the threads and kernels chosen; later ones drift
    # apart, as any rounding difference grows over a few SGD steps at this scale)
    np.testing.assert_allclose(a["losses"][0], b["losses"][0], rtol=1e-5)
    np.testing.assert_allclose(a["losses"][1], b["losses"][1], rtol=1e-3)
    assert a["losses"][:2] != b["losses"][:2]  # and NHWC really ran
    train(nhwc, tiny, 6, tmp_path / "c", max_steps=5, progress=False, device="cpu")
    resumed = train(nhwc, tiny, 6, tmp_path / "c", progress=False, device="cpu")
    assert resumed["losses"] == a["losses"]
    # a run cached before the key existed keeps its hash (channels_last=False is neutral)
    old = {k: v for k, v in nchw.to_dict().items() if k != "channels_last"}
    assert weights_key(nchw.to_dict()) == weights_key(old) != weights_key(nhwc.to_dict())
