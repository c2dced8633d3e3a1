"""How the classes are laid out over the ranks, their initial weights, and a memory model.

Rank r of W holds the contiguous classes [start_r, stop_r) (:func:`class_range`) and their
K sub-centers each, weight rows ``(c − start_r)·K + k``; :func:`init_weight` draws the same
rows whatever the world size; :func:`fc_memory` gives the bytes per rank of the classifier's
main tensors.

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor

__all__ = ["INIT_BLOCK", "check_sample_rate", "class_range", "fc_memory", "init_weight",
           "positive_int", "seed_of"]

INIT_BLOCK = 1024
"""Classes per random-number block of :func:`init_weight` (the weight is the same for every
world size because each block has its own generator)."""


def positive_int(name: str, value: object) -> int:
    """``value`` when it is an int >= 1 (bool refused); ``name`` is for the error.

    Raises:
        ValueError: anything else, naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_sample_rate(sample_rate: object) -> float:
    """Partial FC's ``sample_rate`` as a float when it is a number in (0, 1] (bool refused).

    Raises:
        ValueError: anything else.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) \
            or not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be a number in (0, 1], got {sample_rate!r}")
    return float(sample_rate)


def class_range(num_classes: int, world_size: int, rank: int) -> tuple[int, int]:
    """The contiguous block of classes [start, stop) that ``rank`` holds.

    Every rank gets C // W classes and the first C % W ranks one more.

    Raises:
        ValueError: num_classes < world_size (a rank would hold no class), rank outside
            [0, world_size), non-positive sizes.

    Example:
        >>> [class_range(7, 3, r) for r in range(3)]
        [(0, 3), (3, 5), (5, 7)]
    """
    positive_int("num_classes", num_classes)
    positive_int("world_size", world_size)
    if num_classes < world_size:
        raise ValueError(f"num_classes must be >= the world size ({world_size}), "
                         f"got {num_classes}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def seed_of(*parts: int) -> int:
    """A generator seed in [0, 2⁶³) from integers (a 64-bit BLAKE2b hash of their decimal
    text, so stable across processes and platforms), e.g. (seed, block) or (seed, step, rank).

    Example:
        >>> seed_of(0, 1) == seed_of(0, 1), seed_of(0, 1) == seed_of(1, 0)
        (True, False)
    """
    digest = hashlib.blake2b(",".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def init_weight(start: int, stop: int, embedding_size: int, *, subcenters: int = 1,
                seed: int = 0, std: float = 0.01) -> Tensor:
    """N(0, std²) weight rows of classes [start, stop), identical whatever the sharding.

    Shapes: -> ((stop − start)·K, D) float32, row ``(c − start)·K + k`` = sub-center k of
    class c. Class c's rows come from a generator seeded by (seed, c // INIT_BLOCK), so the
    concatenated shards of any world size equal the world-size-1 weight.

    Raises:
        ValueError: start, stop not integers with 0 <= start <= stop; embedding_size or
            subcenters not a positive integer; std not a finite number >= 0.

    Example:
        >>> w = init_weight(0, 5, 4, subcenters=2)
        >>> tuple(w.shape), torch.equal(w[6:], init_weight(3, 5, 4, subcenters=2))
        ((10, 4), True)
    """
    for name, value in (("start", start), ("stop", stop)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if stop < start:
        raise ValueError(f"stop must be >= start ({start}), got {stop}")
    positive_int("embedding_size", embedding_size)
    k = positive_int("subcenters", subcenters)
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std < math.inf:
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    out = torch.empty((stop - start) * k, embedding_size)
    for block in range(start // INIT_BLOCK, -(-stop // INIT_BLOCK)):
        gen = torch.Generator().manual_seed(seed_of(seed, block))
        values = torch.randn(INIT_BLOCK * k, embedding_size, generator=gen) * std
        lo, hi = max(start, block * INIT_BLOCK), min(stop, (block + 1) * INIT_BLOCK)
        first = block * INIT_BLOCK
        out[(lo - start) * k: (hi - start) * k] = values[(lo - first) * k: (hi - first) * k]
    return out


def fc_memory(num_classes: int, embedding_size: int, world_size: int = 1, *,
              batch_size: int = 128, sample_rate: float = 1.0,
              dtype: torch.dtype = torch.float32, subcenters: int = 1) -> dict[str, int]:
    """Bytes per rank of the classifier's main tensors, for the largest shard (rank 0).

    Model: C_r = ⌈C / W⌉ classes, kept = max(1, round(r·C_r)) with r = ``sample_rate``
    (at least that many: the batch's positives are always kept), global batch
    N = ``batch_size`` × W (``batch_size`` is per rank).

    - ``weight`` = ``momentum`` = C_r·K·D·b (the optimizer keeps one buffer per weight);
    - ``weight_grad`` = C_r·K·D·b for r = 1, else kept·K·(D·b + 8) (row-sparse: values and
      int64 row indices);
    - ``logits`` = ``logits_grad`` = N·kept·b; ``total`` their sum. b = bytes per element.

    Raises:
        ValueError: a size not a positive integer, fewer classes than ranks, sample_rate
            outside (0, 1], dtype not a floating-point torch.dtype (naming the argument).

    Example (the slides: W of 1M classes at D = 512 in fp32 is 2 GB, 256 MB per GPU on 8):
        >>> fc_memory(1_000_000, 512)["weight"], fc_memory(1_000_000, 512, 8)["weight"]
        (2048000000, 256000000)

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    positive_int("embedding_size", embedding_size)
    positive_int("batch_size", batch_size)
    k = positive_int("subcenters", subcenters)
    rate = check_sample_rate(sample_rate)
    start, stop = class_range(num_classes, world_size, 0)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    b = torch.empty((), dtype=dtype).element_size()
    n_local = stop - start
    kept = n_local if rate == 1 else min(n_local, max(1, round(rate * n_local)))
    weight = n_local * k * embedding_size * b
    grad = weight if rate == 1 else kept * k * (embedding_size * b + 8)
    logits = batch_size * world_size * kept * b
    out = {"weight": weight, "weight_grad": grad, "momentum": weight, "logits": logits,
           "logits_grad": logits}
    out["total"] = sum(out.values())
    return out
