"""The recognition losses: the margin family, the heads that produce its cosines, and the
losses the ablations compare them with.

- :mod:`~arclab.losses.margins`: the unified margin s·(cos(m1·θ + m2) − m3), its presets
  (NormFace, SphereFace, ArcFace, CosFace, CM1, CM2) and ``MarginLoss`` (notebooks 01, 02);
- :mod:`~arclab.losses.variants`: margins outside that form, SphereFace's ψ(θ) and Li-ArcFace
  (notebook 02);
- :mod:`~arclab.losses.geometry`: what a margin does to angles: decision boundaries, gaps,
  gradients against θ (notebook 02);
- :mod:`~arclab.losses.heads`: cosine classifiers, one centre or K sub-centres per class
  (notebooks 01, 06);
- :mod:`~arclab.losses.subcenter`: sub-center ArcFace's analysis: dominant sub-centres, angles
  to them, which samples to drop (notebook 06);
- :mod:`~arclab.losses.triplet`: batch-hard triplet loss, the slides' starting point (notebook 05);
- :mod:`~arclab.losses.distill`: teacher-to-student distillation for the light track
  (notebook 09).

Import the submodules; this package imports nothing itself.

Taught in: notebooks/02_margin_zoo.ipynb
"""
