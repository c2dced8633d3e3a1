"""Checkpoints of a sharded classifier that resume on any number of ranks.

Each rank of a :class:`~arclab.parallel.ShardedMarginFC` holds the rows of its classes and,
in its optimizer, their momentum. :func:`fc_state` sends every shard to rank 0, which gets the
whole (C·K, D) weight and momentum: exactly the weight of the dense head
(:class:`~arclab.losses.heads.NormLinear` or :class:`~arclab.losses.heads.SubCenterNormLinear`)
with the same classes, so a checkpoint written by W ranks loads into the dense head, or into a
sharded head on any other number of ranks (:func:`load_fc_state` keeps the rows of this rank's
classes).

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor

from arclab.parallel.collectives import gather_to_rank0
from arclab.parallel.layout import class_range
from arclab.parallel.sharded import ShardedMarginFC

__all__ = ["fc_state", "load_fc_state"]


def _rows_per_rank(fc: ShardedMarginFC) -> list[int]:
    return [(stop - start) * fc.subcenters for start, stop in
            (class_range(fc.num_classes, fc.world_size, r) for r in range(fc.world_size))]


def fc_state(fc: ShardedMarginFC, optimizer: torch.optim.Optimizer | None = None
             ) -> dict | None:
    """The whole classifier on rank 0, ``None`` on the other ranks. Every rank must call it
    (it sends the shards to rank 0).

    Returns (rank 0): {"weight": (C·K, D) rows ``c·K + k``, "momentum": (C·K, D) the
    optimizer's ``momentum_buffer`` of the weight, or None before the first step or without
    momentum, "step": the Partial FC sampler's counter}.
    """
    sizes = _rows_per_rank(fc)
    weight = gather_to_rank0(fc.weight.detach(), sizes, fc.process_group)
    buffer = None
    if optimizer is not None:
        buffer = optimizer.state.get(fc.weight, {}).get("momentum_buffer")
    # every rank has a buffer or none does: they all take the same optimizer steps
    momentum = None if buffer is None else gather_to_rank0(buffer, sizes, fc.process_group)
    if fc.rank != 0:
        return None
    return {"weight": weight, "momentum": momentum, "step": fc.step}


def _check(name: str, value: object, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(value, Tensor) or tuple(value.shape) != shape \
            or not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of shape {shape}, got "
                         f"{getattr(value, 'dtype', type(value).__name__)} of shape "
                         f"{tuple(getattr(value, 'shape', ()))}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return value


@torch.no_grad()
def load_fc_state(fc: ShardedMarginFC, optimizer: torch.optim.Optimizer | None,
                  state: dict) -> None:
    """Load a :func:`fc_state` dict (written by any number of ranks) into this rank's shard:
    the weight rows and momentum rows of classes ``fc.start`` .. ``fc.stop − 1``, and the
    sampler's step. Every rank calls it with the same ``state`` (no communication).

    Raises:
        ValueError: a weight or momentum of the wrong shape (another class count, sub-center
            count or embedding size), dtype, or with NaN/inf; a missing key.
    """
    if not isinstance(state, dict) or not {"weight", "momentum", "step"} <= set(state):
        raise ValueError("state must be a dict with keys 'weight', 'momentum' and 'step' "
                         "(from fc_state)")
    k, d = fc.subcenters, fc.embedding_size
    shape = (fc.num_classes * k, d)
    weight = _check("state['weight']", state["weight"], shape)
    rows = slice(fc.start * k, fc.stop * k)
    fc.weight.copy_(weight[rows])
    if state["momentum"] is not None:
        if optimizer is None:
            raise ValueError("state has momentum but no optimizer was given to load it into")
        momentum = _check("state['momentum']", state["momentum"], shape)
        optimizer.state[fc.weight]["momentum_buffer"] = momentum[rows].to(
            fc.weight.device, fc.weight.dtype).clone()
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"state['step'] must be an integer >= 0, got {step!r}")
    fc.step = step
