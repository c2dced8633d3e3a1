"""Data: the SynthFaces generator and the readers of real face-data formats.

SynthFaces (notebook 03): procedural faces with known identities, exact landmarks and
nuisances.

- :mod:`~arclab.data.params`: ``SynthConfig`` and the identity / nuisance draws;
- :mod:`~arclab.data.render`: the renderer (a package: head geometry, feature regions, colour
  and light, painting, post-processing and JPEG, engine choice, the compiled kernel);
- :mod:`~arclab.data.synth`: aligned crops or whole images with landmarks and boxes;
- :mod:`~arclab.data.scenes`: many faces in one picture, for detection;
- :mod:`~arclab.data.splits`: training sets and verification pair lists over disjoint
  identities, and the 10-fold split they share with the evaluator;
- :mod:`~arclab.data.cache`: rendered images as uint8 ``.npy`` files keyed by their parameters;
- :mod:`~arclab.data.align`: five-point similarity alignment to the ArcFace template;
- :mod:`~arclab.data.render.jpeg`: the differentiable JPEG the renderer degrades images with.

Real formats (``data/README.md``): :mod:`~arclab.data.recordio` (MXNet ``train.rec``) and
:mod:`~arclab.data.formats` (verification ``.bin``, image folders, WIDER FACE labels);
:mod:`~arclab.data.real_sets` turns a notebook's ``train_data`` / ``eval_data`` path into the
spec sections that train and validate on them.

Taught in: notebooks/03_synthfaces.ipynb
"""
