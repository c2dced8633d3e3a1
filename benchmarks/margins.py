"""Forward + backward time of margin_logits + cross-entropy, relative to plain cross-entropy.

Both are timed in the same run, interleaved, on the same (N, C) cosines; the script prints the
median time of each and their ratio (target: at most 1.5x).

    python benchmarks/margins.py [--n 512] [--classes 100000] [--repeats 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import arclab
from arclab.losses.margins import margin_logits


def step(cosine: torch.Tensor, labels: torch.Tensor, s: float, with_margin: bool) -> None:
    cosine.grad = None
    logits = margin_logits(cosine, labels, s=s, m2=0.5) if with_margin else s * cosine
    F.cross_entropy(logits, labels).backward()
    if cosine.is_cuda:
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="batch size N")
    parser.add_argument("--classes", type=int, default=100_000, help="number of classes C")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default=None, help="default: arclab.get_device()")
    args = parser.parse_args()
    device = arclab.get_device(args.device)
    gen = torch.Generator().manual_seed(0)
    cosine = (torch.rand(args.n, args.classes, generator=gen) * 2 - 1).to(device)
    cosine.requires_grad_()
    labels = torch.randint(0, args.classes, (args.n,), generator=gen).to(device)
    times: dict[bool, list[float]] = {False: [], True: []}
    for with_margin in (False, True):  # warm-up
        step(cosine, labels, 64.0, with_margin)
    for _ in range(args.repeats):
        for with_margin in (False, True):
            start = time.perf_counter()
            step(cosine, labels, 64.0, with_margin)
            times[with_margin].append(time.perf_counter() - start)
    plain, margin = statistics.median(times[False]), statistics.median(times[True])
    print(f"device={device} N={args.n} C={args.classes} threads={torch.get_num_threads()} "
          f"repeats={args.repeats}")
    print(f"plain F.cross_entropy(s*cosine): {plain * 1e3:8.1f} ms (median fwd+bwd)")
    print(f"margin_logits + cross_entropy:   {margin * 1e3:8.1f} ms (median fwd+bwd)")
    print(f"ratio: {margin / plain:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
