"""RetinaFace: a backbone, a 3-level feature pyramid, SSH context modules (optionally with a
deformable convolution) and per-anchor heads for face score, box and 5 landmarks.

The module names follow the popular PyTorch port (``body``, ``fpn.output1``, ``ssh1.conv3X3``,
``ClassHead.0.conv1x1``, ...) so its published ``mobilenet0.25_Final.pth`` /
``Resnet50_Final.pth`` load with :func:`load_port_weights` (nothing is downloaded here).

Shapes: images (B, 3, H, W) as :func:`preprocess` makes them -> {"cls": (B, P, 2) logits,
"box": (B, P, 4), "landmarks": (B, P, 10)} (+ "dense": (B, P, dense_dim) with ``dense_dim``),
P = :func:`arclab.detection.priors.priors_per_level` summed, in the priors' order.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arclab.detection.deform import DeformConv2d
from arclab.models.weights import load_strict

__all__ = ["BGR_MEAN", "RetinaFace", "load_port_weights", "preprocess"]

BGR_MEAN = (104.0, 117.0, 123.0)
"""The port's input convention: BGR channels on a 0–255 scale minus these means."""


def preprocess(images: Tensor) -> Tensor:
    """RGB images in [0, 1] -> the port's input: BGR channel order, 0–255 scale, minus
    :data:`BGR_MEAN` per channel (the port reads images with OpenCV and subtracts (104, 117,
    123)); with this its published weights see what they were trained on.

    Shapes: (B, 3, H, W) float -> (B, 3, H, W), same dtype and device.

    Raises:
        ValueError: images not a floating-point (B, 3, H, W) tensor.

    Example:
        >>> preprocess(torch.tensor([1.0, 0.5, 0.0])[None, :, None, None]).flatten().tolist()
        [-104.0, 10.5, 132.0]
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (B, 3, H, W) tensor, got "
                         f"{tuple(getattr(images, 'shape', ())) or type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float with values in [0, 1], got {images.dtype}")
    mean = torch.tensor(BGR_MEAN, device=images.device, dtype=images.dtype)[:, None, None]
    return images.flip(1) * 255 - mean


def _conv_bn(cin: int, cout: int, stride: int = 1, leaky: float | None = 0.0,
             kernel: int = 3) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if leaky is not None:
        layers.append(nn.LeakyReLU(leaky, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
                         nn.BatchNorm2d(cin), nn.LeakyReLU(leaky, inplace=True),
                         nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(leaky, inplace=True))


class _MobileNetV1(nn.Module):
    """MobileNet-0.25 as the port builds it: three stages with strides 8, 16, 32 (64, 128 and
    256 channels out)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(_conv_bn(3, 8, 2, 0.1), _conv_dw(8, 16, 1),
                                    _conv_dw(16, 32, 2), _conv_dw(32, 32, 1),
                                    _conv_dw(32, 64, 2), _conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2),
                                    *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class _ResNet50Body(nn.Module):
    """torchvision's ResNet-50 (random init) up to layer4; returns layer2..4 (strides 8–32)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class _FPN(nn.Module):
    def __init__(self, channels: list[int], out: int) -> None:
        super().__init__()
        leaky = 0.1 if out <= 64 else 0.0
        self.output1 = _conv_bn(channels[0], out, 1, leaky, kernel=1)
        self.output2 = _conv_bn(channels[1], out, 1, leaky, kernel=1)
        self.output3 = _conv_bn(channels[2], out, 1, leaky, kernel=1)
        self.merge1 = _conv_bn(out, out, 1, leaky)
        self.merge2 = _conv_bn(out, out, 1, leaky)

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class _DeformConvBN(nn.Module):
    """A 3×3 deformable convolution + BN, its offsets predicted by a 3×3 conv that starts at
    zero (so the module starts as the plain convolution). State-dict names: ``0`` conv
    weight, ``1`` BN, ``offset`` the offset conv (not in the port, which has no DCN)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.add_module("0", DeformConv2d(cin, cout, 3, 1, 1, bias=False))
        self.add_module("1", nn.BatchNorm2d(cout))
        self.offset = nn.Conv2d(cin, 18, 3, 1, 1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, "1")(getattr(self, "0")(x, self.offset(x)))


class _SSH(nn.Module):
    """The SSH context module: 3×3, 5×5 (two 3×3) and 7×7 (three 3×3) branches concatenated
    (out/2 + out/4 + out/4 channels), then ReLU. With ``deformable`` the last conv of each
    branch is a deformable convolution (the RetinaFace paper's DCN context module)."""

    def __init__(self, cin: int, out: int, deformable: bool = False) -> None:
        super().__init__()
        if out % 4:
            raise ValueError(f"out_channels must be a multiple of 4, got {out}")
        leaky = 0.1 if out <= 64 else 0.0

        def last(ci: int, co: int) -> nn.Module:
            return _DeformConvBN(ci, co) if deformable else _conv_bn(ci, co, 1, None)

        self.conv3X3 = last(cin, out // 2)
        self.conv5X5_1 = _conv_bn(cin, out // 4, 1, leaky)
        self.conv5X5_2 = last(out // 4, out // 4)
        self.conv7X7_2 = _conv_bn(out // 4, out // 4, 1, leaky)
        self.conv7x7_3 = last(out // 4, out // 4)

    def forward(self, x: Tensor) -> Tensor:
        c5 = self.conv5X5_1(x)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5),
                                 self.conv7x7_3(self.conv7X7_2(c5))], dim=1))


class _Head(nn.Module):
    def __init__(self, cin: int, anchors: int, width: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(cin, anchors * width, 1)
        self.width = width

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.width)


class RetinaFace(nn.Module):
    """RetinaFace with the port's layout (see the module docstring).

    Input: what :func:`preprocess` makes of RGB images in [0, 1] (BGR, 0–255, minus
    :data:`BGR_MEAN`); any H and W (the levels have ⌈H/s⌉ × ⌈W/s⌉ cells, s = 8, 16, 32).

    Args:
        backbone: ``"mobilenet0.25"`` (the port's MobileNetV1 ×0.25, 64 pyramid channels) or
            ``"resnet50"`` (torchvision's, randomly initialised, 256).
        context: ``"ssh"`` or ``"ssh_dcn"`` (the last conv of each SSH branch deformable, its
            offsets from a zero-initialised conv, so it starts as ``"ssh"``).
        out_channels: pyramid/context channels, a positive multiple of 4 (default: the port's).
        anchors_per_cell: anchors per cell and level (2 for the port's priors).
        dense_dim: > 0 adds a per-anchor head ``DenseHead`` of that width (the dense
            regression of the paper's pixel term; not in the port's weights).

    Raises:
        ValueError: an unknown backbone or context; out_channels not an integer >= 4 and a
            multiple of 4, anchors_per_cell not an integer >= 1, dense_dim not an integer
            >= 0 (numpy integers count, booleans do not).

    Example:
        >>> out = RetinaFace()(preprocess(torch.rand(1, 3, 64, 64)))
        >>> {k: tuple(v.shape) for k, v in out.items()}  # 8·8·2 + 4·4·2 + 2·2·2 priors
        {'cls': (1, 168, 2), 'box': (1, 168, 4), 'landmarks': (1, 168, 10)}
    """

    def __init__(self, backbone: str = "mobilenet0.25", *, context: str = "ssh",
                 out_channels: int | None = None, anchors_per_cell: int = 2,
                 dense_dim: int = 0) -> None:
        super().__init__()
        if backbone == "mobilenet0.25":
            self.body: nn.Module = _MobileNetV1()
            channels, default_out = [64, 128, 256], 64
        elif backbone == "resnet50":
            self.body = _ResNet50Body()
            channels, default_out = [512, 1024, 2048], 256
        else:
            raise ValueError(f"backbone must be 'mobilenet0.25' or 'resnet50', got "
                             f"{backbone!r}")
        if context not in ("ssh", "ssh_dcn"):
            raise ValueError(f"context must be 'ssh' or 'ssh_dcn', got {context!r}")
        out = default_out if out_channels is None else out_channels
        for name, value, low in (("out_channels", out, 4), ("anchors_per_cell",
                                 anchors_per_cell, 1), ("dense_dim", dense_dim, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        out, anchors_per_cell, dense_dim = int(out), int(anchors_per_cell), int(dense_dim)
        self.fpn = _FPN(channels, out)
        for i in (1, 2, 3):
            self.add_module(f"ssh{i}", _SSH(out, out, deformable=context == "ssh_dcn"))
        a = anchors_per_cell
        self.ClassHead = nn.ModuleList([_Head(out, a, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(out, a, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(out, a, 10) for _ in range(3)])
        self.dense_dim = dense_dim
        if dense_dim:
            self.DenseHead = nn.ModuleList([_Head(out, a, dense_dim) for _ in range(3)])

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        pyramid = self.fpn(self.body(images))
        feats = [self.ssh1(pyramid[0]), self.ssh2(pyramid[1]), self.ssh3(pyramid[2])]
        out = {"cls": torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1),
               "box": torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1),
               "landmarks": torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)}
        if self.dense_dim:
            out["dense"] = torch.cat([h(f) for h, f in zip(self.DenseHead, feats)], dim=1)
        return out


def load_port_weights(model: RetinaFace, source: str | Path | Mapping) -> RetinaFace:
    """Load the port's weights (``mobilenet0.25_Final.pth`` / ``Resnet50_Final.pth``, a path,
    or a state dict) into ``model`` strictly, after stripping a ``module.`` prefix
    (DataParallel) and unwrapping a ``{"state_dict": ...}`` checkpoint as the port's
    ``load_model`` does. A file is treated as hostile: ``torch.load(weights_only=True)``,
    which refuses anything but tensors and plain containers.

    The port's weights fit ``RetinaFace(backbone)`` with the default context, channels and
    anchors and no dense head (the DCN offsets and ``DenseHead`` are not in the port).

    Raises:
        ValueError: an unreadable or non-weights file, not a mapping of names to tensors, a
            tensor with NaN or inf values (the file and the first such tensor named: such
            weights would load and then find no face), or keys / shapes that differ from the
            model's (all named, with counts).
    """
    return load_strict(model, source, wrappers=("state_dict",))

