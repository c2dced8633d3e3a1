"""arclab: ArcFace, its margin family and RetinaFace, as tested code behind reproducible notebooks.

The package is the tested core of the notebooks in ``notebooks/``; each public function's
docstring says which notebook teaches it.
"""

from __future__ import annotations

import os
import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily so that the notebook runner's CLI starts fast
    import torch

__version__ = "0.1.0"
__all__ = ["__version__", "get_device", "seed_everything"]


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    Args:
        prefer: force a device ("cpu", "cuda", "cuda:1", "mps"); ``None`` picks automatically.
            The environment variable ``ARCLAB_DEVICE`` is used when ``prefer`` is ``None``.

    Raises:
        ValueError: ``prefer`` names a device type torch does not know or that is not available.

    Example:
        >>> get_device("cpu").type
        'cpu'

    Taught in: notebooks/00_tour.ipynb
    """
    import torch

    prefer = prefer or os.environ.get("ARCLAB_DEVICE") or None
    if prefer is not None:
        try:
            device = torch.device(prefer)
        except RuntimeError as err:
            raise ValueError(
                f"prefer must be a device such as 'cpu' or 'cuda:0', got {prefer!r}") from err
        available = {
            "cpu": True,
            "cuda": torch.cuda.is_available(),
            "mps": torch.backends.mps.is_available(),
        }
        if not available.get(device.type, False):
            raise ValueError(f"prefer={prefer!r} is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (all devices) so a run is repeatable.

    Args:
        seed: a non-negative integer below 2**32.
        deterministic: also ask torch for deterministic algorithms where they exist
            (``warn_only``, so an op without one warns instead of failing).

    Raises:
        ValueError: ``seed`` is not an integer in [0, 2**32).

    Example:
        >>> import torch
        >>> seed_everything(0); a = torch.rand(2)
        >>> seed_everything(0); bool((a == torch.rand(2)).all())
        True

    Taught in: notebooks/00_tour.ipynb
    """
    import numpy as np
    import torch

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA and MPS generators too
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
