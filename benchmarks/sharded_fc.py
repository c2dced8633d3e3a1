"""Sharded FC on local ranks: per-rank memory against world size 1, and Partial FC step time.

Both parts call :func:`arclab.parallel.measure.fc_step_stats` on every rank through
:func:`arclab.parallel.launch` (what notebook 07 does at a smaller scale):

(1) Memory: for world sizes 1, 2, 4 (fixed global batch, split over the ranks), rank 0 (the
    largest shard) reports the bytes of its W, W's gradient, the momentum buffer and the
    activations saved for backward (W itself not counted), and its peak memory growth during
    the step (peak RSS on the CPU, the CUDA allocator's peak under nccl); each is printed as a
    ratio to world size 1 (target about 1/world), next to
    :func:`arclab.parallel.fc_memory`'s model.
(2) Time: the step time (forward + backward + RowSGD step) of Partial FC (r = 0.1) relative
    to the full sharded FC on the same weight, at world size 1 and 2; the two modes alternate
    within each repeat (interleaved), medians are compared. On CPU (gloo) all ranks share this
    machine's cores, so world size 2 shows the cost of the collectives, not a speed-up.

    python benchmarks/sharded_fc.py [--classes 1000000] [--dim 512] [--batch 128]
                                    [--memory-classes 100000] [--repeats 3] [--small]
                                    [--backend gloo|nccl]

``--small`` runs a quick configuration (C = 100k for the timing, 20k for memory).
"""

from __future__ import annotations

import argparse
import statistics

from arclab.parallel import fc_memory, launch
from arclab.parallel.measure import fc_step_stats

MB = 1e6


def memory_table(classes: int, dim: int, batch: int, backend: str) -> None:
    print(f"(1) per-rank FC memory, rank 0: C={classes:,} D={dim} fp32, global batch {batch} "
          "split over the ranks; SGD momentum; ratio = value / value at world size 1")
    print(f"{'world':>5} {'classes':>8} | {'W MB':>8} {'ratio':>6} | {'grad MB':>8} "
          f"{'ratio':>6} | {'mom MB':>8} {'ratio':>6} | {'saved MB':>8} {'ratio':>6} | "
          f"{'peak+ MB':>8} {'ratio':>6} || model: {'W MB':>8} {'logits MB':>9} {'total MB':>8}")
    base = None
    for world_size in (1, 2, 4):
        got = launch(fc_step_stats, world_size, classes, dim, batch, [1.0], 1,
                     backend=backend, timeout_s=600)[0]
        got = {**got, **got["modes"][0]}
        got["peak_growth"] = got["peak_growth"] or 0
        base = base or got
        model = fc_memory(classes, dim, world_size, batch_size=batch // world_size)
        cells = " | ".join(f"{got[k] / MB:8.1f} {got[k] / max(base[k], 1):6.3f}"
                           for k in ("weight", "weight_grad", "momentum", "saved",
                                     "peak_growth"))
        print(f"{world_size:>5} {got['classes']:>8} | {cells} || model: "
              f"{model['weight'] / MB:8.1f} {model['logits'] / MB:9.1f} "
              f"{model['total'] / MB:8.1f}")


def timing_table(classes: int, dim: int, batch: int, repeats: int, rate: float,
                 backend: str) -> None:
    print(f"\n(2) step time (forward + backward + RowSGD step), C={classes:,} D={dim} fp32, "
          f"global batch {batch}, Partial FC r={rate} vs full sharded FC, {repeats} interleaved "
          f"repeats after one warm-up round, {backend}")
    for world_size in (1, 2):
        run = launch(fc_step_stats, world_size, classes, dim, batch, [1.0, rate], repeats,
                     backend=backend, timeout_s=600)[0]
        full, partial = (m["times"] for m in run["modes"])
        print(f"world {world_size} ({run['threads']} threads per rank): full "
              f"{statistics.median(full) * 1e3:8.1f} ms, partial "
              f"{statistics.median(partial) * 1e3:8.1f} ms (medians), partial / full = "
              f"{statistics.median(partial) / statistics.median(full):.3f}  "
              f"[minima: {min(partial) / min(full):.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1_000_000, help="C for the timing")
    parser.add_argument("--memory-classes", type=int, default=100_000, help="C for memory")
    parser.add_argument("--dim", type=int, default=512, help="embedding size D")
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.1, help="Partial FC sample rate")
    parser.add_argument("--backend", default="gloo", help="gloo (CPU) or nccl (one GPU a rank)")
    parser.add_argument("--small", action="store_true", help="C=100k timing, 20k memory")
    args = parser.parse_args()
    if args.small:
        args.classes, args.memory_classes = 100_000, 20_000
    memory_table(args.memory_classes, args.dim, args.batch, args.backend)
    timing_table(args.classes, args.dim, args.batch, args.repeats, args.rate, args.backend)


if __name__ == "__main__":
    main()
