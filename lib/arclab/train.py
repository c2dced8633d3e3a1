"""The recognition training loop: backbone + cosine head + margin loss, SGD, resumable.

Deterministic on CPU: batches come from a per-epoch permutation seeded by (seed, epoch), the
global RNG state (flip augmentation) is saved in every checkpoint, and the learning rate is a
pure function of the step, so a resumed run continues the very same loss curve. Checkpoints are
written atomically and read with ``torch.load(weights_only=True)``.

Taught in: notebooks/04_training_a_face_model.ipynb (planned)
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from arclab.atomic import atomic_path
from arclab.heads import make_head
from arclab.margins import PRESETS, MarginLoss
from arclab.models import get_model

__all__ = ["TrainConfig", "learning_rate", "load_config", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the ArcFace recipe (s=64, m=0.5, momentum 0.9,
    weight decay 5e-4, step decay ×0.1) at laptop scale."""

    backbone: str = "r18"
    embedding_size: int = 512
    input_size: int = 112
    margin: str = "arcface"          # a key of arclab.margins.PRESETS
    s: float = 64.0
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 1
    schedule: str = "step"           # step | poly
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of all steps, for "step"
    warmup_steps: int = 0
    grad_clip: float = 0.0           # 0: no clipping
    checkpoint_every: int = 100      # steps
    seed: int = 0

    def __post_init__(self) -> None:
        if self.margin not in PRESETS:
            raise ValueError(f"margin must be one of {sorted(PRESETS)}, got {self.margin!r}")
        if self.schedule not in ("step", "poly"):
            raise ValueError(f"schedule must be 'step' or 'poly', got {self.schedule!r}")
        for key in ("embedding_size", "input_size", "batch_size", "epochs",
                    "checkpoint_every"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        for key in ("s", "lr"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)!r}")
        for key in ("momentum", "weight_decay", "grad_clip", "warmup_steps"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)!r}")
        if any(not 0 < f < 1 for f in self.milestones):
            raise ValueError(f"milestones must be fractions in (0, 1), got {self.milestones!r}")


def load_config(source: dict | str | Path) -> TrainConfig:
    """A TrainConfig from a dict or a YAML file; unknown keys are refused by name."""
    import yaml

    data = source if isinstance(source, dict) else yaml.safe_load(Path(source).read_text())
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data or {}) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
    data = dict(data or {})
    if "milestones" in data:
        data["milestones"] = tuple(data["milestones"])
    return TrainConfig(**data)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then step decay ×0.1 at each
    milestone or polynomial decay (1 − t)²."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "poly":
        t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return cfg.lr * (1 - t) ** 2
    passed = sum(step >= math.floor(f * total_steps) for f in cfg.milestones)
    return cfg.lr * 0.1**passed


def _batch(dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[int(i)] for i in indices]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def train(cfg: TrainConfig, dataset, n_classes: int, out_dir: str | Path, *,
          max_steps: int | None = None, device: str | None = None,
          progress: bool = True) -> dict:
    """Train on ``dataset`` (items: (3, H, W) float image, int label in [0, n_classes)).

    Resumes from ``out_dir/checkpoint.pt`` when it exists; stops after ``max_steps`` total
    steps if given (to simulate an interruption). Writes ``log.jsonl`` (one line per step:
    step, loss, lr, images/s) and ``checkpoint.pt`` every ``checkpoint_every`` steps and at
    the end.

    Returns:
        {"losses": all losses so far, "step": steps done, "model", "head"}.
    """
    from tqdm.auto import tqdm

    import arclab

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    dev = arclab.get_device(device)
    torch.manual_seed(cfg.seed)
    model = get_model(cfg.backbone, embedding_size=cfg.embedding_size,
                      input_size=cfg.input_size).to(dev)
    head = make_head(cfg.margin, cfg.embedding_size, n_classes).to(dev)
    loss_fn = MarginLoss(cfg.margin, s=cfg.s)
    params = [p for p in [*model.parameters(), *head.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    per_epoch = len(dataset) // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size ({cfg.batch_size}) must not exceed the data set "
                         f"({len(dataset)} items)")
    total = per_epoch * cfg.epochs
    ckpt, losses, start = out_dir / "checkpoint.pt", [], 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if state["config"] != asdict(cfg) | {"milestones": list(cfg.milestones)}:
            raise ValueError(f"{ckpt} was written with another config; use a new out_dir")
        model.load_state_dict(state["model"]), head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        losses, start = list(state["losses"]), int(state["step"])
    stop = total if max_steps is None else min(total, max_steps)

    def save(step: int) -> None:
        with atomic_path(ckpt) as tmp:
            torch.save({"model": model.state_dict(), "head": head.state_dict(),
                        "optimizer": opt.state_dict(), "rng": torch.get_rng_state(),
                        "step": step, "losses": losses,
                        "config": asdict(cfg) | {"milestones": list(cfg.milestones)}}, tmp)

    model.train(), head.train()
    with open(out_dir / "log.jsonl", "a") as log:
        for step in tqdm(range(start, stop), desc="training", leave=False,
                         disable=not progress, initial=start, total=stop):
            t0 = time.perf_counter()
            epoch, k = divmod(step, per_epoch)
            perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(
                cfg.seed * 1_000_003 + epoch))
            x, y = _batch(dataset, perm[k * cfg.batch_size:(k + 1) * cfg.batch_size])
            lr = learning_rate(cfg, step, total)
            for group in opt.param_groups:
                group["lr"] = lr
            loss = loss_fn(head(model(x.to(dev))), y.to(dev))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            opt.zero_grad()
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            rate = len(y) / (time.perf_counter() - t0)
            log.write(json.dumps({"step": step, "loss": losses[-1], "lr": lr,
                                  "images_per_s": rate}) + "\n")
            if (step + 1) % cfg.checkpoint_every == 0:
                save(step + 1)
    save(stop)
    return {"losses": losses, "step": stop, "model": model, "head": head}
