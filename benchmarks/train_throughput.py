"""Training images/s of the arclab loop against a bare forward + backward of the same model,
for the configurations the notebooks train, before and after the 2-core regime.

For each configuration (default: mbf and r18 at 32×32, batch 64, the notebooks' recipe;
``--configs`` takes ``backbone:size:batch``), on an in-memory uint8 data set:

- *before*: ``arclab.train.train`` with batches assembled item by item (the data set hides
  ``FaceDataset.batch``) and NCHW convolutions, as the loop trained until this round;
- *after*: the loop as it now runs the notebooks' specs: batches gathered by array indexing
  (``FaceDataset.batch``) and ``channels_last`` where ``tutorial_spec`` sets it;
- *bare*: ``head(model(x))`` + ArcFace loss, backward, SGD step on one fixed batch tensor, in
  the *after* memory format.

The three alternate ``--rounds`` times in the same run (the machine's load drifts); the
medians of the per-step times (from the loop's own log, first step of each run dropped as
warm-up) give after/before (the speed-up) and after/bare (the loop's overhead; target at most
1.15x).

    python benchmarks/train_throughput.py [--configs mbf:32:64 r18:32:64] [--steps 12]
                                          [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import arclab
from arclab.data.cache import FaceDataset
from arclab.losses.heads import make_head
from arclab.losses.margins import MarginLoss
from arclab.models import get_model
from arclab.train import TrainConfig, train, tutorial_spec


def item_by_item(data: FaceDataset) -> FaceDataset:
    """The same set with its batch method hidden: the loop stacks items one by one."""
    plain = copy.copy(data)
    plain.batch = None
    return plain


def loop_steps(cfg: TrainConfig, data: FaceDataset, n_classes: int,
               device: str) -> tuple[list[float], float]:
    """Per-step seconds from the loop's log (first dropped) and wall seconds per step."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(cfg, data, n_classes, tmp, progress=False, device=device)
        wall = time.perf_counter() - start
        log = [json.loads(x) for x in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    steps = [cfg.batch_size / r["images_per_s"] for r in log if "loss" in r]
    return steps[1:], wall / len(steps)


def bare_steps(cfg: TrainConfig, n_classes: int, steps: int, device: str) -> list[float]:
    """Seconds of forward + loss + backward + SGD step on one fixed batch (first dropped)."""
    torch.manual_seed(0)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = get_model(cfg.backbone, embedding_size=cfg.embedding_size,
                      input_size=cfg.input_size).to(device, memory_format=fmt)
    head = make_head(cfg.margin, cfg.embedding_size, n_classes).to(device)
    loss_fn = MarginLoss(cfg.margin, s=cfg.s)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=cfg.lr, momentum=0.9,
                          weight_decay=5e-4)
    x = torch.randn(cfg.batch_size, 3, cfg.input_size, cfg.input_size, device=device).to(
        memory_format=fmt)
    y = torch.randint(0, n_classes, (cfg.batch_size,), device=device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = loss_fn(head(model(x)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t0)
    return times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["mbf:32:64", "r18:32:64"],
                        help="backbone:input size:batch, as the notebooks train them")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = str(arclab.get_device(args.device))
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.steps} steps x "
          f"{args.rounds} rounds, interleaved")
    for conf in args.configs:
        name, size, batch = conf.split(":")
        size, batch = int(size), int(batch)
        rng = np.random.default_rng(0)
        n = batch * args.steps
        images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        data = FaceDataset(images, rng.integers(0, args.classes, n), flip=True)
        recipe = tutorial_spec(backbone=name, input_size=size, batch_size=batch)["train"]
        common = {"backbone": name, "embedding_size": recipe.embedding_size,
                  "input_size": size, "batch_size": batch, "epochs": 1, "lr": 0.01,
                  "s": recipe.s, "checkpoint_every": 10**6}
        before = TrainConfig(**common, channels_last=False)
        after = TrainConfig(**common, channels_last=recipe.channels_last)
        old, new, bare = [], [], []
        for _ in range(args.rounds):
            old += loop_steps(before, item_by_item(data), args.classes, device)[0]
            new += loop_steps(after, data, args.classes, device)[0]
            bare += bare_steps(after, args.classes, args.steps, device)
        o, a, b = (statistics.median(v) for v in (old, new, bare))
        print(f"{name}@{size} batch {batch} (channels_last {after.channels_last}): before "
              f"{batch / o:6.1f} img/s, after {batch / a:6.1f} img/s (x{o / a:.2f}), bare "
              f"{batch / b:6.1f} img/s; loop/bare {a / b:.3f}x (target <= 1.15x)", flush=True)


if __name__ == "__main__":
    main()
