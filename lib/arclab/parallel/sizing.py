"""How big the sharded FC gets: the closed-form memory model over many sizes, and the model
beside what was measured.

:func:`memory_table` and :func:`ranks_needed` evaluate :func:`arclab.parallel.fc_memory` over
a grid of class counts, world sizes and sample rates; :func:`measured_vs_model` lays what
:func:`arclab.parallel.measure.fc_step_stats` measured on the ranks beside that model.

Units: bytes everywhere (MB = 10⁶ bytes where a caller converts).

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from arclab.parallel.layout import fc_memory, positive_int

__all__ = ["measured_vs_model", "memory_table", "ranks_needed"]


def measured_vs_model(stats: dict[int, list[dict]], num_classes: int,
                      embedding_size: int) -> list[dict]:
    """Rank 0's measured bytes beside :func:`fc_memory`'s model, one row per (W, rate).

    ``stats`` maps a world size to what :func:`~arclab.parallel.measure.fc_step_stats` returned
    on its ranks. The model takes the per-rank batch as global batch / W, so it is exact when W
    divides the batch.
    Each row: world_size, sample_rate, classes, kept, the measured weight, weight_grad,
    momentum, logits, saved, logit_copies, peak_growth (None where unknown) and the model's
    ``model_<key>`` for weight, weight_grad, momentum, logits and total.

    Raises:
        ValueError: sizes or a sample rate :func:`fc_memory` refuses.

    Example:
        >>> mode = {"sample_rate": 1.0, "kept": 10, "weight_grad": 160, "logits": 80,
        ...         "saved": 300, "logit_copies": 3, "peak_growth": None, "times": [0.1]}
        >>> stats = {1: [{"classes": 10, "weight": 160, "momentum": 160, "global_batch": 2,
        ...               "modes": [mode]}]}
        >>> row = measured_vs_model(stats, 10, 4)[0]
        >>> row["weight"] == row["model_weight"], row["model_total"]
        (True, 640)

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    rows = []
    for world_size, ranks in stats.items():
        first = ranks[0]
        for mode in first["modes"]:
            model = fc_memory(num_classes, embedding_size, world_size,
                              batch_size=max(1, first["global_batch"] // world_size),
                              sample_rate=mode["sample_rate"])
            rows.append({"world_size": world_size, "classes": first["classes"],
                         "weight": first["weight"], "momentum": first["momentum"],
                         **{k: v for k, v in mode.items() if k != "times"},
                         **{f"model_{k}": model[k] for k in ("weight", "weight_grad",
                                                             "momentum", "logits", "total")}})
    return rows


def memory_table(class_counts: Sequence[int], world_sizes: Sequence[int],
                 sample_rates: Sequence[float], embedding_size: int = 512, *,
                 batch_size: int = 64, dtype: torch.dtype = torch.float32) -> list[dict]:
    """:func:`fc_memory` over a grid, plus the all-gathered features: one row per
    (classes, world size, rate), sizes per rank in bytes.

    ``batch_size`` is per rank, so the global batch is ``batch_size`` × W (the slides: 64 per
    GPU on 8 GPUs, 512 in all); features = global batch × D × bytes per element.

    Raises:
        ValueError: a grid value, size or dtype :func:`fc_memory` refuses.

    Example (the slides' row: 256 MB of W per GPU on 8, 1 MB of aggregated features):
        >>> row = memory_table([1_000_000], [8], [1.0])[0]
        >>> row["weight"], row["features"]
        (256000000, 1048576)

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    b = torch.empty((), dtype=dtype).element_size()
    rows = []
    for c in class_counts:
        for w in world_sizes:
            for r in sample_rates:
                m = fc_memory(c, embedding_size, w, batch_size=batch_size, sample_rate=r,
                              dtype=dtype)
                rows.append({"classes": c, "world_size": w, "sample_rate": float(r), **m,
                             "features": batch_size * w * embedding_size * b})
    return rows


def ranks_needed(num_classes: int, embedding_size: int, device_bytes: int | float, *,
                 batch_size: int = 64, sample_rate: float = 1.0,
                 dtype: torch.dtype = torch.float32, max_world_size: int = 4096) -> int | None:
    """The smallest world size whose FC (:func:`fc_memory` total) fits in ``device_bytes``.

    With the per-rank batch n fixed, the global batch n·W grows with W, so the logits per rank,
    (n·W)·(C/W)·r = n·C·r elements (and as many for their gradient), do not shrink: the total
    falls towards that floor, and when the floor alone exceeds the device no world size fits
    (None). Counts the FC only (W, its gradient, momentum, logits), not the backbone.

    Raises:
        ValueError: device_bytes not a number > 0; max_world_size not a positive integer;
            sizes, a sample rate or a dtype :func:`fc_memory` refuses.

    Example:
        >>> ranks_needed(1_000_000, 512, 2e9), ranks_needed(100_000_000, 512, 32e9)
        (5, None)

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    if isinstance(device_bytes, bool) or not isinstance(device_bytes, (int, float)) \
            or not device_bytes > 0:
        raise ValueError(f"device_bytes must be a number > 0, got {device_bytes!r}")
    positive_int("max_world_size", max_world_size)
    positive_int("num_classes", num_classes)
    for w in range(1, min(max_world_size, num_classes) + 1):
        m = fc_memory(num_classes, embedding_size, w, batch_size=batch_size,
                      sample_rate=sample_rate, dtype=dtype)
        if m["total"] <= device_bytes:
            return w
    return None
