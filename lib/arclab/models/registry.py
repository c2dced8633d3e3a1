"""Backbones by name: :data:`MODEL_NAMES`, the published embedding sizes and
:func:`get_model`, the name -> constructor map the training loop and the notebooks use.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import numbers

from torch import nn

from arclab.models.iresnet import IRESNET_LAYERS, iresnet
from arclab.models.mobilefacenet import mobilefacenet, y2
from arclab.models.mobilenet_lfr import mnet_lfr

__all__ = ["DEFAULT_EMBEDDING", "MODEL_NAMES", "get_model"]

MODEL_NAMES: tuple[str, ...] = (*IRESNET_LAYERS, "mbf", "y2", "mnet_lfr")
"""Every name :func:`get_model` accepts."""

DEFAULT_EMBEDDING: dict[str, int] = {"y2": 256, "mnet_lfr": 256}
"""Published embedding sizes that differ from 512, by model name."""


def get_model(name: str, *, embedding_size: int | None = None, input_size: int = 112,
              dropout: float = 0.0) -> nn.Module:
    """A backbone by name: (N, 3, input_size, input_size) -> (N, embedding_size).

    Names: ``r18``, ``r34``, ``r50``, ``r100``, ``r124``, ``r200`` (IResNet); ``mbf``
    (arcface_torch's MobileFaceNet, blocks (1, 4, 6, 2)); ``y2`` (the challenge's light
    baseline, insightface's MXNet fmobilefacenet with blocks (2, 8, 16, 4), 931M FLOPs at 112);
    ``mnet_lfr`` (the challenge paper's Table 3 light MobileNet, 0.85 GFLOPs). ``dropout``
    applies to the IResNets only.

    ``embedding_size`` (D) defaults to the model's published one: 256 for ``y2`` and
    ``mnet_lfr``, 512 otherwise. ``input_size`` (pixels, square) sets the final map: 7×7 at
    112, 4×4 at 56 or 64 (``mnet_lfr``: 4×4 at 112, 2×2 at 56 or 64).

    Raises:
        ValueError: unknown name (the message lists the valid ones), input_size not an
            integer >= 16, embedding_size not an integer >= 1, dropout outside [0, 1).

    Example:
        >>> import torch
        >>> m = get_model("r18", embedding_size=128, input_size=64).eval()
        >>> tuple(m(torch.randn(2, 3, 64, 64)).shape)
        (2, 128)
        >>> get_model("y2").features.layers[2].out_features
        256
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"name must be one of {list(MODEL_NAMES)}, got {name!r}")
    if embedding_size is None:
        embedding_size = DEFAULT_EMBEDDING.get(name, 512)
    if isinstance(input_size, bool) or not isinstance(input_size, numbers.Integral) \
            or input_size < 16:
        raise ValueError(f"input_size must be an integer >= 16 pixels, got {input_size!r}")
    if isinstance(embedding_size, bool) or not isinstance(embedding_size, numbers.Integral) \
            or embedding_size < 1:
        raise ValueError(f"embedding_size must be a positive integer, got {embedding_size!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) \
            or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    input_size, embedding_size, dropout = int(input_size), int(embedding_size), float(dropout)
    sizes = {"embedding_size": embedding_size, "input_size": input_size}
    if name in ("mbf", "y2"):
        return y2(**sizes) if name == "y2" else mobilefacenet(**sizes)
    if name == "mnet_lfr":
        return mnet_lfr(**sizes)
    return iresnet(IRESNET_LAYERS[name], dropout=dropout, **sizes)
