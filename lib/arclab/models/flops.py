"""Counting a backbone's cost the way the Lightweight Face Recognition Challenge does.

Two conventions, both reported and named (a popular counter reports multiply-accumulates
and calls them FLOPs):

- ``flops`` (the challenge's): conv (2·Cin·k_h·k_w/groups − 1)·Hout·Wout·Cout, plus
  Hout·Wout·Cout for a bias; fully connected 2·in·out; BN and activations ignored.
- ``macs``: conv Cin·k_h·k_w/groups·Hout·Wout·Cout; fully connected in·out.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import torch
from torch import nn

from arclab.models.registry import get_model

__all__ = ["TRACK_LIMITS", "backbone_costs", "check_track", "count_flops", "track_margins"]

TRACK_LIMITS: dict[str, dict[str, float]] = {
    "light": {"flops": 1e9, "size_mb": 20.0, "embedding_size": 512},
    "large": {"flops": 30e9, "embedding_size": 512},
}
"""The challenge's track limits (seed 001, section 3.3): FLOPs in its convention, model size in
MB of fp32 parameters (1 MB = 10⁶ bytes), feature dimension; both tracks also require float32
(no fp16, int8 or other quantisation). An upper bound is allowed: a model exactly at a limit
fits."""


def count_flops(model: nn.Module, input_size: tuple[int, int, int] = (3, 112, 112)) -> dict:
    """FLOPs (challenge convention), MACs, parameters and fp32 size of one forward pass.

    Args:
        input_size: (C, H, W) of one input image.

    Returns:
        {"flops": int, "macs": int, "params": int, "size_mb": float (params × 4 bytes / 1e6,
        the size the model has in fp32 whatever its dtype), "embedding_size": int,
        "fp32": bool (every floating parameter and buffer is float32)}.

    Raises:
        ValueError: input_size not three integers >= 1.

    Example:
        >>> counts = count_flops(nn.Conv2d(3, 8, 3, padding=1, bias=False), (3, 4, 4))
        >>> counts["flops"], counts["macs"]
        (6784, 3456)
    """
    if len(input_size) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                   for v in input_size):
        raise ValueError(f"input_size must be (C, H, W) positive integers, got {input_size!r}")
    totals = {"flops": 0, "macs": 0}

    def conv_hook(m: nn.Conv2d, _inp, out) -> None:
        kernel = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        outputs = out.shape[1] * out.shape[2] * out.shape[3]
        totals["flops"] += (2 * kernel - 1) * outputs + (outputs if m.bias is not None else 0)
        totals["macs"] += kernel * outputs

    def fc_hook(m: nn.Linear, _inp, _out) -> None:
        totals["flops"] += 2 * m.in_features * m.out_features
        totals["macs"] += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else fc_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            device = next(model.parameters(), torch.zeros(0)).device  # "meta" works: shapes only
            out = model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    fp32 = all(t.dtype == torch.float32 for t in (*model.parameters(), *model.buffers())
               if t.is_floating_point())
    return {**totals, "params": params, "size_mb": params * 4 / 1e6,
            "embedding_size": int(out.shape[-1]), "fp32": fp32}


def track_margins(counts: dict, *, convention: str = "flops") -> dict[str, dict[str, float]]:
    """How far each limit of :data:`TRACK_LIMITS` is from the model: {track: {quantity:
    limit / value}} (≥ 1 fits; ``inf`` for a zero value). ``convention="macs"`` reads the
    compute from ``counts["macs"]`` instead, as a counter that calls MACs "FLOPs" would.

    Raises:
        ValueError: an unknown convention; counts missing a quantity or holding a negative one.

    Example:
        >>> track_margins({"flops": 5e8, "macs": 2.5e8, "size_mb": 40.0,
        ...                "embedding_size": 512})["light"]
        {'flops': 2.0, 'size_mb': 0.5, 'embedding_size': 1.0}
    """
    if convention not in ("flops", "macs"):
        raise ValueError(f"convention must be 'flops' or 'macs', got {convention!r}")
    missing = sorted({convention, "size_mb", "embedding_size"} - set(counts))
    if missing:
        raise ValueError(f"counts must hold {missing} (from count_flops)")
    out = {}
    for track, limits in TRACK_LIMITS.items():
        out[track] = {}
        for key, limit in limits.items():
            value = float(counts[convention if key == "flops" else key])
            if not value >= 0:
                raise ValueError(f"counts[{key!r}] must be a number >= 0, got {value!r}")
            out[track][key] = limit / value if value > 0 else float("inf")
    return out


def check_track(counts: dict, *, convention: str = "flops") -> dict[str, bool]:
    """Which challenge tracks a model fits, from :func:`count_flops`'s numbers.

    Light: ≤ 1 GFLOPs, ≤ 20 MB, ≤ 512-d features; large: ≤ 30 GFLOPs and ≤ 512-d; both fp32
    (a ``counts["fp32"]`` of False fails both; counts without the key are taken as fp32).
    ``convention="macs"`` judges the MACs against the FLOPs limits: the mistake of a counter
    that reports MACs as FLOPs, which lets through models up to twice the limit.

    Raises:
        ValueError: as :func:`track_margins`.

    Example:
        >>> check_track({"flops": 9.3e8, "size_mb": 4.0, "embedding_size": 256})
        {'light': True, 'large': True}
        >>> c = {"flops": 1.6e9, "macs": 0.8e9, "size_mb": 4.0, "embedding_size": 256}
        >>> check_track(c)["light"], check_track(c, convention="macs")["light"]
        (False, True)
    """
    fp32 = bool(counts.get("fp32", True))
    return {track: fp32 and all(m >= 1 for m in margin.values())
            for track, margin in track_margins(counts, convention=convention).items()}


def backbone_costs(names, input_size: int = 112) -> dict[str, dict]:
    """:func:`count_flops` and :func:`check_track` of each named backbone (built at its default
    embedding size) at ``input_size``×``input_size``: {name: {flops, macs, params, size_mb,
    embedding_size, light, large}}.

    Raises:
        ValueError: an unknown name or an input_size :func:`~arclab.models.get_model` refuses.

    Example:
        >>> backbone_costs(["mbf"], 112)["mbf"]["light"]
        True
    """
    out = {}
    for name in names:
        with torch.device("meta"):  # no weights are allocated, no arithmetic is done
            model = get_model(name, input_size=input_size)
        counts = count_flops(model, (3, input_size, input_size))
        out[name] = {**counts, **check_track(counts)}
    return out
