"""The validation a spec's ``validation`` section names: its entries checked (a SynthFaces
protocol with its arguments, or a ``.bin`` file), and the validator that measures 10-fold
verification accuracy on them during training.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from arclab.data.cache import render_pairs
from arclab.data.formats import load_bin
from arclab.data.splits import PROTOCOLS, make_protocol
from arclab.evaluation import verification_accuracy_10fold
from arclab.models import embed_images
from arclab.train.sources import readable_file, synth_config

__all__ = ["build_validator", "check_validation"]


def _check_protocol(name: str, entry: dict, data: dict) -> None:
    """A SynthFaces protocol's arguments: known names, values its pair maker accepts (the
    pairs are drawn here, nothing is rendered)."""
    params = list(inspect.signature(PROTOCOLS[name]).parameters.values())[1:]  # after cfg
    known = [p.name for p in params]
    unknown = sorted(set(entry) - set(known))
    if unknown:
        raise ValueError(f"unknown validation.{name} keys {unknown}; valid: {sorted(known)}")
    for p in params:  # the type of each default: int, float, or a tuple of numbers
        if p.name not in entry:
            continue
        value, default = entry[p.name], p.default
        numbers = value if isinstance(default, tuple) and isinstance(value, (list, tuple)) \
            and len(value) == len(default) else [value]
        kinds = (int,) if isinstance(default, int) else (int, float)
        if any(isinstance(v, bool) or not isinstance(v, kinds) for v in numbers) \
                or (isinstance(default, tuple) and numbers == [value]):
            what = f"{len(default)} numbers" if isinstance(default, tuple) else \
                "an integer" if isinstance(default, int) else "a number"
            raise ValueError(f"validation.{name}.{p.name} must be {what}, got {value!r}")
    try:
        make_protocol(name, synth_config(data), **entry)
    except (TypeError, ValueError) as err:
        raise ValueError(f"validation.{name}.{err}" if str(err).split(" ")[0] in known
                         else f"validation.{name}: {err}") from None


def check_validation(validation: dict, data: dict | None = None) -> None:
    """Refuse a spec's ``validation`` section before anything is rendered.

    ``data`` (the checked ``data`` section, for the SynthFaces seed) turns on the check of
    each protocol's argument values.

    Raises:
        ValueError: an entry that is not a mapping; a name that is no SynthFaces protocol
            without a ``bin`` file; a ``bin`` entry with other keys or a missing or unreadable
            file; an unknown protocol argument or a value it refuses. The message names the
            key.
    """
    if not isinstance(validation, dict):
        raise ValueError(f"validation must be a mapping of name: settings, got {validation!r}")
    for name, entry in validation.items():
        if not isinstance(entry, dict):
            raise ValueError(f"validation.{name} must be a mapping, got {entry!r}")
        if "bin" in entry:
            if set(entry) != {"bin"}:
                raise ValueError(f"validation.{name} with 'bin' takes no other keys, got "
                                 f"{sorted(entry)}")
            readable_file(f"validation.{name}.bin", entry["bin"])
        elif name not in PROTOCOLS:
            raise ValueError(f"validation.{name} must be a SynthFaces protocol "
                             f"{sorted(PROTOCOLS)} or have a 'bin' file")
        elif data is not None:
            _check_protocol(name, entry, data)


def build_validator(validation: dict, data: dict, size: int, *, batch_size: int = 256,
                    progress: bool = False) -> Callable[[nn.Module], dict[str, float]] | None:
    """``validate(model) -> {name: 10-fold accuracy}`` over the spec's validation sets
    (rendered or read once, here), with the flip test; None if there are none.

    Raises:
        ValueError: a ``.bin`` that :func:`~arclab.data.formats.load_bin` refuses, or protocol
            settings :func:`~arclab.data.splits.make_protocol` refuses (both are caught by
            :func:`check_validation` first).
    """
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
