"""Training settings as data: the config dataclass, YAML loading, the learning-rate schedule.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from arclab.losses.margins import PRESETS
from arclab.models import MODEL_NAMES

__all__ = ["AMP_MODES", "LOSSES", "TrainConfig", "learning_rate", "load_config", "weights_key"]

LOSSES = (*PRESETS, "triplet")
"""Every value of ``TrainConfig.margin``: the margin presets and the batch-hard triplet loss."""

AMP_MODES = ("auto", "off", "bf16", "fp16")
"""``auto``: bf16 (or fp16 with loss scaling) on CUDA, off elsewhere; ``bf16`` also runs on
CPU; ``fp16`` needs CUDA (it needs the loss scaler)."""


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the ArcFace recipe (s=64, m=0.5, momentum 0.9,
    weight decay 5e-4, step decay ×0.1) at laptop scale.

    ``batch_size`` is the global batch: under ``torchrun`` each of W processes takes
    ``batch_size / W`` of it. With ``fc="sharded"`` the classifier's classes are split over the W
    processes (:class:`arclab.parallel.ShardedMarginFC`, only the backbone is in DDP) and
    ``sample_rate < 1`` trains with Partial FC. Step counts (``warmup_steps``, ``checkpoint_every``,
    ``validate_every``) are optimizer steps; ``milestones`` are fractions of all steps.

    Raises:
        ValueError: any key ``__post_init__`` refuses (an unknown name or mode, a count, rate
            or milestone out of range or of the wrong type), naming it.
    """

    backbone: str = "r18"
    embedding_size: int = 512
    input_size: int = 112
    margin: str = "arcface"          # a key of arclab.losses.margins.PRESETS, or "triplet"
    s: float = 64.0
    gradient: str = "exact"          # exact | straight_through (the margin's backward)
    overflow: str = "monotonic"      # monotonic | raw | easy (target logit past pi)
    subcenters: int = 1              # K sub-centers per class (sub-center ArcFace); 1: plain
    fc: str = "dense"                # dense (in DDP) | sharded (arclab.parallel.ShardedMarginFC)
    sample_rate: float = 1.0         # Partial FC rate r in (0, 1]; r < 1 needs fc "sharded"
    triplet_margin: float = 0.2      # for margin "triplet": hinge margin on chord distance
    images_per_identity: int = 4     # for margin "triplet": K of the P x K batches
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 1
    schedule: str = "step"           # step | poly
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of all steps, for "step"
    warmup_steps: int = 0
    grad_clip: float = 0.0           # max gradient norm; 0: no clipping
    amp: str = "auto"                # one of AMP_MODES
    channels_last: bool = False      # NHWC convolutions (faster for depthwise nets on CPU)
    checkpoint_every: int = 100      # steps
    validate_every: int = 0          # steps; 0: validate only at the end
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse every out-of-range or mistyped key, naming it.

        Raises:
            ValueError: an unknown backbone, margin or mode; a count that is not a positive
                integer; ``input_size`` under 16 px (the backbones' four stride-2 stages);
                a rate, step size or milestone out of range; a triplet batch that is not
                P x K.
        """
        if not isinstance(self.backbone, str) or self.backbone not in MODEL_NAMES:
            raise ValueError(f"backbone must be one of {list(MODEL_NAMES)}, got "
                             f"{self.backbone!r}")
        if self.margin not in LOSSES:
            raise ValueError(f"margin must be one of {list(LOSSES)}, got {self.margin!r}")
        if self.gradient not in ("exact", "straight_through"):
            raise ValueError(f"gradient must be 'exact' or 'straight_through', got "
                             f"{self.gradient!r}")
        if self.overflow not in ("monotonic", "raw", "easy"):
            raise ValueError(f"overflow must be 'monotonic', 'raw' or 'easy', got "
                             f"{self.overflow!r}")
        if self.schedule not in ("step", "poly"):
            raise ValueError(f"schedule must be 'step' or 'poly', got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {list(AMP_MODES)}, got {self.amp!r}")
        if not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be true or false, got {self.channels_last!r}")
        for key in ("embedding_size", "input_size", "batch_size", "epochs",
                    "checkpoint_every", "images_per_identity", "subcenters"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.input_size < 16:
            raise ValueError(f"input_size must be at least 16 pixels (the backbones halve it "
                             f"four times), got {self.input_size}")
        for key in ("warmup_steps", "validate_every", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
        for key in ("s", "lr"):
            if not _number(getattr(self, key)) or getattr(self, key) <= 0:
                raise ValueError(f"{key} must be a finite number > 0, got "
                                 f"{getattr(self, key)!r}")
        for key in ("momentum", "weight_decay", "grad_clip", "triplet_margin"):
            if not _number(getattr(self, key)) or getattr(self, key) < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got "
                                 f"{getattr(self, key)!r}")
        if self.margin == "triplet" and (self.batch_size % self.images_per_identity
                                         or self.batch_size < 2 * self.images_per_identity):
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of "
                             f"images_per_identity ({self.images_per_identity}) with at least "
                             "two identities per batch for margin 'triplet'")
        if self.subcenters > 1 and self.margin in ("softmax", "triplet"):
            raise ValueError(f"subcenters > 1 needs a cosine head; margin {self.margin!r} has "
                             "none")
        if self.fc not in ("dense", "sharded"):
            raise ValueError(f"fc must be 'dense' or 'sharded', got {self.fc!r}")
        if self.fc == "sharded" and self.margin in ("softmax", "triplet"):
            raise ValueError(f"fc 'sharded' needs a cosine margin; margin {self.margin!r} has "
                             "none")
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, (int, float)) \
                or not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be a number in (0, 1], got {self.sample_rate!r}")
        if self.sample_rate < 1 and self.fc != "sharded":
            raise ValueError(f"sample_rate {self.sample_rate} (Partial FC) needs fc 'sharded'")
        if isinstance(self.milestones, list):  # as a checkpoint's to_dict() stores it
            object.__setattr__(self, "milestones", tuple(self.milestones))
        if not isinstance(self.milestones, tuple) \
                or any(not _number(f) or not 0 < f < 1 for f in self.milestones):
            raise ValueError(f"milestones must be fractions in (0, 1), got {self.milestones!r}")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (milestones as a list), as stored in checkpoints."""
        return asdict(self) | {"milestones": list(self.milestones)}


def _number(value) -> bool:
    """A finite int or float, not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) \
        and math.isfinite(value)


_NEUTRAL = {"subcenters": 1, "fc": "dense", "sample_rate": 1.0, "channels_last": False}
"""Keys added after runs were cached, with the value that trains what a config without the
key trained: left out of :func:`weights_key` at that value, so old caches stay valid."""


def weights_key(config: dict) -> dict:
    """The part of a config dict (:meth:`TrainConfig.to_dict`, or one stored in a checkpoint)
    that decides the weights: without ``validate_every`` (validation reads the model, never
    changes it) and without later-added keys at their neutral value.

    Example:
        >>> weights_key(TrainConfig().to_dict()) == weights_key(
        ...     {k: v for k, v in TrainConfig(validate_every=5).to_dict().items()
        ...      if k != "subcenters"})
        True
    """
    return {k: v for k, v in config.items()
            if k != "validate_every" and not (k in _NEUTRAL and v == _NEUTRAL[k])}


def load_config(source: dict | str | Path) -> TrainConfig:
    """A TrainConfig from a dict or a YAML file; unknown keys are refused by name.

    Raises:
        ValueError: not a mapping, a YAML syntax error (with its line), an unknown key, or a
            value :class:`TrainConfig` refuses.
        OSError: ``source`` is a path that cannot be read (the error names it).

    Example:
        >>> load_config({"backbone": "mbf", "milestones": [0.4, 0.8]}).milestones
        (0.4, 0.8)
    """
    if isinstance(source, dict):
        data = source
    else:
        text = Path(source).read_text()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ValueError(f"source {str(source)!r} is not valid YAML{where}: "
                             f"{getattr(err, 'problem', None) or err}") from None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"a training config must be a mapping of keys, got {type(data).__name__}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(data or {}) - known)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; valid keys: {sorted(known)}")
    data = dict(data or {})
    if "milestones" in data:
        if not isinstance(data["milestones"], (list, tuple)):
            raise ValueError("milestones must be a list of fractions in (0, 1), got "
                             f"{data['milestones']!r}")
        data["milestones"] = tuple(data["milestones"])
    return TrainConfig(**data)


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then step decay ×0.1 at each
    milestone or polynomial decay (1 − t)².

    Example:
        >>> cfg = TrainConfig(lr=0.1, warmup_steps=2, milestones=(0.5,))
        >>> [round(learning_rate(cfg, s, 6), 4) for s in range(6)]
        [0.05, 0.1, 0.1, 0.01, 0.01, 0.01]
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "poly":
        t = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
        return cfg.lr * (1 - t) ** 2
    passed = sum(step >= math.floor(f * total_steps) for f in cfg.milestones)
    return cfg.lr * 0.1**passed
