"""Deformable convolution on this CPU: arclab's grid_sample version against torchvision's kernel.

For the deformable convolutions of notebook 11's detector (mobilenet0.25, 64 pyramid channels,
batch 8 of 256-px scenes: SSH branches 64->32 and 16->16 channels on the 32², 16² and 8² maps),
the median time of a forward + backward pass with each implementation and their ratio; then a
whole training step (forward + backward) of RetinaFace with the DCN context module, torchvision's
kernel vs ours, each as a multiple of the plain SSH context module's step measured in the same
run (the cost the DCN rows add to notebook 11).

    python benchmarks/deform_conv.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch
from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

import arclab.detection.deform as deform
from arclab.detection.model import RetinaFace, preprocess


def _median_seconds(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _op_step(fn, x, offset, weight):
    def step() -> None:
        fn(x, offset, weight, padding=1).square().sum().backward()
    return step


def _model_step(model, images):
    def step() -> None:
        out = model(images)
        sum(v.square().mean() for v in out.values()).backward()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    gen = torch.Generator().manual_seed(0)
    print(f"{'op (N, Cin, H, W) -> Cout':<28} {'torchvision ms':>15} {'arclab ms':>10} "
          f"{'speed-up':>9}")
    for n, c, size, cout in ((8, 64, 32, 32), (8, 16, 32, 16), (8, 64, 16, 32), (8, 16, 8, 16)):
        x = torch.randn(n, c, size, size, generator=gen, requires_grad=True)
        offset = torch.randn(n, 18, size, size, generator=gen).requires_grad_()
        weight = torch.randn(cout, c, 3, 3, generator=gen, requires_grad=True)
        theirs = _median_seconds(_op_step(torchvision_deform_conv2d, x, offset, weight),
                                 args.repeats)
        ours = _median_seconds(_op_step(deform.deform_conv2d, x, offset, weight), args.repeats)
        print(f"{str((n, c, size, size)) + f' -> {cout}':<28} {theirs * 1e3:>15.1f} "
              f"{ours * 1e3:>10.1f} {theirs / ours:>8.1f}x")

    images = preprocess(torch.rand(8, 3, 256, 256, generator=gen))
    torch.manual_seed(0)
    plain = RetinaFace(context="ssh")
    torch.manual_seed(0)
    dcn = RetinaFace(context="ssh_dcn")
    for module in dcn.modules():  # offsets away from zero, as after a few training steps
        if hasattr(module, "offset"):
            torch.nn.init.normal_(module.offset.weight, std=0.01)
    base = _median_seconds(_model_step(plain, images), args.repeats)
    ours = _median_seconds(_model_step(dcn, images), args.repeats)
    with mock.patch.object(deform, "deform_conv2d", torchvision_deform_conv2d):
        theirs = _median_seconds(_model_step(dcn, images), args.repeats)
    print("\nRetinaFace mobilenet0.25 training step (forward + backward), 8 scenes of 256²:")
    print(f"  plain SSH context          {base * 1e3:8.0f} ms  (1.00x)")
    print(f"  DCN, torchvision's kernel  {theirs * 1e3:8.0f} ms  ({theirs / base:.2f}x)")
    print(f"  DCN, arclab grid_sample    {ours * 1e3:8.0f} ms  ({ours / base:.2f}x)")


if __name__ == "__main__":
    main()
