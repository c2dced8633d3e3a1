"""Training: the config, the resumable (and torchrun-distributed) loop, data specs and runs
cached by their spec.

- :mod:`~arclab.train.config`: ``TrainConfig``, the learning-rate schedule, loss names;
- :mod:`~arclab.train.loop`: :func:`train` and one optimisation step;
- :mod:`~arclab.train.state`: building the model, head and optimizers, checkpoints, resume;
- :mod:`~arclab.train.sources`: data sets from a spec's ``data`` section (SynthFaces, an image
  folder, a ``train.rec``);
- :mod:`~arclab.train.batches`: each step's batch, and the DataLoader (worker processes) that
  reads an image folder or a ``train.rec``;
- :mod:`~arclab.train.validation`: validators from a spec's ``validation`` section;
- :mod:`~arclab.train.spec`: loading and checking a spec, its run folder, running it (runs
  are cached by their spec).

    python -m arclab.train CONFIG.yaml [--out DIR]          # one process
    torchrun --nproc-per-node 2 -m arclab.train CONFIG.yaml  # DDP, gloo on CPU, nccl on GPU

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from arclab.train.config import AMP_MODES, TrainConfig, learning_rate, load_config
from arclab.train.loop import amp_dtype, step_batch, train
from arclab.train.spec import load_spec, run_spec, tutorial_spec
from arclab.train.validation import build_validator

__all__ = ["AMP_MODES", "TrainConfig", "amp_dtype", "build_validator", "learning_rate",
           "load_config", "load_spec", "run_spec", "step_batch", "train", "tutorial_spec"]
