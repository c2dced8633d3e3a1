"""Sharded FC on CPU gloo ranks: per-rank memory against world size 1, and Partial FC step time.

(1) Memory: for world sizes 1, 2, 4 (fixed global batch, split over the ranks), rank 0 (the
    largest shard) runs one training step (forward, backward, RowSGD with momentum) and
    reports the bytes of its W, W's gradient, the momentum buffer and the activations saved
    for backward (logits and friends, W itself not counted), and its peak RSS growth during
    the step; each is printed as a ratio to world size 1 (target about 1/world), next to
    :func:`arclab.parallel.fc_memory`'s model.
(2) Time: the step time (forward + backward + RowSGD step) of Partial FC (r = 0.1) relative
    to the full sharded FC on the same weight, at world size 1 and 2; the two modes alternate
    within each repeat (interleaved), medians are compared. All ranks share this machine's
    cores, so world size 2 shows the cost of the collectives, not a speed-up.

    python benchmarks/sharded_fc.py [--classes 1000000] [--dim 512] [--batch 128]
                                    [--memory-classes 100000] [--repeats 3] [--small]

``--small`` runs a quick configuration (C = 100k for the timing, 20k for memory).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.distributed as dist

from arclab.parallel import RowSGD, ShardedMarginFC, fc_memory, launch

MB = 1e6


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _batch(rank: int, world_size: int, batch: int, classes: int, dim: int, seed: int):
    n = batch // world_size + (rank < batch % world_size)
    gen = torch.Generator().manual_seed(seed * 1000 + rank)
    return torch.randn(n, dim, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def _memory_rank(rank: int, world_size: int, classes: int, dim: int, batch: int) -> dict:
    x, y = _batch(rank, world_size, batch, classes, dim, seed=1)
    try:  # reset the peak-RSS counter (Linux), so VmHWM is the peak of this step
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss_before = _status_kb("VmRSS")
    fc = ShardedMarginFC(dim, classes)
    opt = RowSGD(fc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    storages: dict[int, int] = {}
    own = fc.weight.untyped_storage().data_ptr()

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not t.is_sparse and t.untyped_storage().data_ptr() != own:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fc(x, y)
    loss.backward()
    grad_bytes = fc.weight.grad.nbytes
    opt.step()
    dist.barrier()
    return {"weight": fc.weight.nbytes, "weight_grad": grad_bytes,
            "momentum": opt.state[fc.weight]["momentum_buffer"].nbytes,
            "saved": sum(storages.values()),
            "rss_growth": (_status_kb("VmHWM") - rss_before) * 1024,
            "classes": fc.stop - fc.start}


def _timing_rank(rank: int, world_size: int, classes: int, dim: int, batch: int,
                 repeats: int, rate: float) -> dict:
    x, y = _batch(rank, world_size, batch, classes, dim, seed=2)
    fc = ShardedMarginFC(dim, classes)
    opt = RowSGD(fc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    times: dict[float, list[float]] = {1.0: [], rate: []}
    for repeat in range(repeats + 1):  # the first round warms up and is not kept
        for mode in (1.0, rate):
            fc.sample_rate = mode
            dist.barrier()
            start = time.perf_counter()
            fc(x, y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            dist.barrier()
            if repeat:
                times[mode].append(time.perf_counter() - start)
    return {"full": times[1.0], "partial": times[rate], "threads": torch.get_num_threads()}


def memory_table(classes: int, dim: int, batch: int) -> None:
    print(f"(1) per-rank FC memory, rank 0: C={classes:,} D={dim} fp32, global batch {batch} "
          "split over the ranks; SGD momentum; ratio = value / value at world size 1")
    print(f"{'world':>5} {'classes':>8} | {'W MB':>8} {'ratio':>6} | {'grad MB':>8} "
          f"{'ratio':>6} | {'mom MB':>8} {'ratio':>6} | {'saved MB':>8} {'ratio':>6} | "
          f"{'RSS+ MB':>8} {'ratio':>6} || model: {'W MB':>8} {'logits MB':>9} {'total MB':>8}")
    base = None
    for world_size in (1, 2, 4):
        got = launch(_memory_rank, world_size, classes, dim, batch, timeout_s=600)[0]
        base = base or got
        model = fc_memory(classes, dim, world_size, batch_size=batch // world_size)
        cells = " | ".join(f"{got[k] / MB:8.1f} {got[k] / base[k]:6.3f}"
                           for k in ("weight", "weight_grad", "momentum", "saved", "rss_growth"))
        print(f"{world_size:>5} {got['classes']:>8} | {cells} || model: "
              f"{model['weight'] / MB:8.1f} {model['logits'] / MB:9.1f} "
              f"{model['total'] / MB:8.1f}")


def timing_table(classes: int, dim: int, batch: int, repeats: int, rate: float) -> None:
    print(f"\n(2) step time (forward + backward + RowSGD step), C={classes:,} D={dim} fp32, "
          f"global batch {batch}, Partial FC r={rate} vs full sharded FC, {repeats} interleaved "
          "repeats after one warm-up round, CPU gloo")
    for world_size in (1, 2):
        runs = launch(_timing_rank, world_size, classes, dim, batch, repeats, rate,
                      timeout_s=600)
        full = statistics.median(runs[0]["full"])
        partial = statistics.median(runs[0]["partial"])
        print(f"world {world_size} ({runs[0]['threads']} threads per rank): full "
              f"{full * 1e3:8.1f} ms, partial {partial * 1e3:8.1f} ms (medians), "
              f"partial / full = {partial / full:.3f}  "
              f"[minima: {min(runs[0]['partial']) / min(runs[0]['full']):.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1_000_000, help="C for the timing")
    parser.add_argument("--memory-classes", type=int, default=100_000, help="C for memory")
    parser.add_argument("--dim", type=int, default=512, help="embedding size D")
    parser.add_argument("--batch", type=int, default=128, help="global batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.1, help="Partial FC sample rate")
    parser.add_argument("--small", action="store_true", help="C=100k timing, 20k memory")
    args = parser.parse_args()
    if args.small:
        args.classes, args.memory_classes = 100_000, 20_000
    memory_table(args.memory_classes, args.dim, args.batch)
    timing_table(args.classes, args.dim, args.batch, args.repeats, args.rate)


if __name__ == "__main__":
    main()
