"""Training with the sharded classifier (``fc: sharded``) and Partial FC: one process and
torchrun, checked against the dense training step, and checkpoints that resume on any world size.
"""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from test_train_spec import SPEC, _cli
from torch.utils.data import Dataset

from arclab.losses.heads import make_head
from arclab.losses.margins import MarginLoss
from arclab.models import get_model
from arclab.parallel import (
    RowSGD,
    ShardedMarginFC,
    class_range,
    fc_state,
    init_weight,
    launch,
    load_fc_state,
)
from arclab.train import TrainConfig, load_config, step_batch, train
from arclab.train.config import learning_rate, weights_key
from arclab.train.sources import build_dataset
from arclab.train.spec import load_spec


class _Random(Dataset):
    def __init__(self, n: int, classes: int, size: int = 16) -> None:
        gen = torch.Generator().manual_seed(5)
        self.x = torch.rand(n, 3, size, size, generator=gen) * 2 - 1
        self.labels = (torch.arange(n) % classes).numpy()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.labels[i])


def _dense_reference(cfg: TrainConfig, data, n_classes: int, steps: int):
    """The dense single-process loop, written out: the same backbone init, a dense head whose
    weight is the sharded layer's initial weight, torch SGD, clip_grad_norm_ over everything."""
    torch.manual_seed(cfg.seed)
    model = get_model(cfg.backbone, embedding_size=cfg.embedding_size,
                      input_size=cfg.input_size)
    head = make_head(cfg.margin, cfg.embedding_size, n_classes, subcenters=cfg.subcenters)
    with torch.no_grad():
        head.weight.copy_(init_weight(0, n_classes, cfg.embedding_size,
                                      subcenters=cfg.subcenters, seed=cfg.seed))
    loss_fn = MarginLoss(cfg.margin, s=cfg.s)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    total = len(data) // cfg.batch_size * cfg.epochs
    model.train()
    losses = []
    for step in range(steps):
        x, y = step_batch(data, cfg, step)
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step, total)
        loss = loss_fn(head(model(x)), y)
        opt.zero_grad()
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
    return losses, model, head, opt


@pytest.mark.parametrize("subcenters", [1, 3])
def test_one_process_sharded_training_equals_the_dense_loop(tmp_path, subcenters):
    cfg = TrainConfig(backbone="r18", embedding_size=16, input_size=16, batch_size=8,
                      epochs=1, s=16.0, lr=0.05, fc="sharded", grad_clip=1.0,
                      subcenters=subcenters)
    data = _Random(48, 6)
    result = train(cfg, data, 6, tmp_path, device="cpu", progress=False, max_steps=3)
    losses, model, head, opt = _dense_reference(cfg, data, 6, 3)
    assert result["losses"] == pytest.approx(losses, rel=1e-5)
    assert losses[0] > 1.0 and len(set(losses)) == 3  # the clip bites: the loss moves
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    # the checkpoint's head is the dense head's state dict, momentum included
    dense = make_head(cfg.margin, 16, 6, subcenters=subcenters)
    dense.load_state_dict(state["head"])
    assert torch.allclose(dense.weight, head.weight.detach(), atol=1e-6)
    assert torch.allclose(state["fc"]["momentum"],
                          opt.state[head.weight]["momentum_buffer"], atol=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(state["model"][name], p.detach(), atol=1e-5), name
    # the logged angle is the mean θ_y of the dense head's first batch
    with torch.no_grad():
        torch.manual_seed(cfg.seed)
        start = get_model("r18", embedding_size=16, input_size=16)
        x, y = step_batch(data, cfg, 0)
        first = make_head(cfg.margin, 16, 6, subcenters=subcenters)
        first.weight.copy_(init_weight(0, 6, 16, subcenters=subcenters))
        cos = first(start.train()(x)).gather(1, y[:, None])
    assert result["target_angles"][0] == pytest.approx(
        torch.rad2deg(torch.arccos(cos)).mean().item(), abs=1e-3)


def test_partial_fc_training_leaves_unsampled_rows_and_their_momentum_alone(tmp_path):
    cfg = TrainConfig(backbone="r18", embedding_size=8, input_size=16, batch_size=8,
                      epochs=1, s=16.0, lr=0.1, fc="sharded", sample_rate=0.5)
    data = _Random(40, 20)  # 20 classes, 8 labels per batch: 10 kept (8 positives + 2)
    result = train(cfg, data, 20, tmp_path, device="cpu", progress=False, max_steps=2)
    kept = result["head"].kept_classes  # the second step's sample
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    start = init_weight(0, 20, 8)
    changed = (state["head"]["weight"] != start).any(dim=1)
    moving = (state["fc"]["momentum"] != 0).any(dim=1)
    _, y1 = step_batch(data, cfg, 1)
    assert len(kept) == 10 and set(y1.tolist()) <= set(kept.tolist())
    # rows of the second step's sample moved; a row is untouched iff no step sampled it
    assert changed[kept].all()
    assert torch.equal(changed, moving) and 0 < int(changed.sum()) < 20
    assert torch.equal(state["head"]["weight"][~changed], start[~changed])


def test_sharded_config_keys_and_run_identity():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("fc", "sample_rate")}
    assert weights_key(TrainConfig().to_dict()) == weights_key(old)  # cached runs stay valid
    assert weights_key(TrainConfig(fc="sharded").to_dict()) != weights_key(old)
    assert load_config({"fc": "sharded", "sample_rate": 0.1}).sample_rate == 0.1
    with pytest.raises(ValueError, match="sample_rate 0.5 .Partial FC. needs fc 'sharded'"):
        TrainConfig(sample_rate=0.5)
    with pytest.raises(ValueError, match=r"sample_rate must be a number in \(0, 1\]"):
        TrainConfig(fc="sharded", sample_rate=0.0)
    with pytest.raises(ValueError, match="fc 'sharded' needs a cosine margin"):
        TrainConfig(fc="sharded", margin="softmax")
    with pytest.raises(ValueError, match="fc must be 'dense' or 'sharded'"):
        TrainConfig(fc="model_parallel")


def _shard_round(rank: int, world_size: int, state: dict | None) -> dict:
    fc = ShardedMarginFC(4, 7, margin="arcface", s=8.0, subcenters=2, sample_rate=0.6)
    opt = RowSGD([fc.weight], lr=0.1, momentum=0.9, weight_decay=0.01)
    if state is None:
        x = torch.randn(3 + rank, 4, generator=torch.Generator().manual_seed(rank))
        fc(x, (torch.arange(3 + rank) * 3 + rank) % 7).backward()
        opt.step()
    else:
        load_fc_state(fc, opt, state)
    return {"full": fc_state(fc, opt), "weight": fc.weight.detach().clone(),
            "momentum": opt.state[fc.weight]["momentum_buffer"].clone(), "step": fc.step,
            "range": (fc.start, fc.stop)}


def test_fc_state_gathers_shards_and_loads_on_another_world_size():
    three = launch(_shard_round, 3, None, timeout_s=120)  # 7 classes: 3, 2, 2
    full = three[0]["full"]
    assert all(r["full"] is None for r in three[1:])
    assert [r["range"] for r in three] == [class_range(7, 3, r) for r in range(3)]
    assert torch.equal(full["weight"], torch.cat([r["weight"] for r in three]))
    assert torch.equal(full["momentum"], torch.cat([r["momentum"] for r in three]))
    assert full["step"] == 1 and full["weight"].shape == (14, 4)
    two = launch(_shard_round, 2, full, timeout_s=120)  # 7 classes: 4, 3
    for r in two:
        lo, hi = r["range"]
        assert torch.equal(r["weight"], full["weight"][2 * lo: 2 * hi])
        assert torch.equal(r["momentum"], full["momentum"][2 * lo: 2 * hi])
        assert r["step"] == 1
    assert torch.equal(two[0]["full"]["weight"], full["weight"])
    fc = ShardedMarginFC(4, 6, subcenters=2)
    with pytest.raises(ValueError, match=r"state\['weight'\] must be a floating-point tensor "
                                         r"of shape \(12, 4\)"):
        load_fc_state(fc, None, full)
    with pytest.raises(ValueError, match="must be finite"):
        load_fc_state(ShardedMarginFC(4, 7, subcenters=2), None,
                      {**full, "weight": full["weight"] * float("nan")})


def test_torchrun_sharded_step_equals_the_dense_step_and_resumes_on_any_world(tmp_path,
                                                                             monkeypatch):
    """Two gloo processes with ``fc: sharded``: the first step equals one dense SGD step on the
    mean of the two half-batch losses (backbone, whole head, momentum); an interrupted run
    resumes onto the uninterrupted curve; its checkpoint resumes in one process unchanged."""
    raw = {**SPEC, "train": {**SPEC["train"], "fc": "sharded", "subcenters": 2}}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    env = {"ARCLAB_CACHE": str(tmp_path / "cache")}
    args = [str(spec_path), "--device", "cpu", "--no-progress"]
    one = _cli(*args, "--out", str(tmp_path / "one"), "--max-steps", "1", env_extra=env,
               torchrun=True)
    assert one.returncode == 0, one.stderr
    shutil.copytree(tmp_path / "one", tmp_path / "part")
    shutil.copytree(tmp_path / "one", tmp_path / "single")
    whole = _cli(*args, "--out", str(tmp_path / "whole"), env_extra=env, torchrun=True)
    rest = _cli(*args, "--out", str(tmp_path / "part"), env_extra=env, torchrun=True)
    single = _cli(*args, "--out", str(tmp_path / "single"), "--max-steps", "1", env_extra=env)
    assert whole.returncode == rest.returncode == single.returncode == 0, rest.stderr
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 6 and a["losses"] == b["losses"]
    assert torch.equal(a["head"]["weight"], b["head"]["weight"])
    state = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    again = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=True)
    assert torch.equal(again["head"]["weight"], state["head"]["weight"])
    assert torch.equal(again["fc"]["momentum"], state["fc"]["momentum"])

    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    spec = load_spec(raw)
    cfg: TrainConfig = spec["train"]
    data, n_classes = build_dataset(spec["data"], cfg.input_size, progress=False)
    torch.manual_seed(cfg.seed)
    model = get_model("r18", embedding_size=16, input_size=16)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    head = make_head("arcface", 16, n_classes, subcenters=2)
    with torch.no_grad():
        head.weight.copy_(init_weight(0, n_classes, 16, subcenters=2))
    loss_fn = MarginLoss("arcface", s=cfg.s)
    halves = [step_batch(data, cfg, 0, rank=r, world_size=2) for r in range(2)]
    mean = sum(loss_fn(head(model(x)), y) for x, y in halves) / 2
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=cfg.lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    mean.backward()
    opt.step()
    assert state["losses"][0] == pytest.approx(mean.item(), rel=1e-5)
    for name, p in model.named_parameters():
        assert torch.allclose(state["model"][name], p.detach(), atol=5e-5), name
    assert torch.allclose(state["head"]["weight"], head.weight.detach(), atol=5e-5)
    assert torch.allclose(state["fc"]["momentum"], opt.state[head.weight]["momentum_buffer"],
                          atol=5e-5)
    # the backbone moved by far more than the tolerance: without the ×W on the embeddings'
    # gradient (DDP averages) it would have moved about half as far and failed above
    assert (state["model"]["conv1.weight"] - start["conv1.weight"]).abs().max() > 1e-2
