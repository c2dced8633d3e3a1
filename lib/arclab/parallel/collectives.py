"""Differentiable collectives for a class-sharded classifier, on any torch.distributed backend.

Two rules give exact gradients when every rank computes the *same* scalar loss L from
collective results (the sharded cross-entropy does):

- an all-gather of per-rank rows (:func:`gather_rows`) is consumed differently on each rank
  (each multiplies it by its own weight shard), so ∂L/∂x is the *sum* of the ranks' partial
  gradients: the backward pass all-reduces (SUM) the gathered gradient and keeps the rows
  this rank contributed;
- an all-reduce (SUM) whose result feeds a computation replicated on every rank
  (:func:`all_reduce_sum`) gets the same upstream gradient ∂L/∂S on every rank, and
  ∂S/∂s_r = 1 for the local summand s_r, so its backward pass is the identity.

Without an initialised process group (or with a group of one) every function is the identity.
Tensors stay on their device; the process group's backend (gloo for CPU, nccl for CUDA)
decides where the collectives run.

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["all_gather_sizes", "all_reduce_max", "all_reduce_sum", "gather_rows",
           "gather_to_rank0", "world"]


def world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """(rank, world size) in ``group``; (0, 1) when torch.distributed is not initialised.

    Raises:
        ValueError: a ``group`` is given but no process group is initialised.

    Example:
        >>> world()
        (0, 1)
    """
    if not (dist.is_available() and dist.is_initialized()):
        if group is not None:
            raise ValueError("process_group was given but torch.distributed is not initialised")
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def all_gather_sizes(values: list[int], device: torch.device,
                     group: dist.ProcessGroup | None = None) -> list[list[int]]:
    """Every rank's list of integers (same length on every rank), in rank order.

    Used to share batch sizes (and an "input is valid" flag) before a padded all-gather.
    """
    if world(group)[1] == 1:
        return [list(values)]
    mine = torch.tensor(values, dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, mine, group=group)
    return [t.tolist() for t in out]


def _padded_all_gather(x: Tensor, sizes: list[int], group: dist.ProcessGroup | None) -> Tensor:
    """Concatenate every rank's (n_r, ...) rows: pad to max n_r, all_gather, trim."""
    longest = max(sizes)
    if longest == 0:
        return x.new_zeros((0, *x.shape[1:]))
    padded = x.new_zeros((longest, *x.shape[1:]))
    padded[: x.shape[0]] = x
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(out, sizes)])


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, sizes, rank, group):  # noqa: ANN001, ANN205
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        return _padded_all_gather(x, sizes, group)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        total = grad.contiguous().clone()
        if total.numel():
            dist.all_reduce(total, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return total[start: start + ctx.sizes[ctx.rank]], None, None, None


def gather_rows(x: Tensor, sizes: list[int], group: dist.ProcessGroup | None = None) -> Tensor:
    """All-gather rows with differing counts per rank, differentiably.

    Shapes: x (n_r, ...) on rank r with n_r = ``sizes[r]`` -> (Σ n_r, ...), rank 0's rows first.
    Backward: the gradient of the gathered rows is summed over ranks (all-reduce SUM) and this
    rank's slice is returned, so ∂L/∂x collects what every rank's shard contributed.

    Example:
        >>> gather_rows(torch.ones(2, 3), [2]).shape
        torch.Size([2, 3])
    """
    rank, size = world(group)
    if size == 1:
        return x
    return _GatherRows.apply(x.contiguous(), list(sizes), rank, group)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):  # noqa: ANN001, ANN205
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        return grad, None  # replicated consumer: every rank already holds ∂L/∂S


def all_reduce_sum(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Σ over ranks of x, for a result that every rank uses in the same replicated computation.

    Shapes: any -> the same. Backward: identity (see the module docstring); this is *not* the
    rule for a sum whose consumers differ between ranks.

    Example:
        >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    if world(group)[1] == 1:
        return x
    return _AllReduceSum.apply(x, group)


@torch.no_grad()
def all_reduce_max(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Elementwise max over ranks, without gradient (a constant shift in the log-sum-exp).

    Example:
        >>> all_reduce_max(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    out = x.detach().contiguous().clone()
    if world(group)[1] > 1:
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    return out


@torch.no_grad()
def gather_to_rank0(x: Tensor, sizes: list[int],
                    group: dist.ProcessGroup | None = None) -> Tensor | None:
    """Rank 0 receives every rank's rows in rank order (point-to-point, so no rank but rank 0
    ever holds the whole tensor); the other ranks get ``None``. For checkpoints of sharded
    weights.

    Shapes: x (n_r, ...) on rank r with n_r = ``sizes[r]`` (every rank passes the same
    ``sizes``) -> (Σ n_r, ...) on rank 0.

    Example:
        >>> gather_to_rank0(torch.ones(2, 3), [2]).shape
        torch.Size([2, 3])
    """
    rank, size = world(group)
    if x.shape[0] != sizes[rank]:
        raise ValueError(f"x must have sizes[{rank}] = {sizes[rank]} rows, got {x.shape[0]}")
    if size == 1:
        return x.detach().clone()
    if rank != 0:
        dist.send(x.detach().contiguous(), dst=dist.get_global_rank(group, 0)
                  if group is not None else 0, group=group)
        return None
    parts = [x.detach().clone()]
    for src in range(1, size):
        part = x.new_empty((sizes[src], *x.shape[1:]))
        dist.recv(part, src=dist.get_global_rank(group, src) if group is not None else src,
                  group=group)
        parts.append(part)
    return torch.cat(parts)
