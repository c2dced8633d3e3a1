"""What a training run holds between steps: the parts :func:`build` makes (backbone, head, loss,
optimizers, loss scaler, the DDP wrapping, the distillation teacher), the :class:`Record` of
what it has logged, and its checkpoint: read by :func:`resume` (``weights_only``, a checkpoint
of another config refused), written atomically by :func:`save_checkpoint` after the log is
flushed to disk, and the log cut back to the checkpoint's step on resume (:func:`keep_log`), so
a run killed at any moment and resumed logs exactly what the uninterrupted run logs.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from arclab.atomic import atomic_path
from arclab.losses.distill import teacher_head_weight
from arclab.losses.heads import make_head
from arclab.losses.margins import MarginLoss
from arclab.losses.triplet import TripletLoss
from arclab.models import get_model
from arclab.parallel import RowSGD, ShardedMarginFC, fc_state, load_fc_state
from arclab.train.config import TrainConfig, weights_key

__all__ = ["CHECKPOINT_KEYS", "Parts", "Record", "build", "check_max_steps", "check_resume",
           "check_teacher", "flush_log", "keep_log", "rank_and_world", "read_checkpoint",
           "resume", "same_run", "save_checkpoint"]

CHECKPOINT_KEYS = frozenset({"model", "head", "optimizer", "scaler", "step", "losses",
                             "validation", "config"})
"""The keys every checkpoint :func:`save_checkpoint` writes holds."""


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


@dataclass
class Parts:
    """The modules and optimizers of a run, as :func:`build` makes them.

    ``net`` is the backbone then the head (the head left out with ``sharded``: the sharded
    classifier is its own loss), in DDP when ``world > 1``; ``params`` its trainable
    parameters; ``optimizers`` SGD over ``params``, then, with ``sharded``, the classifier's
    RowSGD; ``distill`` {"model": the frozen teacher, "weight"} or None.
    """

    model: nn.Module
    head: nn.Module
    loss_fn: nn.Module
    net: nn.Module
    params: list[nn.Parameter]
    optimizers: list[torch.optim.Optimizer]
    scaler: torch.amp.GradScaler
    distill: dict | None
    sharded: bool
    world: int
    device: torch.device


@dataclass
class Record:
    """What a run has logged so far, kept in its checkpoint: every step's loss, mean target
    angle θ_y (cosine heads) and distillation term (with a teacher), and the validations."""

    losses: list[float] = field(default_factory=list)
    angles: list[float] = field(default_factory=list)
    distilled: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    def add(self, loss: float, theta: float | None, feat: float | None) -> None:
        """Append one step's values (``theta`` and ``feat`` only when not None)."""
        if feat is not None:
            self.distilled.append(feat)
        if theta is not None:
            self.angles.append(theta)
        self.losses.append(loss)


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def same_run(stored: dict | None, cfg: TrainConfig) -> bool:
    """Whether a checkpoint's config trains the same weights as ``cfg``: equal in every key
    but ``validate_every`` (validation reads the model, it never changes it)."""
    return stored is not None and weights_key(stored) == weights_key(cfg.to_dict())


def check_teacher(teacher: dict | None, cfg: TrainConfig, sharded: bool, head: nn.Module,
                  dev: torch.device) -> dict | None:
    """Validate ``train``'s ``teacher`` argument; copy (and freeze) its head when asked;
    return {"model": the frozen teacher on ``dev`` in eval mode, "weight"} or None.

    Raises:
        ValueError: ``teacher`` not {"model": nn.Module, ...} with known keys; a sharded or
            non-cosine student; ``teacher['weight']`` not a finite number >= 0; teacher
            features of another size than the student's; a ``head`` that does not fit (as
            :func:`~arclab.losses.distill.teacher_head_weight`).
    """
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


def build(cfg: TrainConfig, n_classes: int, dev: torch.device, dtype: torch.dtype | None,
          world: int, teacher: dict | None) -> Parts:
    """A fresh run's parts on ``dev``: the backbone initialised from ``cfg.seed``, the head
    and loss of ``cfg.margin`` (or the sharded classifier), the checked teacher, the DDP
    wrapping when ``world > 1``, the optimizers and the loss scaler (enabled for fp16)."""
    sharded = cfg.fc == "sharded"
    torch.manual_seed(cfg.seed)
    model = get_model(cfg.backbone, embedding_size=cfg.embedding_size,
                      input_size=cfg.input_size).to(dev)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
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
    distill = check_teacher(teacher, cfg, sharded, head, dev)
    net: nn.Module = _Net(model, nn.Identity() if sharded else head, dtype)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)]
    if sharded:
        optimizers.append(RowSGD([head.weight], lr=cfg.lr, momentum=cfg.momentum,
                                 weight_decay=cfg.weight_decay))
    scaler = torch.amp.GradScaler("cuda", enabled=dtype is torch.float16)
    return Parts(model=model, head=head, loss_fn=loss_fn, net=net, params=params,
                 optimizers=optimizers, scaler=scaler, distill=distill, sharded=sharded,
                 world=world, device=dev)


def read_checkpoint(ckpt: Path, map_location: str | torch.device = "cpu", *,
                    mmap: bool = False, keys: frozenset[str] = CHECKPOINT_KEYS) -> dict:
    """Read a checkpoint as untrusted (``torch.load(weights_only=True)``); ``mmap`` leaves the
    tensors on disk (a cheap look at the config and step).

    Raises:
        ValueError: a truncated, damaged or non-torch file, a pickle that asks for anything but
            tensors and plain data, or one without ``keys`` (and, when they include "step", a
            step that is not an integer >= 0); the message names the file.
    """
    try:
        state = torch.load(ckpt, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # zip, pickle and torch errors alike: the file is unusable
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"{ckpt} is not a checkpoint torch.load(weights_only=True) can read "
                         f"({type(err).__name__}: {first}); move it away to start the run "
                         "over") from None
    missing = sorted(keys - set(state)) if isinstance(state, dict) else sorted(keys)
    step = state.get("step", 0) if isinstance(state, dict) and "step" in keys else 0
    if missing or isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{ckpt} was not written by arclab.train (missing keys {missing} or "
                         f"a bad step {step!r})")
    return state


def check_max_steps(max_steps: int | None) -> None:
    """Refuse a ``max_steps`` that is not None or a positive integer.

    Raises:
        ValueError: ``max_steps`` is a bool, not an int, or < 1.
    """
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                  or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")


def _check_state(state: dict, ckpt: Path, cfg: TrainConfig, max_steps: int | None) -> int:
    if not same_run(state.get("config"), cfg):
        raise ValueError(f"{ckpt} was written with another config; use a new out_dir")
    if max_steps is not None and max_steps < state["step"]:
        raise ValueError(f"max_steps ({max_steps}) is below step {state['step']}, which the run "
                         f"in {ckpt.parent} has reached: a run never moves backwards (use a "
                         "new out_dir to train fewer steps)")
    return state["step"]


def check_resume(ckpt: Path, cfg: TrainConfig, max_steps: int | None = None) -> int:
    """The step the run of ``ckpt`` resumes from (0 without the file), checked as
    :func:`resume` checks it but without loading the tensors: nothing is written.

    Raises:
        ValueError: a bad ``max_steps`` (not positive, or below the checkpoint's step), an
            unreadable checkpoint, or one written with another config.
    """
    check_max_steps(max_steps)
    if not ckpt.is_file():
        return 0
    return _check_state(read_checkpoint(ckpt, mmap=True), ckpt, cfg, max_steps)


def resume(ckpt: Path, cfg: TrainConfig, parts: Parts,
           max_steps: int | None = None) -> tuple[Record, int]:
    """Load ``ckpt`` (when it exists) into ``parts``; returns its record and step, or an empty
    record and step 0.

    Raises:
        ValueError: as :func:`check_resume`.
    """
    check_max_steps(max_steps)
    if not ckpt.is_file():
        return Record(), 0
    state = read_checkpoint(ckpt, parts.device)
    step = _check_state(state, ckpt, cfg, max_steps)
    parts.model.load_state_dict(state["model"])
    if parts.sharded:
        load_fc_state(parts.head, parts.optimizers[1],
                      {"weight": state["head"]["weight"], **state["fc"]})
    else:
        parts.head.load_state_dict(state["head"])
    parts.optimizers[0].load_state_dict(state["optimizer"])
    parts.scaler.load_state_dict(state["scaler"])
    record = Record(losses=list(state["losses"]), history=list(state["validation"]),
                    angles=list(state.get("target_angles", [])),
                    distilled=list(state.get("distill_losses", [])))
    return record, step


def save_checkpoint(ckpt: Path, cfg: TrainConfig, parts: Parts, record: Record, step: int,
                    rank: int) -> None:
    """Write ``ckpt`` atomically on rank 0: the weights, optimizer and scaler states, the
    record and the config. With a sharded classifier every rank must call it (its rows are
    gathered to rank 0, which stores the whole weight)."""
    fc = fc_state(parts.head, parts.optimizers[1]) if parts.sharded else None
    if rank == 0:
        extra = {} if fc is None else {"fc": {"momentum": fc["momentum"], "step": fc["step"]}}
        head_state = {"weight": fc["weight"]} if parts.sharded else parts.head.state_dict()
        with atomic_path(ckpt) as tmp:
            torch.save({"model": parts.model.state_dict(), "head": head_state, **extra,
                        "optimizer": parts.optimizers[0].state_dict(),
                        "scaler": parts.scaler.state_dict(),
                        "step": step, "losses": record.losses, "validation": record.history,
                        "target_angles": record.angles, "distill_losses": record.distilled,
                        "config": cfg.to_dict()}, tmp)


def flush_log(log) -> None:
    """Flush an open log file to disk (``fsync``), so a checkpoint written next never holds
    more than the log; None (ranks that do not log) is skipped."""
    if log is not None:
        log.flush()
        os.fsync(log.fileno())


def _log_rows(path: Path) -> list[tuple[bytes, dict]]:
    """(line, parsed) per line of a JSON-lines log; a torn last line is dropped with a
    warning, any other line that is not a JSON object with an integer step raises."""
    lines = path.read_bytes().split(b"\n")
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or isinstance(row.get("step"), bool) \
                or not isinstance(row.get("step"), int):
            if i == len(lines) - 1:  # no newline after it: a write cut short by a kill
                warnings.warn(f"{path}: dropped a torn last line ({len(line)} bytes) of a run "
                              "that was killed while writing it", stacklevel=3)
                continue
            raise ValueError(f"{path} line {i + 1} is not a JSON object with a step: the log "
                             "is damaged; repair or remove that line to resume")
        rows.append((line, row))
    return rows


def keep_log(path: Path, upto: int, validated: Iterable[int] = ()) -> None:
    """Cut ``path`` back to what the run had logged when its checkpoint at step ``upto`` was
    written: the step lines before ``upto`` and the validation lines of the ``validated`` steps
    (the checkpoint's record), in their order. Lines of steps a resumed run redoes and a torn
    last line (with a warning) are dropped; a log that lacks steps the checkpoint has is kept
    with a warning.

    Raises:
        ValueError: a line other than the last is not a JSON object with a step.
    """
    if not path.is_file():
        return
    rows = _log_rows(path) if upto > 0 else []
    validated = set(validated)
    keep = [(line, row) for line, row in rows
            if (row["step"] <= upto and row["step"] in validated if "validation" in row
                else row["step"] < upto)]
    steps = [row["step"] for _, row in keep if "validation" not in row]
    if steps != list(range(upto)):
        warnings.warn(f"{path} holds {len(steps)} step lines, the checkpoint {upto} steps: the "
                      "log of a run interrupted before its lines reached the disk is "
                      "incomplete", stacklevel=2)
    text = b"".join(line + b"\n" for line, _ in keep)
    if text != path.read_bytes():
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(text)
