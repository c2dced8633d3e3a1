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

:func:`train` is the outline: :func:`arclab.train.state.build` makes the parts,
:func:`~arclab.train.state.resume` loads a checkpoint, then per step a batch
(:func:`arclab.train.batches.step_batches`: a DataLoader with worker processes for data sets
decoded on demand), :func:`optimisation_step`, :func:`log_step`, :func:`run_validation` and
:func:`~arclab.train.state.save_checkpoint`.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import closing, nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

import arclab
from arclab.losses.distill import feature_distillation_loss
from arclab.models.export import save_backbone
from arclab.train.batches import step_batch, step_batches
from arclab.train.config import TrainConfig, learning_rate
from arclab.train.state import (
    Parts,
    Record,
    build,
    check_max_steps,
    flush_log,
    keep_log,
    rank_and_world,
    resume,
    save_checkpoint,
)
from arclab.train.tblog import TensorBoardLog

__all__ = ["amp_dtype", "check_inputs", "check_precision", "log_step", "optimisation_step",
           "run_validation", "step_batch", "train"]

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


def check_precision(cfg: TrainConfig, dev: torch.device) -> torch.dtype | None:
    """The autocast dtype ``cfg.amp`` gives on ``dev`` (:func:`amp_dtype`), refused where it
    cannot run.

    Raises:
        ValueError: ``amp`` fp16 off CUDA, or fp16 loss scaling with ``fc`` sharded; the
            message names ``train.amp``.
    """
    try:
        dtype = amp_dtype(cfg.amp, dev)
    except ValueError as err:
        raise ValueError(f"train.{err}") from None
    if cfg.fc == "sharded" and dtype is torch.float16:
        raise ValueError("train.amp: fc='sharded' does not support fp16 loss scaling (ranks "
                         "would skip different steps); use amp='bf16' or amp='off'")
    return dtype


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


def optimisation_step(parts: Parts, cfg: TrainConfig, x: Tensor, y: Tensor, step: int,
                      lr: float) -> tuple[float, float | None, float | None]:
    """One optimisation step on the batch (x, y) at learning rate ``lr``: forward, margin loss
    (plus λ × the distillation term with a teacher), backward through the loss scaler,
    gradient clipping, the optimizers' steps.

    Returns:
        (the loss, averaged over the processes; the mean angle θ_y in degrees between a sample
        and its class weight, None without a cosine head; the distillation term or None).
    """
    sharded, world, dev = parts.sharded, parts.world, parts.device
    for o in parts.optimizers:
        for group in o.param_groups:
            group["lr"] = lr
    y = y.to(dev, non_blocking=True)
    x = x.to(dev, non_blocking=True,  # once: the teacher reads the same batch
             memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
    out = parts.net(x)
    if sharded and world > 1:  # DDP averages: W·(1/W)·∂L/∂θ is the dense gradient
        out.register_hook(lambda g: g * world)
    loss = parts.loss_fn(out, y)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}")
    objective, feat_value = loss, None
    if parts.distill is not None:
        with torch.no_grad():
            target = parts.distill["model"](x).float()
        emb = (parts.net.module if world > 1 else parts.net).embedding
        feat = feature_distillation_loss(emb, target)
        objective = loss + parts.distill["weight"] * feat
        feat_value = feat.item()
    for o in parts.optimizers:
        o.zero_grad(set_to_none=True)
    parts.scaler.scale(objective).backward()
    if cfg.grad_clip > 0:
        for o in parts.optimizers:
            parts.scaler.unscale_(o)
        if sharded:
            _clip_sharded(parts.params, parts.head.weight, cfg.grad_clip, world)
        else:
            nn.utils.clip_grad_norm_(parts.params, cfg.grad_clip)
    for o in parts.optimizers:
        parts.scaler.step(o)
    parts.scaler.update()
    value, theta = loss.detach(), None
    cosine_head = cfg.margin not in ("softmax", "triplet")
    if cosine_head:  # the mean angle to the own class weight, in degrees
        cos_y = parts.head.target_cosine if sharded else out.detach().gather(1, y[:, None])
        value = torch.stack([value, torch.rad2deg(torch.arccos(cos_y.clamp(-1, 1))).mean()])
    if world > 1 and not sharded:  # the sharded loss is global already
        torch.distributed.all_reduce(value)
        value = value / world
    if cosine_head:
        theta = value[1].item()
        value = value[0]
    return value.item(), theta, feat_value


def open_log(path: Path, rank: int, start: int, tensorboard: bool = False):
    """``log.jsonl`` opened for appending on rank 0 (a null context on other ranks), mirrored
    to TensorBoard in ``<run>/tensorboard`` when ``tensorboard`` (events from ``start`` on,
    the steps a resumed run redoes, purged)."""
    if rank != 0:
        return nullcontext()
    file = open(path, "a")  # noqa: SIM115 (closed by the caller's with, or by TensorBoardLog)
    return TensorBoardLog(file, path.parent / "tensorboard", start) if tensorboard else file


def log_step(log, bar, step: int, lr: float, rate: float, loss: float, theta: float | None,
             feat: float | None) -> None:
    """Write one step's line to ``log`` (step, loss, lr, images/s, and θ_y and the
    distillation term when not None) and show the loss on the progress ``bar``."""
    log.write(json.dumps({"step": step, "loss": loss, "lr": lr, "images_per_s": rate}
                         | ({"theta_y_deg": theta} if theta is not None else {})
                         | ({"distill": feat} if feat is not None else {}))
              + "\n")
    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False)


def run_validation(validate: Validator | None, model: nn.Module, record: Record, step: int,
                   log, rank: int) -> None:
    """Validate ``model`` at ``step`` on rank 0 (once per step): append the result to
    ``record.history``, write it to ``log`` and print it; the model's mode is kept."""
    if validate is None or rank != 0 or any(h["step"] == step for h in record.history):
        return
    was = model.training
    result = {k: float(v) for k, v in validate(model).items()}
    model.train(was)
    record.history.append({"step": step, **result})
    log.write(json.dumps({"step": step, "validation": result}) + "\n")
    tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))


def check_inputs(cfg: TrainConfig, dataset, n_classes: int, world: int) -> int:
    """Refuse a bad class count or a batch that does not split over the processes or fit the
    data set; returns the steps per epoch."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if cfg.batch_size % world:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be divisible by the number of "
                         f"processes ({world})")
    per_epoch = len(dataset) // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size ({cfg.batch_size}) must not exceed the data set "
                         f"({len(dataset)} items)")
    return per_epoch


def train(cfg: TrainConfig, dataset, n_classes: int, out_dir: str | Path, *,
          validate: Validator | None = None, max_steps: int | None = None,
          device: str | torch.device | None = None, progress: bool = True,
          teacher: dict | None = None, tensorboard: bool = False) -> dict:
    """Train on ``dataset`` (items: (3, H, W) float image in [−1, 1], int label in
    [0, n_classes)).

    Resumes from ``out_dir/checkpoint.pt`` when it exists (a checkpoint of another config is
    refused); stops after ``max_steps`` total steps if given (to simulate an interruption).
    Writes ``log.jsonl`` (one line per step: step, loss, lr, images/s; one per validation:
    step, validation), mirrored to ``out_dir/tensorboard`` if ``tensorboard``
    (:mod:`arclab.train.tblog`), ``checkpoint.pt`` every ``checkpoint_every`` steps and at the
    end, and a finished run's ``model.pt`` (:func:`arclab.models.export.save_backbone`); the log
    synced to disk before each checkpoint and cut back to the checkpoint's step on resume:
    after a kill at any moment and a resume, the log and weights are the uninterrupted run's
    (``images_per_s`` aside). ``validate(model) -> {name: accuracy}`` runs every
    ``validate_every`` steps and at the end.

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

    Raises:
        ValueError: a bad class count or batch size (:func:`check_inputs`), ``max_steps`` not
            positive or below the checkpoint's step (a run never moves backwards), an ``amp``
            the device cannot run, an unreadable checkpoint or one of another config; all
            before anything in ``out_dir`` is written.
    """
    out_dir = Path(out_dir)
    rank, world = rank_and_world()
    check_max_steps(max_steps)
    per_epoch = check_inputs(cfg, dataset, n_classes, world)
    dev = torch.device(device) if isinstance(device, torch.device) else arclab.get_device(device)
    dtype = check_precision(cfg, dev)
    parts = build(cfg, n_classes, dev, dtype, world, teacher)
    total = per_epoch * cfg.epochs
    ckpt, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    record, start = resume(ckpt, cfg, parts, max_steps)
    stop = total if max_steps is None else min(total, max_steps)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        keep_log(log_path, start, [h["step"] for h in record.history])
    parts.net.train()
    bar = tqdm(range(start, stop), desc="training", unit="step", leave=False,
               disable=not progress or rank != 0, initial=start, total=stop)
    with open_log(log_path, rank, start, tensorboard) as log, closing(step_batches(
            dataset, cfg, start, stop, rank=rank, world_size=world, device=dev)) as batches:
        for step in bar:
            t0 = time.perf_counter()
            x, y = next(batches)
            lr = learning_rate(cfg, step, total)
            loss, theta, feat = optimisation_step(parts, cfg, x, y, step, lr)
            record.add(loss, theta, feat)
            rate = cfg.batch_size / (time.perf_counter() - t0)
            if rank == 0:
                log_step(log, bar, step, lr, rate, loss, theta, feat)
            if cfg.validate_every and (step + 1) % cfg.validate_every == 0:
                run_validation(validate, parts.model, record, step + 1, log, rank)
            if (step + 1) % cfg.checkpoint_every == 0:
                flush_log(log)
                save_checkpoint(ckpt, cfg, parts, record, step + 1, rank)
        if stop == total:
            run_validation(validate, parts.model, record, stop, log, rank)
        flush_log(log)
        save_checkpoint(ckpt, cfg, parts, record, stop, rank)
    if rank == 0 and stop == total:  # arcface_torch's bare backbone, for its tools and export
        save_backbone(parts.model, out_dir / "model.pt")
    bar.close()
    return {"losses": record.losses, "target_angles": record.angles,
            "distill_losses": record.distilled, "step": stop, "total_steps": total,
            "model": parts.model, "head": parts.head, "validation": record.history}
