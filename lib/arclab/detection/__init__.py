"""RetinaFace detection: priors, box/landmark coding, matching, the multitask loss, the
network, post-processing, WIDER-style evaluation, and training on SynthFaces scenes.

Import the submodules (``from arclab.detection.priors import priors``); this package imports
nothing itself, so ``import arclab`` stays light.

Taught in: notebooks/10_retinaface.ipynb
"""
