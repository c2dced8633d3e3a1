"""Sharded margin classifier (model-parallel FC) and Partial FC, exact against the dense loss.

With C classes the classifier weight W (C·K, D) outgrows one device long before the backbone
does (512 × 1M × 4 B = 2 GB in fp32). Each of the W ranks keeps a contiguous block of classes
J_r = [start_r, stop_r) (:func:`class_range`), all K sub-centers of a class on the same rank.

Forward, with N = Σ_r n_r the global batch:

1. all-gather the normalised embeddings x (n_r, D) -> (N, D) and the labels (n_r,) -> (N,);
   batch sizes may differ between ranks (sizes are gathered first, rows padded and trimmed);
2. local cosines x·W_j/‖W_j‖ (N, C_r·K) -> max over the K sub-centers -> (N, C_r), as in
   :class:`arclab.losses.heads.SubCenterNormLinear` but without a normalised copy of W; the margin
   is applied by :func:`arclab.losses.margins.margin_logits` on the rank that owns the label (local
   label y − start_r there, −1 elsewhere), giving local logits z (N, C_r);
3. the cross-entropy over all C classes comes from three (N,) vectors:

   - M_i = max_r max_{j∈J_r} z_ij            (all-reduce MAX; no gradient needed),
   - S_i = Σ_r Σ_{j∈J_r} exp(z_ij − M_i)     (all-reduce SUM),
   - T_i = z_{i,y_i}, added by its owner, 0 from the others (all-reduce SUM),

   and CE_i = log S_i + M_i − T_i. This is exact for any shift M_i, because
   log Σ_j exp z_ij = M_i + log Σ_j exp(z_ij − M_i); the global max keeps every exponent ≤ 0
   (no overflow) and one term equal to 1 (no underflow to log 0). The loss is the mean of CE_i
   over the global batch, the same number on every rank.

Backward: ∂CE_i/∂z_ij = exp(z_ij − M_i)/S_i − [j = y_i] needs only the all-reduced S_i, so the
softmax needs no further communication; the embeddings' gradient is summed over the ranks'
shards (:func:`arclab.parallel.collectives.gather_rows`). Each rank's W gets ∂L/∂W_r, the dense
gradient's rows; each rank's embeddings get ∂L/∂x_r of the global mean loss L.

Partial FC (``sample_rate`` r < 1, training mode): each rank keeps every class of J_r that is
a label in the global batch (the positives) plus random other classes of J_r, about
max(positives, round(r·C_r)) in all, drawn from a ``torch.Generator`` seeded by
(seed, step, rank); the logits above are over the kept classes only. The kept rows are read
as ``F.embedding(..., sparse=True)`` reads them, so W's gradient is a *row-sparse* tensor
naming the kept rows: an optimizer that updates only the rows named
(:class:`arclab.parallel.RowSGD`) leaves the other rows *and* their momentum untouched, as if
they were not parameters this step. (Plain ``torch.optim.SGD`` would decay their momentum and
apply weight decay to them.)

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from arclab.losses.margins import PRESETS, Margin, MarginLoss, margin_logits, target_logit
from arclab.parallel.collectives import (
    all_gather_sizes,
    all_reduce_max,
    all_reduce_sum,
    gather_rows,
    world,
)
from arclab.parallel.layout import (
    check_sample_rate,
    class_range,
    init_weight,
    positive_int,
    seed_of,
)

__all__ = ["ShardedMarginFC"]


class _RowCosine(torch.autograd.Function):
    """cos_ij = x_i·W_j / ‖W_j‖ for unit rows x_i, without a normalised copy of W.

    F.normalize(W) would write a (C·K, D) copy and its backward several more full passes;
    here the backward is one matrix product plus one fused pass over W:
    ∂/∂W_j = Σ_i g_ij x_i / ‖W_j‖ − (Σ_i g_ij cos_ij / ‖W_j‖) · W_j / ‖W_j‖.
    """

    @staticmethod
    def forward(ctx, x, weight):  # noqa: ANN001, ANN205
        norm = weight.norm(dim=1)
        inv = 1.0 / norm.clamp_min(1e-12)  # F.normalize's eps
        cosine = (x @ weight.T).mul_(inv)
        ctx.save_for_backward(x, weight, inv, cosine, norm > 1e-12)
        return cosine

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, weight, inv, cosine, unclamped = ctx.saved_tensors
        scaled = grad * inv  # (N, C·K)
        grad_x = scaled @ weight if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            coef = (scaled * cosine).sum(dim=0).mul_(inv).mul_(unclamped)  # (C·K,)
            grad_w = (scaled.T @ x).addcmul_(weight, coef[:, None], value=-1.0)
        return grad_x, grad_w


class _GatherRows(torch.autograd.Function):
    """W[rows] for sorted, unique rows; the gradient is a coalesced row-sparse tensor (what
    ``F.embedding(sparse=True)`` gives, without its unsorted indices to sort again)."""

    @staticmethod
    def forward(ctx, weight, rows):  # noqa: ANN001, ANN205
        ctx.save_for_backward(rows)
        ctx.shape = weight.shape
        return weight.index_select(0, rows)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (rows,) = ctx.saved_tensors
        return torch.sparse_coo_tensor(rows[None], grad, ctx.shape, check_invariants=False,
                                       is_coalesced=True), None


class ShardedMarginFC(nn.Module):
    """Margin loss over a class-sharded cosine classifier, with optional Partial FC.

    ``forward(embeddings, labels)`` takes this rank's (n_r, D) embeddings and (n_r,) int64
    labels in [0, C) (n_r may differ between ranks) and returns the scalar loss: the mean
    cross-entropy of the margin logits over the *global* batch, the same on every rank.
    Gradients equal those of the dense ``MarginLoss(...)(head(x), y)`` with a
    :class:`~arclab.losses.heads.NormLinear` / :class:`~arclab.losses.heads.SubCenterNormLinear`
    whose weight is the ranks' weights concatenated (see the module docstring for the maths).
    Every rank of the group must call forward and then backward on the loss together (both
    contain collectives). Embeddings are cast to the weight's dtype; labels are moved to its
    device.

    Under DDP, which *averages* the backbone's gradients over the W ranks, the backbone gets
    (1/W)·∂L/∂θ of this global-mean loss. To recover the dense gradient multiply the
    embeddings' gradient by W (``emb.register_hook(lambda g: g * W)``, what arcface_torch does
    inside its all-gather), not the loss: that would scale this layer's gradient too.

    Args:
        embedding_size: D. num_classes: C (all ranks together, ≥ world size).
        margin: a name of :data:`arclab.losses.margins.PRESETS` (not ``"softmax"``) or a
            :class:`~arclab.losses.margins.Margin`. s, gradient, overflow: as in
            :func:`arclab.losses.margins.margin_logits`.
        sample_rate: Partial FC rate r in (0, 1]; r < 1 samples classes in training mode only
            and makes W's gradient row-sparse (use :class:`arclab.parallel.RowSGD`).
        subcenters: K sub-centers per class (weight rows ``c·K + k``).
        process_group: the group the classes are sharded over; ``None``: the default group, or
            a plain single-process layer when torch.distributed is not initialised.
        seed: seeds the weight (:func:`init_weight`) and the class samples.

    Attributes:
        weight: (C_r·K, D) this rank's rows, classes ``start`` .. ``stop`` − 1.
        step: training forwards so far (the sampler's counter; saved in the state dict).
        sample_rate: may be changed between steps (e.g. to compare full and Partial FC on one
            weight, as ``benchmarks/sharded_fc.py`` does).
        kept_classes: after a sampled forward, the (n_kept,) global class indices it used;
            ``None`` after a forward over all of this rank's classes.
        target_cosine: after a forward, the (N,) cosines cos θ_y between each sample of the
            global batch and its own class (its nearest sub-center), no gradient; for logging.

    Raises:
        ValueError: num_classes < world size, a bad margin/option/sample_rate/subcenters; in
            forward, wrong shapes or dtypes, NaN/inf embeddings, labels outside [0, C) on any
            rank (every rank raises, so none waits in a collective).

    Example:
        >>> fc = ShardedMarginFC(4, 10, margin="cosface", s=16.0)
        >>> loss = fc(torch.randn(3, 4), torch.tensor([0, 5, 9]))
        >>> loss.backward(); tuple(fc.weight.grad.shape), loss.ndim
        ((10, 4), 0)

    Taught in: notebooks/07_sharded_fc.ipynb
    """

    def __init__(self, embedding_size: int, num_classes: int, *, margin: str | Margin = "arcface",
                 s: float = 64.0, gradient: str = "exact", overflow: str = "monotonic",
                 sample_rate: float = 1.0, subcenters: int = 1,
                 process_group: dist.ProcessGroup | None = None, seed: int = 0) -> None:
        super().__init__()
        self.embedding_size = positive_int("embedding_size", embedding_size)
        self.num_classes = positive_int("num_classes", num_classes)
        self.subcenters = positive_int("subcenters", subcenters)
        self.sample_rate = check_sample_rate(sample_rate)
        if isinstance(margin, str):
            if margin not in PRESETS:
                raise ValueError(f"margin must be one of {sorted(PRESETS)} or a Margin, "
                                 f"got {margin!r}")
            margin = PRESETS[margin]
        if not isinstance(margin, Margin) or not margin.normalised:
            raise ValueError(f"margin must be a cosine margin (a preset other than 'softmax' "
                             f"or a Margin with normalised=True), got {margin!r}")
        MarginLoss(m1=margin.m1, m2=margin.m2, m3=margin.m3, s=s)  # checks m1, m2, m3, s
        if gradient not in ("exact", "straight_through"):
            raise ValueError(f"gradient must be 'exact' or 'straight_through', got {gradient!r}")
        target_logit(torch.zeros(0), overflow=overflow)  # checks overflow
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.margin, self.s, self.gradient, self.overflow = margin, float(s), gradient, overflow
        self.process_group, self.seed = process_group, seed
        self.rank, self.world_size = world(process_group)
        self.start, self.stop = class_range(num_classes, self.world_size, self.rank)
        self.weight = nn.Parameter(init_weight(self.start, self.stop, embedding_size,
                                               subcenters=subcenters, seed=seed))
        self.step = 0
        self.kept_classes: Tensor | None = None
        self.target_cosine: Tensor | None = None

    def get_extra_state(self) -> dict:
        return {"step": self.step}

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])

    def _input_error(self, embeddings: Tensor, labels: Tensor) -> str | None:
        d, c = self.embedding_size, self.num_classes
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2 \
                or embeddings.shape[1] != d or not embeddings.is_floating_point():
            return (f"embeddings must be a floating-point (n, {d}) tensor, got "
                    f"{getattr(embeddings, 'dtype', type(embeddings).__name__)} of shape "
                    f"{tuple(getattr(embeddings, 'shape', ()))}")
        if embeddings.device != self.weight.device:
            return (f"embeddings must be on the weight's device ({self.weight.device}), got "
                    f"{embeddings.device}")
        n = embeddings.shape[0]
        if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != (n,):
            return (f"labels must be an int64 tensor of shape ({n},), got "
                    f"{getattr(labels, 'dtype', type(labels).__name__)} of shape "
                    f"{tuple(getattr(labels, 'shape', ()))}")
        if n and not bool(torch.isfinite(embeddings).all()):
            return "embeddings must be finite, got NaN or inf"
        if n:
            lo, hi = torch.aminmax(labels)
            if lo < 0 or hi >= c:
                return f"labels must be in [0, {c}), got values in [{int(lo)}, {int(hi)}]"
        return None

    def _sample(self, labels: Tensor) -> Tensor:
        """(n_kept,) sorted local class indices: this rank's positives + random others."""
        n_local = self.stop - self.start
        owned = (labels >= self.start) & (labels < self.stop)
        positives = torch.unique(labels[owned] - self.start).cpu()
        n_keep = min(n_local, max(positives.numel(), round(self.sample_rate * n_local), 1))
        gen = torch.Generator().manual_seed(seed_of(self.seed, self.step, self.rank))
        order = torch.randperm(n_local, generator=gen)
        is_positive = torch.zeros(n_local, dtype=torch.bool)
        is_positive[positives] = True
        others = order[~is_positive[order]][: n_keep - positives.numel()]
        return torch.cat([positives, others]).sort().values.to(labels.device)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        group, k = self.process_group, self.subcenters
        error = self._input_error(embeddings, labels)
        device = self.weight.device
        n = embeddings.shape[0] if error is None else 0
        shared = all_gather_sizes([n, int(error is not None)], device, group)
        if error is not None:
            raise ValueError(error)
        bad = [r for r, (_, flag) in enumerate(shared) if flag]
        if bad:
            raise ValueError(f"embeddings or labels of rank(s) {bad} are invalid "
                             "(their ValueError says why)")
        sizes = [size for size, _ in shared]
        x = F.normalize(embeddings.to(self.weight.dtype), dim=1)
        x = gather_rows(x, sizes, group)  # (N, D)
        y = gather_rows(labels.to(device), sizes, group)  # (N,)
        if x.shape[0] == 0:
            return self.weight.sum() * 0.0
        owned = (y >= self.start) & (y < self.stop)
        local = torch.where(owned, y - self.start, -1)
        self.kept_classes = None
        weight = self.weight
        if self.training and self.sample_rate < 1:
            kept = self._sample(y)
            self.step += 1
            self.kept_classes = kept + self.start
            rows = (kept[:, None] * k + torch.arange(k, device=device)).reshape(-1)
            weight = _GatherRows.apply(self.weight, rows)  # row-sparse gradient
            local = torch.where(owned, torch.searchsorted(kept, local.clamp(min=0)), -1)
        elif self.training:
            self.step += 1
        cosine = _RowCosine.apply(x, weight)  # (N, n_kept·K)
        if k > 1:
            cosine = cosine.view(x.shape[0], -1, k).amax(dim=2)
        m = self.margin
        logits = margin_logits(cosine, local, s=self.s, m1=m.m1, m2=m.m2, m3=m.m3,
                               gradient=self.gradient, overflow=self.overflow)
        shift = all_reduce_max(logits.detach().amax(dim=1), group)  # M (N,)
        sum_exp = torch.exp(logits - shift[:, None]).sum(dim=1)
        target = logits.gather(1, local.clamp(min=0)[:, None]).squeeze(1)
        target = torch.where(owned, target, torch.zeros_like(target))
        target_cos = cosine.detach().gather(1, local.clamp(min=0)[:, None]).squeeze(1)
        target_cos = torch.where(owned, target_cos, torch.zeros_like(target_cos))
        # S, T and cos θ_y (for logging only), (3, N)
        total = all_reduce_sum(torch.stack([sum_exp, target, target_cos]), group)
        self.target_cosine = total[2].detach()
        return (total[0].log() + shift - total[1]).mean()

    def extra_repr(self) -> str:
        return (f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, "
                f"classes=[{self.start}, {self.stop}), rank={self.rank}/{self.world_size}, "
                f"subcenters={self.subcenters}, sample_rate={self.sample_rate}, "
                f"{self.margin.label or self.margin}, s={self.s}")
