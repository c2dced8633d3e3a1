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

__all__ = ["backbone_costs", "check_track", "count_flops"]


def count_flops(model: nn.Module, input_size: tuple[int, int, int] = (3, 112, 112)) -> dict:
    """FLOPs (challenge convention), MACs, parameters and fp32 size of one forward pass.

    Args:
        input_size: (C, H, W) of one input image.

    Returns:
        {"flops": int, "macs": int, "params": int, "size_mb": float (fp32 bytes / 1e6),
        "embedding_size": int}.

    Example:
        >>> counts = count_flops(nn.Conv2d(3, 8, 3, padding=1, bias=False), (3, 4, 4))
        >>> counts["flops"], counts["macs"]
        (6784, 3456)
    """
    if len(input_size) != 3 or any(not isinstance(v, int) or v < 1 for v in input_size):
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
    return {**totals, "params": params, "size_mb": params * 4 / 1e6,
            "embedding_size": int(out.shape[-1])}


def check_track(counts: dict) -> dict[str, bool]:
    """Which challenge track a model fits, from :func:`count_flops`'s numbers.

    Light: ≤ 1 GFLOPs, ≤ 20 MB, ≤ 512-d features; large: ≤ 30 GFLOPs and ≤ 512-d (fp32 both).

    Example:
        >>> check_track({"flops": 9.3e8, "size_mb": 4.0, "embedding_size": 256})
        {'light': True, 'large': True}
    """
    dim_ok = counts["embedding_size"] <= 512
    return {"light": counts["flops"] <= 1e9 and counts["size_mb"] <= 20 and dim_ok,
            "large": counts["flops"] <= 30e9 and dim_ok}


def backbone_costs(names, input_size: int = 112) -> dict[str, dict]:
    """:func:`count_flops` and :func:`check_track` of each named backbone (built at its default
    embedding size) at ``input_size``×``input_size``: {name: {flops, macs, params, size_mb,
    embedding_size, light, large}}.

    Example:
        >>> backbone_costs(["mbf"], 112)["mbf"]["light"]
        True
    """
    from arclab.models.iresnet import get_model

    out = {}
    for name in names:
        with torch.device("meta"):  # no weights are allocated, no arithmetic is done
            model = get_model(name, input_size=input_size)
        counts = count_flops(model, (3, input_size, input_size))
        out[name] = {**counts, **check_track(counts)}
    return out
