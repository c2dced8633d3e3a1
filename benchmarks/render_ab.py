"""Paired A/B timing of the SynthFaces renderer: this tree's ``render.py`` against another
revision's, on the same batch, alternating, so that a noisy machine's slow spells hit both.

On the 2-core machines this project runs on, best-of-N rates from separate runs differ by
20–30 % for the same code (the host's load drifts within seconds); alternating the two
renderers batch by batch and taking the median of the per-pair time ratios resolves about
±5 %. Before believing a speed-up of the renderer, check it here. Also prints whether the two
give the same bytes (a speed change that moves pixels needs a ``RENDER_VERSION`` bump).

    python benchmarks/render_ab.py [--base HEAD] [--pairs 20] [--n 256] [--size 112]

Prints B/A = (this tree's time) / (base's time): below 1 means this tree is faster.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from arclab.data import splits, synth
from arclab.data.align import template, umeyama
from arclab.data.params import SynthConfig, identity_params, nuisance_params

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision of the A renderer")
    parser.add_argument("--pairs", type=int, default=20, help="timed A/B pairs")
    parser.add_argument("--n", type=int, default=256, help="images per batch")
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    source = subprocess.run(["git", "show", f"{args.base}:lib/arclab/data/render/"],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "render_base.py"
        path.write_text(source)
        base = _load(path, "arclab.data._render_base")
    here = _load(ROOT / "lib" / "arclab" / "data" / "render.py", "arclab.data._render_here")
    cfg = SynthConfig()
    items = splits.training_set(cfg, max(1, args.n // 8), 8)["items"]
    ids, idx = items["identity"][:args.n], items["index"][:args.n]
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, idx)
    plane = synth._plane_landmarks(ident, nuis).double()
    f2p = umeyama(plane, template(args.size).expand(len(ids), 5, 2)).float()

    def timed(module) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        img = module.render(ident, nuis, f2p, args.size)[0]
        return time.perf_counter() - start, img

    (_, a_img), (_, b_img) = timed(base), timed(here)  # warm-up
    ratios, a_s, b_s = [], [], []
    for k in range(args.pairs):
        if k % 2:
            (ta, _), (tb, _) = timed(base), timed(here)
        else:
            (tb, _), (ta, _) = timed(here), timed(base)
        a_s.append(ta), b_s.append(tb), ratios.append(tb / ta)
    q = statistics.quantiles(ratios, n=4)
    n = len(ids)
    print(f"A = {args.base}: {n / min(a_s):6.0f} images/s (best)   "
          f"B = this tree: {n / min(b_s):6.0f} images/s (best)")
    print(f"B/A time: median {statistics.median(ratios):.3f}, quartiles {q[0]:.3f}–{q[2]:.3f} "
          f"over {args.pairs} pairs of {n} images at {args.size} px, "
          f"{torch.get_num_threads()} threads")
    same = torch.equal(a_img, b_img)
    print("pixels: identical" if same else
          f"pixels: differ (max {float((a_img - b_img).abs().max()):.2e}; "
          "bump RENDER_VERSION if this is meant)")


if __name__ == "__main__":
    main()
