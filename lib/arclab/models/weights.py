"""Reading recognition weights from outside: insightface's arcface_torch ``model.pt`` (a bare
backbone state dict), a DataParallel-prefixed one, a ``{"state_dict": ...}`` wrapper, or an
arclab training checkpoint (``{"model": ..., "config": ...}``).

Taught in: notebooks/14_demo.ipynb
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["load_backbone_weights", "load_strict"]


def load_backbone_weights(model: nn.Module, source: str | Path | Mapping) -> nn.Module:
    """Load weights into ``model`` (e.g. ``get_model("r50")``) strictly.

    A file is treated as hostile: ``torch.load(weights_only=True)`` refuses anything but
    tensors and plain containers. Accepted layouts: a state dict whose names are
    :mod:`arclab.models.iresnet`'s (the same as arcface_torch's), optionally with a
    ``module.`` prefix, wrapped as ``{"state_dict": ...}``, or an arclab checkpoint's
    ``{"model": ...}``.

    Raises:
        ValueError: unreadable file, not a mapping of names to tensors, a tensor with NaN or
            inf values (the file and the first such tensor named), or keys / shapes that
            differ from the model's (all listed, with counts).

    Example:
        >>> from arclab.models import get_model
        >>> net = get_model("r18", embedding_size=8, input_size=32)
        >>> _ = load_backbone_weights(net, {"module." + k: v for k, v in
        ...                                 net.state_dict().items()})
    """
    return load_strict(model, source, wrappers=("state_dict", "model"),
                       hint=" (check the backbone name, embedding_size and input_size)")


def _first_non_finite(state: Mapping[str, Tensor]) -> tuple[str, int] | None:
    """(name, count) of the first floating-point tensor, in the state's order, holding NaN or
    inf values, or None."""
    for name, value in state.items():
        if (value.is_floating_point() or value.is_complex()) and value.numel():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                return name, bad
    return None


def load_strict(model: nn.Module, source: str | Path | Mapping, *,
                wrappers: tuple[str, ...] = ("state_dict",), hint: str = "") -> nn.Module:
    """Read ``source`` (a path, read with ``torch.load(weights_only=True)``, or a mapping),
    unwrap the first of ``wrappers`` it holds, strip ``module.`` prefixes and load it into
    ``model`` strictly; every missing, unexpected or wrong-shape key is named in the
    ValueError (``hint`` is appended to that message). Returns ``model``, which is left
    untouched when anything is refused.

    Raises:
        ValueError: ``source`` unreadable or not a mapping of names to tensors; a tensor with
            NaN or inf values (the file and the first such tensor, in the file's order, named:
            such weights would load and then detect or embed nothing); keys or shapes that
            differ from the model's.

    Example:
        >>> net = nn.Linear(2, 1)
        >>> _ = load_strict(net, {"module.weight": torch.ones(1, 2), "bias": torch.zeros(1)})
        >>> net.weight.tolist()
        [[1.0, 1.0]]
    """
    where = "the given state dict" if isinstance(source, Mapping) else f"{str(source)!r}"
    if isinstance(source, Mapping):
        state = source
    else:
        try:
            state = torch.load(Path(source), map_location="cpu", weights_only=True)
        except Exception as err:  # a hostile file may raise anything while being parsed
            raise ValueError(f"source {str(source)!r} could not be read as a weights-only "
                             f"torch file: {err}") from err
    for wrapper in wrappers:
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError("source must hold a state dict (a mapping of names to tensors), got "
                         f"{type(state).__name__}")
    state = OrderedDict((k.removeprefix("module."), v) for k, v in state.items())
    bad = _first_non_finite(state)
    if bad is not None:
        raise ValueError(f"weights in {where} must be finite: tensor {bad[0]!r} holds {bad[1]} "
                         f"NaN or inf value(s) (a damaged or diverged file)")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
                   for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        def listed(names: list[str]) -> str:
            return f"{names[:10]}" + (f" ... ({len(names)} in all)" if len(names) > 10 else "")

        raise ValueError(f"weights do not fit this {type(model).__name__}: missing "
                         f"{listed(missing)}, unexpected {listed(unexpected)}, wrong shapes "
                         f"{listed(wrong)}{hint}")
    model.load_state_dict(state, strict=True)
    return model
