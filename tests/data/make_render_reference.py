"""Write ``render_v<RENDER_VERSION>.npz``: the pixels that ``test_pixels_match_render_version``
holds the renderer to. Run it (from the repository root) only together with a
``RENDER_VERSION`` bump, after checking that the pixel change is meant, and delete the old file:

    python tests/data/make_render_reference.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arclab.data.cache import RENDER_VERSION, render_items
from arclab.data.params import SynthConfig

# aligned crops with every nuisance at its default rate, and unaligned images in which every
# picture has an occluder, half are JPEG-compressed and blur reaches 2.4 px
CASES = {"aligned": (SynthConfig(seed=11), 32, True),
         "unaligned": (SynthConfig(seed=12, occlusion_rate=1.0, jpeg_rate=0.5, blur_px=2.4),
                       40, False)}


def render_reference() -> dict[str, np.ndarray]:
    """uint8 (N, H, W, 3) images per case, 8 identities × 2 pictures each."""
    items = {"identity": np.repeat(np.arange(8), 2), "index": np.tile(np.arange(2), 8)}
    return {name: render_items(cfg, items, size=size, aligned=aligned, progress=False)["images"]
            for name, (cfg, size, aligned) in CASES.items()}


if __name__ == "__main__":
    path = Path(__file__).with_name(f"render_v{RENDER_VERSION}.npz")
    np.savez_compressed(path, **render_reference())
    print(f"wrote {path} ({path.stat().st_size} bytes)")
