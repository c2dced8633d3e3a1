"""The "improved ResNet" (IR) backbones of ArcFace, with arcface_torch's parameter names.

Block (pre-activation style): BN → conv3×3 → BN → PReLU → conv3×3 (stride here) → BN, plus a
1×1-conv + BN shortcut where the shape changes. Stem: conv3×3 (stride 1) → BN → PReLU; four
stages of widths 64/128/256/512, each starting with stride 2; head: BN → flatten → dropout →
FC → BN1d (its scale frozen at 1), the embedding. Module and parameter names follow
insightface's ``recognition/arcface_torch/backbones/iresnet.py`` so that its published
state_dicts load with ``strict=True``.

Backbones by name: :mod:`arclab.models.registry`.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from arclab.models.shapes import downsampled_size

__all__ = ["IRESNET_LAYERS", "IRBlock", "IResNet", "iresnet"]

IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3),
    "r124": (3, 13, 40, 5), "r200": (6, 26, 60, 6),
}
"""Blocks per stage of each depth (DESIGN.md; r124 is the challenge paper's Table 4 model)."""


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class IRBlock(nn.Module):
    """One IR block; ``stride`` sits in the second convolution. (N, cin, H, W) ->
    (N, cout, H/stride, W/stride)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """IR backbone: (N, 3, S, S) face crops -> (N, embedding_size) embeddings."""

    def __init__(self, layers: tuple[int, int, int, int], *, embedding_size: int = 512,
                 input_size: int = 112, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = _conv3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths, cin = (64, 128, 256, 512), 64
        for i, (width, blocks) in enumerate(zip(widths, layers)):
            stage = [IRBlock(cin, width, stride=2)] + [IRBlock(width, width)
                                                       for _ in range(blocks - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            cin = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = downsampled_size(input_size)
        self.fc = nn.Linear(512 * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1), nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def iresnet(layers: tuple[int, int, int, int], **kwargs) -> IResNet:
    """An IR backbone with any blocks-per-stage; see :class:`IResNet` for keyword arguments.

    Raises:
        ValueError: layers not 4 integers >= 1.
    """
    if len(layers) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                               for n in layers):
        raise ValueError(f"layers must be 4 positive integers, got {layers!r}")
    return IResNet(tuple(layers), **kwargs)

