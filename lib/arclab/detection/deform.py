"""Deformable convolution (DCN v1) as one bilinear ``grid_sample`` and one matrix product.

torchvision's CPU kernel is slow, its backward pass most of all: with it a training step of
notebook 11's detector (mobilenet0.25, 8 scenes of 256², 2 cores) took 8.6× as long as with the
plain context module (1.30 s vs 0.15 s; 74 % of it in ``_deform_conv2d_backward``). Sampling
all k×k kernel taps of every output cell with one ``grid_sample`` call (zero padding, pixel
coordinates mapped exactly) and contracting with the weight as a matrix product computes the
same function with PyTorch's parallel kernels: 7–14× faster forward + backward on the SSH
module's shapes, and the DCN step costs 1.7× the plain one (0.25 s) instead of 8.6×
(``python benchmarks/deform_conv.py``).

Semantics are torchvision's: offsets (N, 2·kh·kw, Ho, Wo) hold (dy, dx) per tap in row-major
tap order, in pixels; a tap samples the input bilinearly with zeros outside it. Values and the
gradients for input and weight agree with torchvision to float round-off; so does the offset
gradient, except where a tap lands exactly on a pixel row or column (where bilinear sampling has
no derivative, only one-sided ones): there both return a one-sided derivative, and which side
can differ when the map's size is not a power of two (round-off in the normalised coordinate).

Taught in: notebooks/11_retinaface_ablation.ipynb
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import DeformConv2d as _TorchvisionDeformConv2d
from torchvision.ops import deform_conv2d as _torchvision_deform_conv2d

__all__ = ["DeformConv2d", "deform_conv2d"]


def _pair(value: int | tuple[int, int], name: str, low: int) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else value
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v < low for v in pair):
        raise ValueError(f"{name} must be an integer >= {low} or a pair of them, got {value!r}")
    return tuple(pair)  # type: ignore[return-value]


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1) -> Tensor:
    """Deformable 2-D convolution, torchvision's ``deform_conv2d`` without groups or mask.

    Shapes: x (N, C, H, W); offset (N, 2·kh·kw, Ho, Wo) in pixels, (dy, dx) per kernel tap,
    taps in row-major order; weight (Cout, C, kh, kw); bias (Cout,) or None. Ho and Wo are
    the plain convolution's output sizes. Returns (N, Cout, Ho, Wo).

    Raises:
        ValueError: shapes that do not fit together (the message names the argument).
    """
    (sh, sw), (ph, pw), (dh, dw) = (_pair(stride, "stride", 1), _pair(padding, "padding", 0),
                                    _pair(dilation, "dilation", 1))
    if x.dim() != 4 or weight.dim() != 4 or offset.dim() != 4:
        raise ValueError(f"x, offset and weight must be 4-D, got shapes {tuple(x.shape)}, "
                         f"{tuple(offset.shape)}, {tuple(weight.shape)}")
    n, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    if cin != c:
        raise ValueError(f"weight has {cin} input channels but x has {c} (groups are not "
                         "supported)")
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"the {kh}x{kw} kernel (dilation {dh}, {dw}) does not fit x of "
                         f"{h}x{w} with padding ({ph}, {pw}): output size {ho}x{wo}")
    k = kh * kw
    if tuple(offset.shape) != (n, 2 * k, ho, wo):
        raise ValueError(f"offset must have shape {(n, 2 * k, ho, wo)} (N, 2·kh·kw, Ho, Wo; "
                         f"offset groups are not supported), got {tuple(offset.shape)}")
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f"bias must have shape ({cout},), got {tuple(bias.shape)}")
    dev, dt = x.device, x.dtype
    tap_y = (torch.arange(kh, device=dev) * dh).repeat_interleave(kw).view(k, 1, 1)
    tap_x = (torch.arange(kw, device=dev) * dw).repeat(kh).view(k, 1, 1)
    base_y = (torch.arange(ho, device=dev).view(1, ho, 1) * sh - ph + tap_y).to(dt)
    base_x = (torch.arange(wo, device=dev).view(1, 1, wo) * sw - pw + tap_x).to(dt)
    off = offset.reshape(n, k, 2, ho, wo)
    y, xx = base_y + off[:, :, 0], base_x + off[:, :, 1]  # pixel coordinates (N, k, Ho, Wo)
    # align_corners=False maps pixel p to (2p + 1)/size − 1 and back: exact for any size ≥ 1
    grid = torch.stack(((2 * xx + 1) / w - 1, (2 * y + 1) / h - 1), dim=-1)
    cols = F.grid_sample(x, grid.view(n, k * ho, wo, 2), mode="bilinear",
                         padding_mode="zeros", align_corners=False)  # (N, C, k·Ho, Wo)
    out = weight.reshape(cout, c * k) @ cols.reshape(n, c * k, ho * wo)
    out = out.view(n, cout, ho, wo)
    return out if bias is None else out + bias.view(1, cout, 1, 1)


class DeformConv2d(_TorchvisionDeformConv2d):
    """torchvision's ``DeformConv2d`` (same parameters, initialisation and state dict) whose
    forward pass on the CPU uses :func:`deform_conv2d`. On other devices, and with groups,
    offset groups or a mask, it runs torchvision's kernel: its CUDA kernel is fast, and it
    recomputes the sampled columns in the backward pass where :func:`deform_conv2d` keeps them
    for autograd (N·C·kh·kw·Ho·Wo values per layer: small at notebook 11's scale, gigabytes for
    a ResNet-50 detector on large batches)."""

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        k = self.kernel_size[0] * self.kernel_size[1]
        if (input.device.type == "cpu" and mask is None and self.groups == 1
                and offset.dim() == 4 and offset.shape[1] == 2 * k):
            return deform_conv2d(input, offset, self.weight, self.bias, self.stride,
                                 self.padding, self.dilation)
        return _torchvision_deform_conv2d(input, offset, self.weight, self.bias, self.stride,
                                          self.padding, self.dilation, mask)
