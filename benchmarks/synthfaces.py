"""SynthFaces throughput: aligned face crops rendered per second, and the cache read rate.

Prints images/s for batch rendering (aligned, default 112×112) and for reading the same
images back from the on-disk cache through FaceDataset + DataLoader. As a reference measured
in the same run it also prints the time of one elementwise pass (``x + 1``) over the same
image batch (into a preallocated output), so the renderer's cost reads as "equivalent
elementwise passes" on any machine.
Target (issue 5): >= 1,000 aligned 112×112 images/s on 2 CPU cores. Met: render version 6
renders through the compiled per-pixel kernel (:mod:`arclab.data.render.kernel`, numba)
whenever no gradient is needed. Runs of this script on 2026-12-03 (best of 3 each, a shared
2-core machine whose load drifts):

- before the post-processing rework (commit f150e95): 856, 996, 1,163 (session 12), 1,186,
  1,286, 1,323 images/s;
- after it (blur and noise inside the kernel's threads, JPEG in small groups, nuisance draws'
  arithmetic on whole columns): 1,239, 1,269, 1,325, 1,468, and with JPEG in groups 1,321,
  1,746 images/s; the torch engine gave 481-680 in the same runs (the kernel 1.9-3.6×
  faster).

The torch engine (the differentiable one, 110-odd elementwise passes per image) is timed on
the same items as a reference in the same run (``--torch-n``, 0 to skip), so the kernel's
speed-up reads off one run however loaded the machine is; ``render_ab.py`` pairs two
revisions of the renderer batch by batch (the rework: time ratio 0.787 against f150e95).
Where the time goes now (kernel engine, 2 threads, per 512 images, before the JPEG grouping):
scene + blur + noise 0.21 s, JPEG (torch, 30 % of images) 0.08 s, nuisance draws (a numpy
generator per image) 0.027 s, background 0.019 s, face boxes 0.017 s.

How version 6 got there (2-core development machine, best of 3, host load varies):

- torch engine (version 5): 530-600 images/s; profile without a dominant op (ray cast,
  shading and texture maps, the background's bilinear upsample, blur, JPEG, about 15 % of
  per-image bookkeeping on tiny tensors). ``torch.compile`` of it: 320 s to compile, +11 %,
  pixels that differ from eager; not adopted.
- scene kernel, first version: no faster than torch (150 ns per pixel) because helpers that
  took the per-image parameter array inside the pixel loop cost a reference count update per
  call; with every per-image value unpacked into locals, 57-65 ns per pixel on one thread.
- compiled blur (inner loops over 1-D rows, which LLVM vectorises) and noise + clamp in one
  pass; JPEG stays the torch function. Post then cost about as much as the scene. Run image
  by image right after the scene, in the thread that drew it (the image still in cache):
  render time ratio 0.89 against separate passes per chunk, 0.79 with JPEG in groups of
  about 10 images (``render_ab.py --base f150e95``).
- skipping the background and hair where the head covers a pixel fully (lerp to the face at
  weight 1 is the face exactly).
- paired A/B against version 5 (``render_ab.py``): time ratio 0.458 (quartiles 0.43-0.53).

The notebooks train at 32 px; that rate is printed too (``--small``).

Rendering is timed ``--repeats`` times and the best pass is reported: on a shared machine the
other passes mostly measure the neighbours. ``--threads`` sets torch's intra-op threads (on a
loaded 2-core machine, 1 thread is often faster than 2).

The reference pass writes into a preallocated tensor (``torch.add(x, 1, out=y)``). Until
2026-12-02 it was ``x * 2 + 1``, two passes whose fresh 38 MB results (256 × 3 × 112² floats,
above glibc's largest mmap threshold) were page-faulted in on every call: 139 µs per image,
against about 15 µs per pass without the faults, so rendering read as 12 passes when it is
about 110. The renderer works on chunks of about 6 MB, which glibc keeps in its heap; the
minor page faults it takes per image are printed too (keeping freed memory with
``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` removed most of them without changing
the render rate: 595 vs 600 images/s).

    python benchmarks/synthfaces.py [--n 2048] [--batch 256] [--size 112] [--repeats 3]
                                    [--threads N] [--torch-n 512] [--small 32]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from arclab.data import cache, splits
from arclab.data.params import SynthConfig
from arclab.data.synth import render_faces


def _best_render_seconds(cfg: SynthConfig, items: dict, size: int, batch: int,
                         repeats: int, engine: str = "auto") -> tuple[float, int]:
    """Seconds of the fastest of ``repeats`` passes rendering all ``items`` at ``size`` px in
    batches of ``batch``, and the minor page faults of all passes (after a small warm-up
    render, which is not counted)."""
    render_faces(cfg, items["identity"][:8], items["index"][:8], size=size, engine=engine)
    best = float("inf")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for s in range(0, len(items["identity"]), batch):
            render_faces(cfg, items["identity"][s:s + batch], items["index"][s:s + batch],
                         size=size, engine=engine)
        best = min(best, time.perf_counter() - start)
    return best, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2048, help="images to render")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many passes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--torch-n", type=int, default=512,
                        help="also time the torch engine on this many of the images (0: skip)")
    parser.add_argument("--small", type=int, default=32,
                        help="also time this size (the notebooks' training crops; 0: skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SynthConfig()
    items = splits.training_set(cfg, args.n // 8, 8)["items"]
    render_s, faults = _best_render_seconds(cfg, items, args.size, args.batch, args.repeats)
    faults /= max(1, args.repeats) * args.n
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = torch.empty_like(x)
    torch.add(x, 1.0, out=y)
    start = time.perf_counter()
    for _ in range(20):
        torch.add(x, 1.0, out=y)
    pass_s = (time.perf_counter() - start) / 20 * (args.n / args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        out = cache.cached_render(cfg, items, size=args.size, directory=tmp, progress=False)
        loader = DataLoader(cache.FaceDataset(out["images"], items["identity"], flip=True),
                            batch_size=args.batch, num_workers=0)
        start = time.perf_counter()
        n_read = sum(len(batch) for batch, _ in loader)
        read_s = time.perf_counter() - start
    print(f"threads={torch.get_num_threads()} n={args.n} batch={args.batch} size={args.size}")
    print(f"render (aligned):  {args.n / render_s:8.0f} images/s   (target >= 1000; best of "
          f"{max(1, args.repeats)}; compiled kernel)")
    if args.torch_n:
        part = {k: items[k][:args.torch_n] for k in ("identity", "index")}
        torch_s, _ = _best_render_seconds(cfg, part, args.size, args.batch, args.repeats,
                                          engine="torch")
        torch_rate = len(part["identity"]) / torch_s
        print(f"torch engine:      {torch_rate:8.0f} images/s   (differentiable; the kernel is "
              f"{args.n / render_s / torch_rate:.2f}x faster in this run)")
    print(f"page faults:       {faults:8.1f} per image (minor; see the module docstring)")
    print(f"reference pass:    one elementwise pass over the batch = {pass_s / args.n * 1e6:.1f}"
          f" us/image; rendering costs {render_s / pass_s:.0f} such passes")
    print(f"cache read:        {n_read / read_s:8.0f} images/s (memmap -> FaceDataset -> "
          "DataLoader, flip on)")
    if args.small:
        small_s, _ = _best_render_seconds(cfg, items, args.small, args.batch, args.repeats)
        print(f"render at {args.small} px:  {args.n / small_s:8.0f} images/s   "
              f"({render_s / small_s:.1f}x the {args.size} px rate; the notebooks train at 32 px)")


if __name__ == "__main__":
    main()
