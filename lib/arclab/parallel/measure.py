"""Measurements of the sharded FC: memory per rank, step times, equality with the dense loss.

:func:`fc_step_stats` and :func:`equality_check` run on every rank of a group (pass them to
:func:`arclab.parallel.launch`, which is why they live here and not in a notebook);
:func:`dense_margin_loss` is the single-process reference the sharded loss must equal.
The closed-form model over many sizes (:func:`memory_table`, :func:`ranks_needed`,
:func:`measured_vs_model`) lives in :mod:`arclab.parallel.sizing`.

Units: bytes everywhere (MB = 10⁶ bytes where a caller converts), seconds for times.

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from arclab.losses.heads import NormLinear, SubCenterNormLinear
from arclab.losses.margins import PRESETS, Margin, MarginLoss
from arclab.parallel.collectives import all_gather_sizes, gather_rows, world
from arclab.parallel.layout import init_weight, positive_int
from arclab.parallel.optim import RowSGD
from arclab.parallel.sharded import ShardedMarginFC

__all__ = ["dense_margin_loss", "equality_check", "fc_step_stats"]


def _rank_device() -> torch.device:
    """CUDA device of this rank under nccl, else the CPU (gloo)."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Peak:
    """Peak memory growth of this process from :meth:`start`: CUDA allocator on a GPU, peak
    resident set size (Linux VmHWM, reset through /proc/self/clear_refs) on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.base = device, 0

    @staticmethod
    def _status_bytes(field: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:  # give freed heap pages back first, or a new tensor reuses them unseen
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass
        self.base = self._status_bytes("VmRSS") or 0

    def growth(self) -> int | None:
        """Peak bytes above the start; None where the platform cannot tell."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        peak = self._status_bytes("VmHWM")
        return None if peak is None else peak - self.base


def _global_batch(n: int, num_classes: int, embedding_size: int, seed: int,
                  dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, embedding_size, generator=gen, dtype=dtype),
            torch.randint(0, num_classes, (n,), generator=gen))


def _rows(sizes: Sequence[int], rank: int) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _measured_step(fc: ShardedMarginFC, opt: RowSGD, x: Tensor,
                   y: Tensor) -> tuple[dict[int, tuple[int, tuple[int, ...]]], int]:
    """One training step; the storages autograd saved (bytes and shape by address, W's own
    storage left out) and the bytes of W's gradient (values and row indices when sparse)."""
    saved: dict[int, tuple[int, tuple[int, ...]]] = {}
    own = fc.weight.untyped_storage().data_ptr()

    def pack(t: Tensor) -> Tensor:
        if not t.is_sparse and t.untyped_storage().data_ptr() != own:
            saved[t.untyped_storage().data_ptr()] = (t.untyped_storage().nbytes(),
                                                     tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fc(x, y)
    loss.backward()
    grad = fc.weight.grad
    grad_bytes = (grad._values().nbytes + grad._indices().nbytes if grad.is_sparse
                  else grad.nbytes)
    opt.step()
    return saved, grad_bytes


def fc_step_stats(rank: int, world_size: int, num_classes: int, embedding_size: int,
                  batch_size: int, sample_rates: Sequence[float] = (1.0,), repeats: int = 3,
                  seed: int = 0, threads: int | None = None) -> dict:
    """One rank's memory and step times of a ShardedMarginFC training step (launched).

    The global batch ``batch_size`` is split over the ranks (the first ``batch_size % W``
    ranks take one more sample). ``threads`` sets this rank's CPU threads (None: what
    :func:`~arclab.parallel.launch` chose, the cores split over the ranks). A step of a tiny
    layer first loads the kernels and thread pools, so that their one-time memory is not
    counted. For each rate in ``sample_rates`` a fresh layer and a
    :class:`~arclab.parallel.RowSGD` (momentum 0.9, weight decay 5e-4) run one step (forward,
    backward, update) while recording the bytes of W, its gradient (values and row indices when
    row-sparse), the momentum buffer, the tensors autograd saved for backward (W itself not
    counted) and the peak memory growth of the process from before the layer was built. Then
    one layer times ``repeats`` steps per rate, the rates alternating within each round after
    one warm-up round; each timed step is fenced by barriers, so it is the slowest rank's time.

    Returns:
        dict with rank, world_size, classes (this rank's C_r), batch (n_r), global_batch,
        threads, device, weight and momentum (bytes), and ``modes``: one dict per rate with
        sample_rate, kept (classes this rank used), weight_grad, saved, logits (bytes of one
        saved (N, kept·K) cosine matrix), logit_copies (saved storages of that shape),
        peak_growth (bytes, None where unknown) and times (seconds).

    Raises:
        ValueError: bad sizes or rates (from :class:`ShardedMarginFC`), repeats < 1.

    Example (not run as a doctest: spawning costs seconds)::

        launch(fc_step_stats, 2, 10_000, 128, 64, [1.0, 0.1], 3)  # one dict per rank

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    positive_int("repeats", repeats)
    positive_int("batch_size", batch_size)
    if threads is not None:
        torch.set_num_threads(positive_int("threads", threads))
    device = _rank_device()
    sizes, x, y = _rank_batch(rank, world_size, num_classes, embedding_size, batch_size, seed,
                              device)
    peak = _Peak(device)
    out: dict = {"rank": rank, "world_size": world_size, "batch": sizes[rank],
                 "global_batch": batch_size, "threads": torch.get_num_threads(),
                 "device": str(device), "modes": []}
    tiny = 64 * world_size
    for rate in sample_rates:  # warm-up: kernels, thread pools, the collectives' buffers
        fc = ShardedMarginFC(embedding_size, tiny, sample_rate=rate, seed=seed).to(device)
        _measured_step(fc, RowSGD(fc.parameters(), lr=0.1, momentum=0.9), x, y % tiny)
    for rate in sample_rates:
        _barrier()
        peak.start()
        fc = ShardedMarginFC(embedding_size, num_classes, sample_rate=rate, seed=seed).to(device)
        opt = RowSGD(fc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        saved, grad_bytes = _measured_step(fc, opt, x, y)
        _sync(device)
        growth = peak.growth()
        out.update(classes=fc.stop - fc.start, weight=fc.weight.nbytes,
                   momentum=opt.state[fc.weight]["momentum_buffer"].nbytes)
        out["modes"].append(_mode_record(fc, rate, saved, grad_bytes, growth, batch_size))
        del fc, opt
    _time_steps(embedding_size, num_classes, seed, device, x, y, out["modes"], repeats)
    return out


def _rank_batch(rank: int, world_size: int, num_classes: int, embedding_size: int,
                batch_size: int, seed: int, device: torch.device
                ) -> tuple[list[int], Tensor, Tensor]:
    """fc_step_stats' split of a seeded global batch of ``batch_size``: the per-rank sizes
    (the first ``batch_size % W`` ranks take one more) and this rank's rows, x (n_r, D) float32
    and y (n_r,) int64, on ``device``."""
    base, extra = divmod(batch_size, world_size)
    sizes = [base + (r < extra) for r in range(world_size)]
    x_all, y_all = _global_batch(batch_size, num_classes, embedding_size, seed)
    x, y = x_all[_rows(sizes, rank)].to(device), y_all[_rows(sizes, rank)].to(device)
    return sizes, x, y


def _mode_record(fc: ShardedMarginFC, rate: float, saved: dict[int, tuple[int, tuple[int, ...]]],
                 grad_bytes: int, growth: int | None, batch_size: int) -> dict:
    """fc_step_stats' entry of one sample rate, from the layer after its measured step and what
    :func:`_measured_step` recorded (bytes; ``times`` is filled later)."""
    kept = fc.stop - fc.start if fc.kept_classes is None else len(fc.kept_classes)
    shape = (batch_size, kept * fc.subcenters)
    logit_sizes = [nbytes for nbytes, s in saved.values() if s == shape]
    return {"sample_rate": float(rate), "kept": kept, "weight_grad": grad_bytes,
            "saved": sum(nbytes for nbytes, _ in saved.values()),
            "logits": max(logit_sizes, default=0),
            "logit_copies": len(logit_sizes), "peak_growth": growth, "times": []}


def _time_steps(embedding_size: int, num_classes: int, seed: int, device: torch.device,
                x: Tensor, y: Tensor, modes: list[dict], repeats: int) -> None:
    """fc_step_stats' timing: one fresh layer and RowSGD run ``repeats`` training steps per
    mode, the modes' sample rates alternating within each round after one warm-up round; each
    step is fenced by barriers (the slowest rank's time), its seconds appended to the mode's
    ``times``."""
    fc = ShardedMarginFC(embedding_size, num_classes, seed=seed).to(device)
    opt = RowSGD(fc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for round_ in range(repeats + 1):  # round 0 warms up and is not kept
        for mode in modes:
            fc.sample_rate = mode["sample_rate"]
            _barrier()
            _sync(device)
            start = time.perf_counter()
            fc(x, y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            _barrier()
            if round_:
                mode["times"].append(time.perf_counter() - start)


def dense_margin_loss(weight: Tensor, x: Tensor, y: Tensor, *, margin: str | Margin = "arcface",
                      s: float = 64.0, subcenters: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Loss, ∂L/∂x and ∂L/∂W of the single-process margin loss with the given dense weight.

    The textbook path: :class:`~arclab.losses.heads.NormLinear` (or
    :class:`~arclab.losses.heads.SubCenterNormLinear`) holding ``weight``, then
    :class:`~arclab.losses.margins.MarginLoss`, one softmax over all classes in one process.

    Shapes: weight (C·K, D), x (N, D), y (N,) int64 in [0, C) -> (scalar, (N, D), (C·K, D)).

    Example:
        >>> w, x = torch.randn(6, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
        >>> loss, gx, gw = dense_margin_loss(w, x, torch.tensor([0, 2, 5]), s=16.0)
        >>> loss.ndim, tuple(gx.shape), tuple(gw.shape)
        (0, (3, 4), (6, 4))

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    k = positive_int("subcenters", subcenters)
    m = PRESETS[margin] if isinstance(margin, str) else margin
    c, d = weight.shape[0] // k, weight.shape[1]
    head = SubCenterNormLinear(d, c, subcenters=k) if k > 1 else NormLinear(d, c)
    head = head.to(dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        head.weight.copy_(weight)
    x = x.detach().clone().requires_grad_()
    loss = MarginLoss(m1=m.m1, m2=m.m2, m3=m.m3, s=s)(head(x), y)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad


def equality_check(rank: int, world_size: int, num_classes: int, embedding_size: int,
                   batch_sizes: Sequence[int], sample_rates: Sequence[float] = (1.0,), *,
                   margin: str = "arcface", s: float = 64.0, subcenters: int = 1,
                   dtype: torch.dtype = torch.float64, seed: int = 0,
                   reference: Callable[..., tuple[Tensor, Tensor, Tensor]] = dense_margin_loss
                   ) -> list[dict]:
    """This rank's sharded loss and gradients against the dense loss (launched on every rank).

    Rank r takes rows ``batch_sizes[r]`` of a seeded global batch (sizes may differ, 0 too).
    For each rate of ``sample_rates`` it runs one training forward/backward of
    :class:`ShardedMarginFC` and compares with ``reference(weight, x, y, margin=, s=,
    subcenters=)`` evaluated here on the whole batch and the dense weight (:func:`init_weight`
    over all classes, the weight every sharding shares). With Partial FC (rate < 1) the
    reference gets only the rows of the classes kept by all ranks (all-gathered) and the labels
    renumbered among them. ``local_only_loss`` is what this rank would report with no
    communication: the reference loss over its own classes and the rows it owns the label of.

    Returns:
        One dict per rate: sample_rate, loss (this rank's sharded loss), loss_diff
        (|sharded − dense|), embeddings_grad_diff (max |Δ| over this rank's rows of ∂L/∂x),
        weight_grad_diff (max |Δ| over its kept rows of ∂L/∂W), unsampled_grad_max (max |∂L/∂W|
        over its rows not kept: 0 for an exact Partial FC), dense_loss, local_only_loss, kept
        (classes this rank used) and classes ([start, stop)).

    Raises:
        ValueError: batch_sizes without one entry per rank; bad sizes (from the layer).

    Example (not run as a doctest)::

        launch(equality_check, 3, 1000, 64, [7, 4, 0], [1.0, 0.1])  # Δ ~1e-14 in float64

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    if len(batch_sizes) != world_size:
        raise ValueError(f"batch_sizes must have one entry per rank ({world_size}), "
                         f"got {list(batch_sizes)}")
    device = _rank_device()
    x_all, y_all = _global_batch(sum(batch_sizes), num_classes, embedding_size, seed, dtype)
    x_all, y_all = x_all.to(device), y_all.to(device)
    weight = init_weight(0, num_classes, embedding_size, subcenters=subcenters, seed=seed)
    weight = weight.to(device=device, dtype=dtype)
    options = {"margin": margin, "s": s, "subcenters": subcenters}
    mine = _rows(batch_sizes, rank)
    out = []
    for rate in sample_rates:
        fc = ShardedMarginFC(embedding_size, num_classes, sample_rate=rate, seed=seed,
                             **options).to(device=device, dtype=dtype)
        x = x_all[mine].clone().requires_grad_()
        loss = fc(x, y_all[mine])
        loss.backward()
        out.append({"sample_rate": float(rate), "loss": loss.item(),
                    **_compare(fc, x, loss.detach(), weight, x_all, y_all, mine, reference,
                               options)})
    return out


def _compare(fc: ShardedMarginFC, x: Tensor, loss: Tensor, weight: Tensor, x_all: Tensor,
             y_all: Tensor, mine: slice, reference: Callable, options: dict) -> dict:
    """equality_check's comparison of one sharded step with the dense reference."""
    device, k = weight.device, fc.subcenters
    grad = fc.weight.grad.to_dense() if fc.weight.grad.is_sparse else fc.weight.grad
    x_grad = torch.zeros_like(x) if x.grad is None else x.grad
    kept_local = (torch.arange(fc.stop - fc.start, device=device) if fc.kept_classes is None
                  else fc.kept_classes - fc.start)
    kept = kept_local + fc.start
    if world(None)[1] > 1:  # every rank's kept classes, in rank order = ascending
        counts = [n for (n,) in all_gather_sizes([len(kept)], device)]
        kept = gather_rows(kept, counts)
    offsets = torch.arange(k, device=device)
    ref_loss, ref_x, ref_w = reference(weight[(kept[:, None] * k + offsets).reshape(-1)], x_all,
                                       torch.searchsorted(kept, y_all), **options)
    rows = (kept_local[:, None] * k + offsets).reshape(-1)
    first = int((kept < fc.start).sum()) * k  # dense rows before this rank's first kept row
    others = torch.ones(len(grad), dtype=torch.bool, device=device)
    others[rows] = False
    owned = (y_all >= fc.start) & (y_all < fc.stop)
    local_loss = reference(weight[fc.start * k: fc.stop * k], x_all[owned],
                           y_all[owned] - fc.start, **options)[0]

    def gap(a: Tensor, b: Tensor) -> float:
        return (a - b).abs().max().item() if a.numel() else 0.0

    return {"loss_diff": abs(loss.item() - ref_loss.item()),
            "embeddings_grad_diff": gap(x_grad, ref_x[mine]),
            "weight_grad_diff": gap(grad[rows], ref_w[first: first + len(rows)]),
            "unsampled_grad_max": grad[others].abs().max().item() if bool(others.any())
            else 0.0, "dense_loss": ref_loss.item(), "local_only_loss": local_loss.item(),
            "kept": len(kept_local), "classes": [fc.start, fc.stop]}
