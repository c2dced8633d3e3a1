"""SGD that updates only the rows a row-sparse gradient names (for Partial FC).

Partial FC computes logits over a sample of the classes, so the other rows of W take no part
in the step. ``torch.optim.SGD`` would still move them: weight decay adds λ·W to every row's
gradient and momentum keeps pushing every row with its decayed buffer. :class:`RowSGD` reads a
sparse gradient (what ``F.embedding(..., sparse=True)`` and so
:class:`arclab.parallel.ShardedMarginFC` with ``sample_rate < 1`` produce) as "these rows
took part": it applies exactly the SGD update to those rows and their momentum rows and
leaves every other row and its momentum bit-identical. For dense gradients it is plain SGD.

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

__all__ = ["RowSGD"]


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


class RowSGD(torch.optim.Optimizer):
    """SGD with momentum, weight decay and Nesterov; row-sparse gradients update their rows only.

    Per updated row (the same arithmetic as ``torch.optim.SGD`` with dampening 0):
    d = g + λ·w; b ← μ·b + d (b starts at 0, so the first step gives b = d); w ← w − lr·b
    (Nesterov: w ← w − lr·(d + μ·b)). The momentum buffer is kept in ``state[p]
    ["momentum_buffer"]``, full size, as in ``torch.optim.SGD``.

    Shapes: a sparse gradient must be sparse in the first dimension only (rows), as from
    ``F.embedding(sparse=True)``; duplicate rows are summed.

    Raises:
        ValueError: lr ≤ 0, negative momentum or weight decay, Nesterov without momentum.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(3, 2))
        >>> opt = RowSGD([w], lr=0.5, momentum=0.9, weight_decay=0.1)
        >>> torch.nn.functional.embedding(torch.tensor([1]), w, sparse=True).sum().backward()
        >>> opt.step()
        >>> w.detach()[:, 0], opt.state[w]["momentum_buffer"][:, 0]  # row 1: b = 1.1, w = 0.45
        (tensor([1.0000, 0.4500, 1.0000]), tensor([0.0000, 1.1000, 0.0000]))

    Taught in: notebooks/07_sharded_fc.ipynb
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float, *,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        momentum = _non_negative("momentum", momentum)
        weight_decay = _non_negative("weight_decay", weight_decay)
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        super().__init__(params, {"lr": float(lr), "momentum": momentum,
                                  "weight_decay": weight_decay, "nesterov": bool(nesterov)})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    self._sparse_step(p, group)
                else:
                    self._dense_step(p, group)
        return loss

    def _dense_step(self, p: Tensor, group: dict) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        d = p.grad
        if wd:
            d = d.add(p, alpha=wd)
        if mu:
            buf = self.state[p].get("momentum_buffer")
            if buf is None:
                buf = self.state[p]["momentum_buffer"] = torch.clone(d).detach()
            else:
                buf.mul_(mu).add_(d)
            d = d.add(buf, alpha=mu) if group["nesterov"] else buf
        p.add_(d, alpha=-lr)

    def _sparse_step(self, p: Tensor, group: dict) -> None:
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        grad = p.grad
        if grad.sparse_dim() != 1:
            raise ValueError(f"a sparse gradient must be sparse in its rows only, got "
                             f"sparse_dim {grad.sparse_dim()} for a {tuple(p.shape)} parameter")
        rows, d = grad._indices()[0], grad._values()
        # autograd drops the "coalesced" mark when it stores a gradient; strictly increasing
        # rows are coalesced already, and sorting them again costs as much as the update
        if not (grad.is_coalesced() or bool((rows[1:] > rows[:-1]).all())):
            grad = grad.coalesce()
            rows, d = grad.indices()[0], grad.values()
        w = p.index_select(0, rows)
        if wd:
            d = d.add(w, alpha=wd)
        if mu:
            buf = self.state[p].get("momentum_buffer")
            if buf is None:
                buf = self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            b = buf.index_select(0, rows).mul_(mu).add_(d)
            buf.index_copy_(0, rows, b)
            d = d.add(b, alpha=mu) if group["nesterov"] else b
        p.index_copy_(0, rows, w.add_(d, alpha=-lr))
