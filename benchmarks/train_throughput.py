"""Training images/s of the arclab loop against a bare forward + backward of the same model.

For each backbone (default r18 and mbf at 112×112, CPU): ``arclab.train.train`` runs
``--steps`` steps on an in-memory uint8 data set (batches assembled item by item, flip
augmentation, margin head, SGD, logging, one checkpoint at the end), and a bare step —
``head(model(x))`` + ArcFace loss, backward, SGD step on one fixed batch tensor — runs as many
times. Both alternate ``--rounds`` times in the same run; the medians of the per-step times
(from the loop's own log, and the first step of each run dropped as warm-up) give the loop
overhead ratio (target: at most 1.15x). The run's wall time per step, which also counts model
construction and the final checkpoint, is printed beside it.

    python benchmarks/train_throughput.py [--models r18 mbf] [--batch 32] [--steps 6]
                                          [--rounds 2] [--size 112] [--device cpu]
"""

from __future__ import annotations

import argparse
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
from arclab.train import TrainConfig, train


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
    model = get_model(cfg.backbone, embedding_size=cfg.embedding_size,
                      input_size=cfg.input_size).to(device)
    head = make_head(cfg.margin, cfg.embedding_size, n_classes).to(device)
    loss_fn = MarginLoss(cfg.margin, s=cfg.s)
    opt = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=cfg.lr, momentum=0.9,
                          weight_decay=5e-4)
    x = torch.randn(cfg.batch_size, 3, cfg.input_size, cfg.input_size, device=device)
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
    parser.add_argument("--models", nargs="+", default=["r18", "mbf"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = str(arclab.get_device(args.device))
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    images = rng.integers(0, 256, (n, args.size, args.size, 3), dtype=np.uint8)
    data = FaceDataset(images, rng.integers(0, args.classes, n), flip=True)
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch}, "
          f"{args.size}x{args.size}, {args.steps} steps x {args.rounds} rounds")
    for name in args.models:
        cfg = TrainConfig(backbone=name, input_size=args.size, batch_size=args.batch,
                          epochs=1, lr=0.01, s=64.0, checkpoint_every=10**6)
        looped, bare, walls = [], [], []
        for _ in range(args.rounds):
            steps, wall = loop_steps(cfg, data, args.classes, device)
            looped += steps
            walls.append(wall)
            bare += bare_steps(cfg, args.classes, args.steps, device)
        lo, ba = statistics.median(looped), statistics.median(bare)
        print(f"{name:>4}: loop {args.batch / lo:7.1f} img/s, bare fwd+bwd {args.batch / ba:7.1f}"
              f" img/s, overhead ratio {lo / ba:.3f}x (target <= 1.15x); wall per step incl. "
              f"setup and checkpoint {min(walls):.3f} s vs bare {ba:.3f} s")


if __name__ == "__main__":
    main()
