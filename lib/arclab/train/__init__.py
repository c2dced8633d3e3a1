"""Training: the config, the resumable (and torchrun-distributed) loop, data specs and runs
cached by their spec.

    python -m arclab.train CONFIG.yaml [--out DIR]          # one process
    torchrun --nproc-per-node 2 -m arclab.train CONFIG.yaml  # DDP, gloo on CPU, nccl on GPU

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from arclab.train.config import AMP_MODES, TrainConfig, learning_rate, load_config
from arclab.train.loop import amp_dtype, step_batch, train

__all__ = ["AMP_MODES", "TrainConfig", "amp_dtype", "learning_rate", "load_config",
           "step_batch", "train"]
