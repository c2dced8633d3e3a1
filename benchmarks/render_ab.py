"""Paired A/B timing of the SynthFaces renderer: this tree's renderer against another
revision's, on the same batch, alternating, so that a noisy machine's slow spells hit both.

On the 2-core machines this project runs on, best-of-N rates from separate runs differ by
20–30 % for the same code (the host's load drifts within seconds); alternating the two
renderers batch by batch and taking the median of the per-pair time ratios resolves about
±5 %. Before believing a speed-up of the renderer, check it here. Also prints whether the two
give the same bytes (a speed change that moves pixels needs a ``RENDER_VERSION`` bump).

    python benchmarks/render_ab.py [--base HEAD] [--pairs 20] [--n 256] [--size 112]

Prints B/A = (this tree's time) / (base's time): below 1 means this tree is faster.

Each renderer runs in its own worker process, this file with ``--worker``: A imports
``arclab`` from the base revision's whole ``lib/`` (``git archive``, so any layout works: a
flat ``render.py`` or the ``render/`` package), B from this tree's. Both import
``from arclab.data.render import render``. The driver draws the batch once with this tree's
code and hands it over in a file; then, line by line on stdin, it tells one worker at a time
to ``render`` (the answer: that render's seconds), and at the end to ``save`` its last images
for the byte comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision of the A renderer")
    parser.add_argument("--pairs", type=int, default=20, help="timed A/B pairs")
    parser.add_argument("--n", type=int, default=256, help="images per batch")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--worker", nargs=3, metavar=("INPUTS", "OUTPUT", "THREADS"),
                        help=argparse.SUPPRESS)  # internal: run as a worker (see the docstring)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _extract_lib(args.base, tmp / "base")
        inputs = tmp / "inputs.pt"
        n = _save_inputs(inputs, args.n, args.size)
        workers = []
        try:
            workers.append(_Worker(tmp / "base" / "lib", inputs, tmp / "a.pt", threads))
            workers.append(_Worker(ROOT / "lib", inputs, tmp / "b.pt", threads))
            base, here = workers
            base.render()  # warm-up (and numba's compilation)
            here.render()
            ratios, a_s, b_s = [], [], []
            for k in range(args.pairs):
                if k % 2:
                    ta, tb = base.render(), here.render()
                else:
                    tb, ta = here.render(), base.render()
                a_s.append(ta), b_s.append(tb), ratios.append(tb / ta)
            a_img, b_img = base.save(), here.save()
        finally:
            for worker in workers:
                worker.close()
    q = statistics.quantiles(ratios, n=4)
    print(f"A = {args.base}: {n / min(a_s):6.0f} images/s (best)   "
          f"B = this tree: {n / min(b_s):6.0f} images/s (best)")
    print(f"B/A time: median {statistics.median(ratios):.3f}, quartiles {q[0]:.3f}–{q[2]:.3f} "
          f"over {args.pairs} pairs of {n} images at {args.size} px, {threads} threads")
    same = torch.equal(a_img, b_img)
    print("pixels: identical" if same else
          f"pixels: differ (max {float((a_img - b_img).abs().max()):.2e}; "
          "bump RENDER_VERSION if this is meant)")


def _extract_lib(revision: str, into: Path) -> None:
    """``git archive <revision> lib | tar -x -C <into>``."""
    into.mkdir()
    archive = subprocess.Popen(["git", "archive", revision, "lib"], cwd=ROOT,
                               stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() or tar.returncode:
        raise SystemExit(f"could not extract lib/ of revision {revision!r}")


def _save_inputs(path: Path, n: int, size: int) -> int:
    """Draw the batch with this tree's code and save it for the workers; returns its size."""
    # imported here, not at the top: the workers run this file with the base revision's
    # arclab, whose modules may have other names (the flat layout before the regrouping)
    from arclab.data import splits, synth
    from arclab.data.align import template, umeyama
    from arclab.data.params import SynthConfig, identity_params, nuisance_params

    cfg = SynthConfig()
    items = splits.training_set(cfg, max(1, n // 8), 8)["items"]
    ids, idx = items["identity"][:n], items["index"][:n]
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, idx)
    plane = synth.plane_landmarks(ident, nuis).double()
    f2p = umeyama(plane, template(size).expand(len(ids), 5, 2)).float()
    torch.save({"ident": ident, "nuis": nuis, "face_to_px": f2p, "size": size}, path)
    return len(ids)


class _Worker:
    """A worker process rendering with the ``arclab`` under ``lib``."""

    def __init__(self, lib: Path, inputs: Path, output: Path, threads: int):
        self.lib, self.output = lib.resolve(), output
        env = {**os.environ, "PYTHONPATH": str(self.lib)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(inputs), str(output), str(threads)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        origin = Path(self._answer())
        if self.lib not in origin.parents:
            self.close()
            raise SystemExit(f"the worker for {self.lib} imported arclab from {origin}")

    def _answer(self, command: str | None = None) -> str:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the worker for {self.lib} ended (exit status {self.proc.wait()})")
        return line.strip()

    def render(self) -> float:
        """Render the batch once; the seconds it took."""
        return float(self._answer("render"))

    def save(self) -> torch.Tensor:
        """The images of the last render."""
        self._answer("save")
        return torch.load(self.output)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


def _worker(inputs: str, output: str, threads: str) -> None:
    """Serve ``render`` / ``save`` lines from stdin, one answer line each on stdout, with the
    driver's number of torch threads."""
    out, sys.stdout = sys.stdout, sys.stderr  # stdout carries the answers only
    torch.set_num_threads(int(threads))
    # imported here: arclab comes from PYTHONPATH, this tree's lib or the base revision's
    import arclab
    from arclab.data.render import render

    batch = torch.load(inputs)
    print(arclab.__file__, file=out, flush=True)
    img = None
    for line in iter(sys.stdin.readline, ""):
        if line.strip() == "render":
            start = time.perf_counter()
            img = render(batch["ident"], batch["nuis"], batch["face_to_px"], batch["size"])[0]
            print(repr(time.perf_counter() - start), file=out, flush=True)
        elif line.strip() == "save":
            torch.save(img, output)
            print("saved", file=out, flush=True)


if __name__ == "__main__":
    main()
