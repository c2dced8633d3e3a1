"""The "improved ResNet" (IR) backbones of ArcFace, with arcface_torch's parameter names.

Block (pre-activation style): BN → conv3×3 → BN → PReLU → conv3×3 (stride here) → BN, plus a
1×1-conv + BN shortcut where the shape changes. Stem: conv3×3 (stride 1) → BN → PReLU; four
stages of widths 64/128/256/512, each starting with stride 2; head: BN → flatten → dropout →
FC → BN1d (its scale frozen at 1), the embedding. Module and parameter names follow
insightface's ``recognition/arcface_torch/backbones/iresnet.py`` so that its published
state_dicts load with ``strict=True``.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["IRESNET_LAYERS", "MODEL_NAMES", "IRBlock", "IResNet", "get_model", "iresnet"]

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


def downsampled_size(size: int) -> int:
    """Side of the final feature map after the four stride-2 3×3 convs (padding 1) that both
    IResNet and MobileFaceNet apply: 112 -> 7, 64 -> 4, 56 -> 4."""
    for _ in range(4):
        size = (size - 1) // 2 + 1
    return size


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
    """An IR backbone with any blocks-per-stage; see :class:`IResNet` for keyword arguments."""
    if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
        raise ValueError(f"layers must be 4 positive integers, got {layers!r}")
    return IResNet(tuple(layers), **kwargs)


MODEL_NAMES: tuple[str, ...] = (*IRESNET_LAYERS, "mbf", "y2", "mnet_lfr")
"""Every name :func:`get_model` accepts."""

_DEFAULT_EMBEDDING: dict[str, int] = {"y2": 256, "mnet_lfr": 256}


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
        ValueError: unknown name (the message lists the valid ones), input_size < 16,
            embedding_size < 1, dropout outside [0, 1).

    Example:
        >>> m = get_model("r18", embedding_size=128, input_size=64).eval()
        >>> tuple(m(torch.randn(2, 3, 64, 64)).shape)
        (2, 128)
        >>> get_model("y2").features.layers[2].out_features
        256
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"name must be one of {list(MODEL_NAMES)}, got {name!r}")
    if embedding_size is None:
        embedding_size = _DEFAULT_EMBEDDING.get(name, 512)
    if not isinstance(input_size, int) or input_size < 16:
        raise ValueError(f"input_size must be an integer >= 16 pixels, got {input_size!r}")
    if not isinstance(embedding_size, int) or embedding_size < 1:
        raise ValueError(f"embedding_size must be a positive integer, got {embedding_size!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    sizes = {"embedding_size": embedding_size, "input_size": input_size}
    if name in ("mbf", "y2"):
        from arclab.models.mobilefacenet import mobilefacenet, y2

        return y2(**sizes) if name == "y2" else mobilefacenet(**sizes)
    if name == "mnet_lfr":
        from arclab.models.mobilenet_lfr import mnet_lfr

        return mnet_lfr(**sizes)
    return iresnet(IRESNET_LAYERS[name], dropout=dropout, **sizes)
