"""RetinaFace detection: priors, box/landmark coding, matching, the multitask loss, the
network, post-processing, WIDER-style evaluation, and training on SynthFaces scenes.

WIDER FACE AP comes in two modes, named apart: :mod:`~arclab.detection.wider`
(``wider_official_ap``: the official script's numbers from its ``.mat`` ground truth and
prediction ``.txt`` files) and :mod:`~arclab.detection.metrics` (``average_precision``:
arclab's continuous AP, on SynthFaces scenes); the wider module's docstring lists how they
differ.

Import the submodules (``from arclab.detection.priors import priors``); this package imports
nothing itself, so ``import arclab`` stays light.

Taught in: notebooks/10_retinaface.ipynb
"""
