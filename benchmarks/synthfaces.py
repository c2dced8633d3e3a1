"""SynthFaces throughput: aligned face crops rendered per second, and the cache read rate.

Prints images/s for batch rendering (aligned, default 112×112) and for reading the same
images back from the on-disk cache through FaceDataset + DataLoader. As a reference measured
in the same run it also prints the time of one elementwise pass (``x + 1``) over the same
image batch (into a preallocated output), so the renderer's cost reads as "equivalent
elementwise passes" on any machine.
Target (issue 5): >= 1,000 aligned 112×112 images/s on 2 CPU cores. **Not met**: render
version 5 gives 530–600 images/s on the 2-core development machine (2026-12-02/03), 60 to 140
reference passes per image (below; the reference pass itself moves by 2× between runs).
What was measured on the way:

- Paired A/B (``render_ab.py``): version 5 is 1.58× version 4; in-place ops and the shared
  feature table after it, 0.95–1.00 of before (no gain beyond the noise).
- ``torch.compile`` of the chunk renderer (torch 2.14.1, inductor, 2 cores): 320 s to
  compile (graph breaks at the per-image windows and the numpy hash, a recompile per chunk
  length), then 571 against 514 images/s eager, and pixels that differ from eager (17 % of
  float values, by up to 4e-6). Not adopted.
- The profile of a 256-image batch has no dominant op: the ray-cast, shading and texture
  maps, the background's bilinear upsample (about 7 %), blur, JPEG on 30 % of images, and
  about 15 % of per-image bookkeeping ops on tiny tensors.

Reaching the target needs a fused per-pixel kernel (compiled: numba or C++), a second
implementation beside the differentiable torch one, and a new ``RENDER_VERSION`` with a
rerun of the whole book. The notebooks train at 32 px, where the same renderer is printed
below too (``--small``) and rendering is a small part of every notebook's time.

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
                                    [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import torch
from torch.utils.data import DataLoader

from arclab.data import cache, protocols
from arclab.data.params import SynthConfig
from arclab.data.synth import render_faces


def _best_render_seconds(cfg: SynthConfig, items: dict, size: int, batch: int,
                         repeats: int) -> tuple[float, int]:
    """Seconds of the fastest of ``repeats`` passes rendering all ``items`` at ``size`` px in
    batches of ``batch``, and the minor page faults of all passes (after a small warm-up
    render, which is not counted)."""
    render_faces(cfg, items["identity"][:8], items["index"][:8], size=size)
    best = float("inf")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for s in range(0, len(items["identity"]), batch):
            render_faces(cfg, items["identity"][s:s + batch], items["index"][s:s + batch],
                         size=size)
        best = min(best, time.perf_counter() - start)
    return best, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2048, help="images to render")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many passes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--small", type=int, default=32,
                        help="also time this size (the notebooks' training crops; 0: skip)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SynthConfig()
    items = protocols.training_set(cfg, args.n // 8, 8)["items"]
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
          f"{max(1, args.repeats)})")
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
