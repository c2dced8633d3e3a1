"""The validation a spec's ``validation`` section names: its entries checked (a SynthFaces
protocol with its arguments, or a ``.bin`` file), and the validator that measures 10-fold
verification accuracy on them during training.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from arclab.data.cache import render_pairs
from arclab.data.formats import load_bin
from arclab.data.splits import PROTOCOLS, make_protocol
from arclab.evaluation import verification_accuracy_10fold
from arclab.models import embed_images
from arclab.train.sources import synth_config

__all__ = ["build_validator", "check_validation"]


def check_validation(validation: dict) -> None:
    """Refuse a ``validation`` entry that is not a mapping, names no SynthFaces protocol
    without a ``bin`` file, or gives a ``bin`` file other keys."""
    for name, entry in validation.items():
        if not isinstance(entry, dict):
            raise ValueError(f"validation.{name} must be a mapping, got {entry!r}")
        if "bin" in entry:
            if set(entry) != {"bin"}:
                raise ValueError(f"validation.{name} with 'bin' takes no other keys, got "
                                 f"{sorted(entry)}")
        elif name not in PROTOCOLS:
            raise ValueError(f"validation.{name} must be a SynthFaces protocol "
                             f"{sorted(PROTOCOLS)} or have a 'bin' file")


def build_validator(validation: dict, data: dict, size: int, *, batch_size: int = 256,
                    progress: bool = False) -> Callable[[nn.Module], dict[str, float]] | None:
    """``validate(model) -> {name: 10-fold accuracy}`` over the spec's validation sets
    (rendered or read once, here), with the flip test; None if there are none."""
    if not validation:
        return None
    sets = {}
    for name, entry in validation.items():
        if "bin" in entry:
            images, issame = load_bin(entry["bin"], image_size=size)
            sets[name] = (images[0::2], images[1::2], issame)
        else:
            pairs = make_protocol(name, synth_config(data), **entry)
            left, right = render_pairs(pairs, size=size, progress=progress)
            sets[name] = (left, right, pairs["issame"])

    def validate(model: nn.Module) -> dict[str, float]:
        out = {}
        for name, (left, right, issame) in sets.items():
            emb = [embed_images(model, side, batch_size=batch_size) for side in (left, right)]
            out[name] = verification_accuracy_10fold(emb[0], emb[1], issame)["mean"]
        return out

    return validate
