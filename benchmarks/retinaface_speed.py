"""RetinaFace latency on this CPU, and how close it runs to the CPU's convolution speed.

For MobileNet-0.25 (VGA 640x480, HD 1920x1080, 4K 4096x2160) and ResNet-50 (VGA, HD): the
median time of one forward pass at batch 1 (the network alone, as the slides time it), with
one thread and with all threads, next to the slides' i7-6700K numbers (CPU-1 17.2 / 130.4 ms,
CPU-m 5.5 / 50.3 ms for MobileNet-0.25 at VGA / HD). As a reference measured in the same run,
a dense 3x3 convolution (64 -> 64 channels on a 240x320 map) gives this CPU's achievable
GFLOP/s per thread count; each model's achieved GFLOP/s (2 x its MACs / time) is printed as a
fraction of it. Depthwise convolutions and small maps run far below a dense convolution's
speed, which is why MobileNet's fraction is low.

    python benchmarks/retinaface_speed.py [--repeats 3] [--skip-resnet] [--skip-4k]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from arclab.detection.model import RetinaFace
from arclab.detection.postprocess import time_detector
from arclab.models.flops import count_flops
from arclab.reference import RETINAFACE_SPEED_MS


class _First(nn.Module):
    """The detector with one tensor output, for the FLOPs counter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["cls"]


@torch.no_grad()
def dense_conv_gflops(threads: int, repeats: int) -> float:
    """GFLOP/s of a dense 3x3 convolution, 64 -> 64 channels on 240x320, at batch 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).eval()
        x = torch.randn(1, 64, 240, 320)
        conv(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - t0)
        macs = 64 * 64 * 9 * 240 * 320
        return 2 * macs / statistics.median(times) / 1e9
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--skip-4k", action="store_true")
    args = parser.parse_args()
    all_threads = torch.get_num_threads()
    threads = sorted({1, all_threads})
    peak = {n: dense_conv_gflops(n, max(5, args.repeats)) for n in threads}
    for n, g in peak.items():
        print(f"dense 3x3 conv reference: {g:6.1f} GFLOP/s with {n} thread(s)")
    sizes = {"VGA": (480, 640), "HD": (1080, 1920), "4K": (2160, 4096)}
    models = {"mobilenet0.25": ["VGA", "HD"] + ([] if args.skip_4k else ["4K"])}
    if not args.skip_resnet:
        models["resnet50"] = ["VGA", "HD"]
    slides = {1: RETINAFACE_SPEED_MS["mobilenet0.25_cpu_1"],
              all_threads: RETINAFACE_SPEED_MS["mobilenet0.25_cpu_multi"]}
    print(f"{'model':14s} {'size':4s} {'threads':>7s} {'ms':>9s} {'GFLOP/s':>8s} "
          f"{'of dense conv':>13s} {'slides i7-6700K ms':>19s}")
    for name, names in models.items():
        model = RetinaFace(name).eval()
        for label in names:
            h, w = sizes[label]
            macs = count_flops(_First(model), (3, h, w))["macs"]
            for row in time_detector(model, [(h, w)], threads, repeats=args.repeats):
                gflops = 2 * macs / (row["ms"] / 1000) / 1e9
                ref = slides[row["threads"]].get(label.lower()) if name == "mobilenet0.25" \
                    and row["threads"] in slides else None
                print(f"{name:14s} {label:4s} {row['threads']:7d} {row['ms']:9.1f} "
                      f"{gflops:8.1f} {gflops / peak[row['threads']]:13.2f} "
                      f"{'-' if ref is None else f'{ref:.1f}':>19s}")
        print(f"{name}: {2 * count_flops(_First(model), (3, 480, 640))['macs'] / 1e9:.2f} "
              "GFLOPs per VGA image (2 x MACs)")


if __name__ == "__main__":
    main()
