"""Which items each training step reads, and the DataLoader that reads them.

The batch of step k is a pure function of (seed, k, rank, W): its items come from a per-epoch
permutation seeded by (seed, epoch) (for the triplet loss, P identities × K images each), and
the global RNG is re-seeded from (seed, k, rank) before the step, so augmentation and dropout
are functions of the step too. SynthFaces (:class:`arclab.data.cache.FaceDataset`) are read in
the training process by array indexing, drawing their mirror flags from that RNG. Data sets
decoded on demand (:class:`arclab.train.sources.DecodedFaces`: an image folder, a
``train.rec``) are read by a :class:`torch.utils.data.DataLoader` whose worker processes
decode the images; its batch sampler (:class:`StepSampler`) hands each item over with its
mirror flag, drawn from the step's seed by the sampler, so neither the number of workers nor a
resume at any step changes a batch.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, default_collate

from arclab.train.config import TrainConfig
from arclab.train.sources import DecodedFaces

__all__ = ["StepSampler", "default_workers", "step_batch", "step_batches", "step_flips",
           "step_indices", "step_seed"]


def default_workers() -> int:
    """The DataLoader's worker processes when ``data.workers`` is not set: min(4, CPUs)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, cpus or 1)


def step_seed(cfg: TrainConfig, step: int, rank: int = 0) -> int:
    """The seed of ``step`` on process ``rank``: the global RNG's before the step, and the
    mirror flags' of a :class:`~arclab.train.sources.DecodedFaces` batch.

    Example:
        >>> step_seed(TrainConfig(seed=1), 2, rank=1)
        1009005046
    """
    return (cfg.seed * 1_000_003 + step) * 1009 + rank


def step_flips(cfg: TrainConfig, step: int, rank: int, n: int) -> Tensor:
    """The mirror flags (n,) bool of the ``n`` items process ``rank`` reads at ``step``: a
    generator of their own, seeded by :func:`step_seed` (the global RNG is left alone)."""
    gen = torch.Generator().manual_seed(step_seed(cfg, step, rank))
    return torch.rand(n, generator=gen) < 0.5


@functools.lru_cache(maxsize=2)
def _epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    """The permutation of ``n`` items of an epoch (computed once an epoch, not once a step)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


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


def step_indices(dataset, cfg: TrainConfig, step: int, *, rank: int = 0,
                 world_size: int = 1) -> Tensor:
    """The indices (B/W,) of the items process ``rank`` reads at ``step``: its share of the
    step's slice of the epoch's permutation, or of the P × K batch for the triplet loss (the
    data set must expose ``labels``).

    Raises:
        ValueError: margin "triplet" with a data set that has no ``labels``.
    """
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
        batch = _epoch_order(len(dataset), cfg.seed, epoch)
        start = k * cfg.batch_size + rank * local
    return batch[start:start + local].clone()


def step_batch(dataset, cfg: TrainConfig, step: int, *, rank: int = 0,
               world_size: int = 1) -> tuple[Tensor, Tensor]:
    """The images (B/W, 3, S, S) and labels (B/W,) that process ``rank`` trains on at
    ``step`` (:func:`step_indices`); re-seeds the global RNG from (seed, step, rank) first
    (:func:`step_seed`), so augmentation is a pure function of the step. A data set with a
    ``batch(indices)`` method (:meth:`arclab.data.cache.FaceDataset.batch`) is read by array
    indexing, one call a step; a :class:`~arclab.train.sources.DecodedFaces` item by item
    with the flags of :func:`step_flips` (the batch its DataLoader gives); others item by
    item."""
    chosen = step_indices(dataset, cfg, step, rank=rank, world_size=world_size)
    torch.manual_seed(step_seed(cfg, step, rank))
    if isinstance(dataset, DecodedFaces):
        flips = step_flips(cfg, step, rank, len(chosen))
        return tuple(default_collate([dataset[pair] for pair in zip(chosen.tolist(),
                                                                     flips.tolist())]))
    if callable(getattr(dataset, "batch", None)):  # array indexing: same tensors and draws
        return dataset.batch(np.asarray(chosen))
    items = [dataset[int(i)] for i in chosen]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


class StepSampler(Sampler):
    """A DataLoader's batch sampler for steps [start, stop) of process ``rank``: per step the
    list of (index, mirror flag) pairs of :func:`step_indices` and :func:`step_flips`.

    Example:
        >>> ds = DecodedFaces([(torch.zeros(3, 2, 2, dtype=torch.uint8), 0)] * 8, 2)
        >>> [len(b) for b in StepSampler(ds, TrainConfig(batch_size=4), 3, 5)]
        [4, 4]
    """

    def __init__(self, dataset, cfg: TrainConfig, start: int, stop: int, *, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        self.dataset, self.cfg, self.start, self.stop = dataset, cfg, start, stop
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        for step in range(self.start, self.stop):
            chosen = step_indices(self.dataset, self.cfg, step, rank=self.rank,
                                  world_size=self.world_size)
            flips = step_flips(self.cfg, step, self.rank, len(chosen))
            yield list(zip(chosen.tolist(), flips.tolist(), strict=True))


def step_batches(dataset, cfg: TrainConfig, start: int, stop: int, *, rank: int = 0,
                 world_size: int = 1, device: torch.device | None = None
                 ) -> Iterator[tuple[Tensor, Tensor]]:
    """The batches of steps [start, stop) in order, each equal to :func:`step_batch`'s, the
    global RNG re-seeded from the step's seed as each is handed over.

    A :class:`~arclab.train.sources.DecodedFaces` is read by a DataLoader with its
    ``workers`` worker processes (``data.workers``; 0: in this process; None:
    :func:`default_workers`) and :class:`StepSampler`: the batches are the same for any number
    of workers. Batches for a CUDA ``device`` come in pinned memory. Other data sets are read
    here, step by step (:func:`step_batch`). Close the iterator (``contextlib.closing``) to
    stop the workers early.

    Example:
        >>> ds = DecodedFaces([(torch.zeros(3, 2, 2, dtype=torch.uint8), i % 2)
        ...                    for i in range(8)], 2, workers=0)
        >>> cfg = TrainConfig(batch_size=4)
        >>> [y.tolist() for _, y in step_batches(ds, cfg, 0, 2)] == [
        ...     step_batch(ds, cfg, s)[1].tolist() for s in range(2)]
        True
    """
    if not isinstance(dataset, DecodedFaces):
        for step in range(start, stop):
            yield step_batch(dataset, cfg, step, rank=rank, world_size=world_size)
        return
    sampler = StepSampler(dataset, cfg, start, stop, rank=rank, world_size=world_size)
    workers = default_workers() if dataset.workers is None else dataset.workers
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                        pin_memory=device is not None and torch.device(device).type == "cuda")
    try:
        for step, (x, y) in zip(range(start, stop), loader):
            torch.manual_seed(step_seed(cfg, step, rank))
            yield x, y
    except ValueError as err:  # a worker's: its own message, without the worker's traceback
        lines = str(err).strip().splitlines() or [""]
        if not lines[0].startswith("Caught ValueError in DataLoader worker"):
            raise
        raise ValueError(lines[-1].removeprefix("ValueError: ")) from err
