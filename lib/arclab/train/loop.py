"""The recognition training loop: backbone + cosine head + margin loss, SGD, resumable.

Deterministic on CPU: the batches of a step come from a per-epoch permutation seeded by
(seed, epoch), the global RNG (flip augmentation, dropout) is re-seeded from (seed, step, rank)
before every step, and the learning rate is a pure function of the step, so a run resumed from a
checkpoint continues the very same loss curve. Checkpoints are written atomically and read with
``torch.load(weights_only=True)``.

Under ``torchrun`` (a process group is initialised) the model and head are wrapped in
DistributedDataParallel: every process takes its ``batch_size / W`` share of the step's global
batch, gradients are averaged, and only rank 0 logs, validates and writes checkpoints.

With ``fc="sharded"`` only the backbone is in DDP; the classifier is a
:class:`arclab.parallel.ShardedMarginFC` whose classes are split over the processes, with its
own optimizer (:class:`arclab.parallel.RowSGD`: with Partial FC, ``sample_rate < 1``, the rows
not sampled and their momentum stay untouched). Its loss is the mean over the *global* batch,
so the embeddings' gradient is multiplied by W before DDP averages the backbone's gradients:
each step then equals the dense step on the whole batch. Gradient clipping uses the norm over
the backbone and every rank's rows (all-reduced), as the dense clip would. Checkpoints hold
the whole classifier (gathered to rank 0, the dense head's weight), so a run resumes on any
number of processes.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from arclab.atomic import atomic_path
from arclab.losses.distill import feature_distillation_loss, teacher_head_weight
from arclab.losses.heads import make_head
from arclab.losses.margins import MarginLoss
from arclab.losses.triplet import TripletLoss
from arclab.models import get_model
from arclab.parallel import RowSGD, ShardedMarginFC, fc_state, load_fc_state
from arclab.train.config import TrainConfig, learning_rate, weights_key

__all__ = ["amp_dtype", "step_batch", "train"]

Validator = Callable[[nn.Module], dict[str, float]]


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of an ``amp`` mode on ``device``; None means full fp32.

    Example:
        >>> amp_dtype("auto", torch.device("cpu")) is None, amp_dtype("bf16", torch.device("cpu"))
        (True, torch.bfloat16)
    """
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device (loss scaling), got {device.type}; "
                         "use amp='bf16' or 'off'")
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[mode]


class _Net(nn.Module):
    """Backbone (under autocast when ``dtype``) then head in fp32: (N, 3, S, S) -> (N, C)."""

    def __init__(self, model: nn.Module, head: nn.Module, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model, self.head, self.dtype = model, head, dtype

    def forward(self, x: Tensor) -> Tensor:
        ctx = (torch.autocast(x.device.type, dtype=self.dtype) if self.dtype is not None
               else nullcontext())
        with ctx:
            emb = self.model(x)
        self.embedding = emb.float()  # read by the distillation term
        return self.head(self.embedding)  # cosines and arccos stay in fp32


def same_run(stored: dict | None, cfg: TrainConfig) -> bool:
    """Whether a checkpoint's config trains the same weights as ``cfg``: equal in every key
    but ``validate_every`` (validation reads the model, it never changes it)."""
    return stored is not None and weights_key(stored) == weights_key(cfg.to_dict())


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _pk_batch(labels: np.ndarray, cfg: TrainConfig, epoch: int, k: int) -> Tensor:
    """P × K indices for the triplet loss: the epoch's identity order, P identities per step,
    K images of each (drawn without replacement when the identity has K or more)."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    classes = np.unique(labels)
    order = classes[torch.randperm(len(classes), generator=gen).numpy()]
    p, kk = cfg.batch_size // cfg.images_per_identity, cfg.images_per_identity
    chosen = order[np.arange(k * p, (k + 1) * p) % len(order)]
    pick = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * 7919 + k)
    out = []
    for c in chosen:
        members = np.flatnonzero(labels == c)
        if len(members) >= kk:
            idx = torch.randperm(len(members), generator=pick)[:kk]
        else:
            idx = torch.randint(len(members), (kk,), generator=pick)
        out.append(members[idx.numpy()])
    return torch.from_numpy(np.concatenate(out))


def step_batch(dataset, cfg: TrainConfig, step: int, *, rank: int = 0,
               world_size: int = 1) -> tuple[Tensor, Tensor]:
    """The images (B/W, 3, S, S) and labels (B/W,) that process ``rank`` trains on at
    ``step``; re-seeds the global RNG from (seed, step, rank) first, so augmentation is a pure
    function of the step. For the triplet loss the global batch is P identities × K images
    (the data set must expose ``labels``)."""
    per_epoch = len(dataset) // cfg.batch_size
    epoch, k = divmod(step, per_epoch)
    local = cfg.batch_size // world_size
    if cfg.margin == "triplet":
        if not hasattr(dataset, "labels"):
            raise ValueError("margin 'triplet' needs a data set with a .labels array "
                             "(P x K sampling)")
        batch = _pk_batch(np.asarray(dataset.labels), cfg, epoch, k)
        start = rank * local
    else:
        batch = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(
            cfg.seed * 1_000_003 + epoch))
        start = k * cfg.batch_size + rank * local
    torch.manual_seed((cfg.seed * 1_000_003 + step) * 1009 + rank)
    items = [dataset[int(i)] for i in batch[start:start + local]]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


@torch.no_grad()
def _clip_sharded(dense: list[Tensor], fc_weight: Tensor, max_norm: float, world: int) -> None:
    """clip_grad_norm_ over the backbone's (replicated) gradients and the classifier rows of
    every rank: the norm is √(‖g_backbone‖² + Σ_r ‖g_W_r‖²), the same on every rank."""
    sq = torch.zeros((), device=fc_weight.device)
    for p in dense:
        if p.grad is not None:
            sq += p.grad.float().pow(2).sum()
    g = fc_weight.grad
    fc_sq = torch.zeros((), device=fc_weight.device) if g is None else \
        (g._values() if g.is_sparse else g).float().pow(2).sum()
    if world > 1:
        torch.distributed.all_reduce(fc_sq)
    coef = (max_norm / ((sq + fc_sq).sqrt() + 1e-6)).clamp(max=1.0)  # clip_grad_norm_'s rule
    for p in [*dense, fc_weight]:
        if p.grad is not None:
            p.grad.mul_(coef)


def _check_teacher(teacher: dict | None, cfg: TrainConfig, sharded: bool, head: nn.Module,
                   dev: torch.device) -> dict | None:
    """Validate ``train``'s ``teacher`` argument; copy (and freeze) its head when asked;
    return {"model": the frozen teacher on ``dev`` in eval mode, "weight"} or None."""
    if teacher is None:
        return None
    unknown = sorted(set(teacher) - {"model", "weight", "copy_head", "head"})
    if unknown or not isinstance(teacher.get("model"), nn.Module):
        raise ValueError("teacher must be {'model': nn.Module, 'weight': float, 'copy_head': "
                         f"bool, 'head': state dict}}; got keys {sorted(teacher)}")
    if sharded or cfg.margin in ("softmax", "triplet"):
        raise ValueError("distillation needs fc 'dense' and a cosine margin, got fc "
                         f"{cfg.fc!r}, margin {cfg.margin!r}")
    weight = teacher.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) \
            or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"teacher['weight'] must be a finite number >= 0, got {weight!r}")
    model = teacher["model"].to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        probe = model(torch.zeros(2, 3, cfg.input_size, cfg.input_size, device=dev))
    if probe.shape != (2, cfg.embedding_size):
        raise ValueError(f"the teacher maps {cfg.input_size}x{cfg.input_size} images to "
                         f"{tuple(probe.shape[1:])} features, the student to "
                         f"({cfg.embedding_size},): they must match")
    if teacher.get("copy_head", False):
        with torch.no_grad():
            head.weight.copy_(teacher_head_weight(teacher.get("head") or {}, head))
        head.weight.requires_grad_(False)
    return {"model": model, "weight": float(weight)}


def _keep_log(path: Path, upto: int) -> None:
    """Drop log lines of steps a resumed run is about to redo (step >= ``upto``)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] < upto]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(line + "\n" for line in keep))


def train(cfg: TrainConfig, dataset, n_classes: int, out_dir: str | Path, *,
          validate: Validator | None = None, max_steps: int | None = None,
          device: str | torch.device | None = None, progress: bool = True,
          teacher: dict | None = None) -> dict:
    """Train on ``dataset`` (items: (3, H, W) float image in [−1, 1], int label in
    [0, n_classes)).

    Resumes from ``out_dir/checkpoint.pt`` when it exists (a checkpoint of another config is
    refused); stops after ``max_steps`` total steps if given (to simulate an interruption).
    Writes ``log.jsonl`` (one line per step: step, loss, lr, images/s; one per validation:
    step, validation) and ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end.
    ``validate(model) -> {name: accuracy}`` runs every ``validate_every`` steps and at the end.

    ``teacher`` distils a trained model into this one (:mod:`arclab.losses.distill`):
    {"model": the teacher backbone (same input size and embedding size), "weight": λ of the
    feature term added to the loss, "copy_head": whether to start from the teacher's classifier
    ("head": its state dict) and keep it fixed}. The logged loss is the margin loss; the
    feature term is logged as ``distill``. The caller keys the run directory by the teacher
    (:func:`arclab.train.spec.run_dir` does).

    Returns:
        {"losses": every step's loss so far, "target_angles": every step's mean angle θ_y
        (degrees) between a sample and its class weight (cosine heads only, else empty),
        "step": steps done, "total_steps", "model",
        "head", "validation": [{"step", name: value, ...}, ...]}.
    """
    from tqdm.auto import tqdm

    import arclab

    out_dir = Path(out_dir)
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    rank, world = _world()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of "
                         f"processes ({world})")
    per_epoch = len(dataset) // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size ({cfg.batch_size}) must not exceed the data set "
                         f"({len(dataset)} items)")
    dev = torch.device(device) if isinstance(device, torch.device) else arclab.get_device(device)
    dtype = amp_dtype(cfg.amp, dev)
    sharded = cfg.fc == "sharded"
    if sharded and dtype is torch.float16:
        raise ValueError("fc='sharded' does not support fp16 loss scaling (ranks would skip "
                         "different steps); use amp='bf16' or amp='off'")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = get_model(cfg.backbone, embedding_size=cfg.embedding_size,
                      input_size=cfg.input_size).to(dev)
    if cfg.margin == "triplet":
        head: nn.Module = nn.Identity()
        loss_fn: nn.Module = TripletLoss(cfg.triplet_margin)
    elif sharded:
        head = ShardedMarginFC(cfg.embedding_size, n_classes, margin=cfg.margin, s=cfg.s,
                               gradient=cfg.gradient, overflow=cfg.overflow,
                               sample_rate=cfg.sample_rate, subcenters=cfg.subcenters,
                               seed=cfg.seed).to(dev)
        loss_fn = head
    else:
        head = make_head(cfg.margin, cfg.embedding_size, n_classes,
                         subcenters=cfg.subcenters).to(dev)
        loss_fn = MarginLoss(cfg.margin, s=cfg.s, gradient=cfg.gradient,
                             overflow=cfg.overflow)
    distill = _check_teacher(teacher, cfg, sharded, head, dev)
    net: nn.Module = _Net(model, nn.Identity() if sharded else head, dtype)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    optimizers: list[torch.optim.Optimizer] = [opt]
    if sharded:
        fc_opt = RowSGD([head.weight], lr=cfg.lr, momentum=cfg.momentum,
                        weight_decay=cfg.weight_decay)
        optimizers.append(fc_opt)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    total = per_epoch * cfg.epochs
    ckpt, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    losses: list[float] = []
    angles: list[float] = []
    distilled: list[float] = []
    cosine_head = cfg.margin not in ("softmax", "triplet")
    history: list[dict] = []
    start = 0
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if not same_run(state.get("config"), cfg):
            raise ValueError(f"{ckpt} was written with another config; use a new out_dir")
        model.load_state_dict(state["model"])
        if sharded:
            load_fc_state(head, fc_opt, {"weight": state["head"]["weight"], **state["fc"]})
        else:
            head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        losses, history = list(state["losses"]), list(state["validation"])
        angles = list(state.get("target_angles", []))
        distilled = list(state.get("distill_losses", []))
        start = int(state["step"])
    stop = total if max_steps is None else min(total, max_steps)

    def save(step: int) -> None:
        fc = fc_state(head, fc_opt) if sharded else None  # every rank sends its rows
        if rank == 0:
            extra = {} if fc is None else {"fc": {"momentum": fc["momentum"],
                                                  "step": fc["step"]}}
            head_state = {"weight": fc["weight"]} if sharded else head.state_dict()
            with atomic_path(ckpt) as tmp:
                torch.save({"model": model.state_dict(), "head": head_state, **extra,
                            "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                            "step": step, "losses": losses, "validation": history,
                            "target_angles": angles, "distill_losses": distilled,
                            "config": cfg.to_dict()}, tmp)

    def run_validation(step: int, log) -> None:
        if validate is None or rank != 0 or any(h["step"] == step for h in history):
            return
        was = model.training
        result = {k: float(v) for k, v in validate(model).items()}
        model.train(was)
        history.append({"step": step, **result})
        log.write(json.dumps({"step": step, "validation": result}) + "\n")
        tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))

    if rank == 0:
        _keep_log(log_path, start)
    net.train()
    bar = tqdm(range(start, stop), desc="training", unit="step", leave=False,
               disable=not progress or rank != 0, initial=start, total=stop)
    with open(log_path, "a") if rank == 0 else nullcontext() as log:
        for step in bar:
            t0 = time.perf_counter()
            x, y = step_batch(dataset, cfg, step, rank=rank, world_size=world)
            lr = learning_rate(cfg, step, total)
            for o in optimizers:
                for group in o.param_groups:
                    group["lr"] = lr
            y = y.to(dev, non_blocking=True)
            x = x.to(dev, non_blocking=True)  # once: the teacher reads the same batch
            out = net(x)
            if sharded and world > 1:  # DDP averages: W·(1/W)·∂L/∂θ is the dense gradient
                out.register_hook(lambda g: g * world)
            loss = loss_fn(out, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            objective = loss
            if distill is not None:
                with torch.no_grad():
                    target = distill["model"](x).float()
                emb = (net.module if world > 1 else net).embedding
                feat = feature_distillation_loss(emb, target)
                objective = loss + distill["weight"] * feat
                distilled.append(feat.item())
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            scaler.scale(objective).backward()
            if cfg.grad_clip > 0:
                for o in optimizers:
                    scaler.unscale_(o)
                if sharded:
                    _clip_sharded(params, head.weight, cfg.grad_clip, world)
                else:
                    nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            for o in optimizers:
                scaler.step(o)
            scaler.update()
            value = loss.detach()
            if cosine_head:  # the mean angle to the own class weight, in degrees
                cos_y = head.target_cosine if sharded else out.detach().gather(1, y[:, None])
                theta = torch.rad2deg(torch.arccos(cos_y.clamp(-1, 1))).mean()
                value = torch.stack([value, theta])
            if world > 1 and not sharded:  # the sharded loss is global already
                torch.distributed.all_reduce(value)
                value = value / world
            if cosine_head:
                angles.append(value[1].item())
                value = value[0]
            losses.append(value.item())
            rate = cfg.batch_size / (time.perf_counter() - t0)
            if rank == 0:
                log.write(json.dumps({"step": step, "loss": losses[-1], "lr": lr,
                                      "images_per_s": rate}
                                     | ({"theta_y_deg": angles[-1]} if cosine_head else {})
                                     | ({"distill": distilled[-1]} if distill else {}))
                          + "\n")
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.3g}",
                                img_s=f"{rate:.0f}", refresh=False)
            if cfg.validate_every and (step + 1) % cfg.validate_every == 0:
                run_validation(step + 1, log)
            if (step + 1) % cfg.checkpoint_every == 0:
                save(step + 1)
        if stop == total:
            run_validation(stop, log)
    bar.close()
    save(stop)
    return {"losses": losses, "target_angles": angles, "distill_losses": distilled,
            "step": stop, "total_steps": total,
            "model": model,
            "head": head, "validation": history}
