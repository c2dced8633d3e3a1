"""The notebooks' experiments, composed from the building blocks (losses, models, train, data,
evaluation, detection): each module runs one study end to end.

- :mod:`~arclab.experiments.toy`: 2-D and low-dimensional toy data and tiny networks, to see
  softmax, NormFace and ArcFace geometry by eye (notebooks 00, 01);
- :mod:`~arclab.experiments.ablations`: the margin ablation and the sub-center table, one run
  per method and seed, scored the same way (notebooks 05, 06);
- :mod:`~arclab.experiments.pipeline`: detect → landmarks → align → embed, the weaker crops it
  is compared with, and the demo's compare / enroll / search (notebooks 12, 14);
- :mod:`~arclab.experiments.inversion`: faces from a model's embedding and BatchNorm
  statistics (notebook 13), and :mod:`~arclab.experiments.inversion_judge`: an independent
  model's verdict on them, with the prior's weight chosen on held-out identities.

Import the submodules; this package imports nothing itself.

Taught in: notebooks/05_margin_ablation.ipynb
"""
