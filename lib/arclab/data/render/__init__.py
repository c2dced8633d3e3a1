"""The SynthFaces renderer: a textured head ellipsoid, ray-cast under pose, shaded, composited
on a cluttered background, then blurred, block-quantised and noised. Batched torch ops only,
so it is fast on a batch and differentiable with respect to the identity/nuisance tensors.

Coordinates: the *face plane* has x to the right, y down, in units of about one head half-width
(eyes at y ≈ −0.16, mouth at y ≈ 0.42). A per-image affine ``face_to_px`` (B, 2, 3) maps face
plane to output pixels; rendering evaluates the scene at every output pixel's preimage, so an
aligned crop is rendered directly, without resampling.

The package, by idea:

- :mod:`~arclab.data.render.engine`: ``render`` and the choice between its two engines;
- :mod:`~arclab.data.render.head`: pose, landmarks, projection, and the per-image
  coefficients of the per-pixel maps (ray cast, shading, silhouettes);
- :mod:`~arclab.data.render.regions`: where the small features sit, their boxes and
  windows;
- :mod:`~arclab.data.render.colour`: palette, colours under the light, the background;
- :mod:`~arclab.data.render.paint`: the torch engine's texture and occluders;
- :mod:`~arclab.data.render.post`: blur, JPEG (:mod:`~arclab.data.render.jpeg`) and noise;
- :mod:`~arclab.data.render.kernel`: the compiled per-pixel scene (numba), with its blur
  and noise in :mod:`~arclab.data.render.kernel_post`.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

from arclab.data.render.colour import background
from arclab.data.render.engine import render
from arclab.data.render.head import landmarks_3d, project, rotation

__all__ = ["background", "landmarks_3d", "project", "render", "rotation"]
