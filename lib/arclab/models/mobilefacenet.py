"""MobileFaceNet with arcface_torch's module names (``mbf``): depthwise-separable bottlenecks,
a 1×1 conv to 512 channels and a global depthwise conv (GDC) head.

Taught in: notebooks/04_training_a_face_model.ipynb (planned)
"""

from __future__ import annotations

from torch import Tensor, nn

from arclab.models.iresnet import downsampled_size

__all__ = ["MobileFaceNet", "mobilefacenet"]


class _Wrapped(nn.Module):
    """A Sequential kept under ``.layers``, the nesting arcface_torch's state_dicts use."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _conv(cin: int, cout: int, k: int, stride: int, pad: int, groups: int,
          act: bool) -> _Wrapped:
    """Conv → BN (→ PReLU when ``act``): arcface_torch's ConvBlock / LinearBlock."""
    layers = [nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return _Wrapped(*layers, *([nn.PReLU(cout)] if act else []))


class _DepthWise(nn.Module):
    """1×1 expand (to ``groups`` channels) → k×k depthwise (stride) → 1×1 linear project."""

    def __init__(self, cin: int, cout: int, groups: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(_conv(cin, groups, 1, 1, 0, 1, True),
                                    _conv(groups, groups, 3, stride, 1, groups, True),
                                    _conv(groups, cout, 1, 1, 0, 1, False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


def _residual(c: int, n: int, groups: int) -> _Wrapped:
    return _Wrapped(*(_DepthWise(c, c, groups, 1, True) for _ in range(n)))


class MobileFaceNet(nn.Module):
    """(N, 3, S, S) -> (N, embedding_size). ``blocks`` per stage, width ``scale`` × 64."""

    def __init__(self, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), *,
                 embedding_size: int = 512, scale: int = 2, input_size: int = 112) -> None:
        super().__init__()
        c1, c2 = 64 * scale, 128 * scale
        first = (_conv(c1, c1, 3, 1, 1, 64, True) if blocks[0] == 1
                 else _residual(c1, blocks[0], 128))
        self.layers = nn.ModuleList([
            _conv(3, c1, 3, 2, 1, 1, True), first,
            _DepthWise(c1, c1, 128, 2, False), _residual(c1, blocks[1], 128),
            _DepthWise(c1, c2, 256, 2, False), _residual(c2, blocks[2], 256),
            _DepthWise(c2, c2, 512, 2, False), _residual(c2, blocks[3], 256),
        ])
        self.conv_sep = _conv(c2, 512, 1, 1, 0, 1, True)
        side = downsampled_size(input_size)
        self.features = _Wrapped(_conv(512, 512, side, 1, 0, 512, False), nn.Flatten(),
                                 nn.Linear(512, embedding_size, bias=False),
                                 nn.BatchNorm1d(embedding_size))  # GDC head

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


def mobilefacenet(blocks: tuple[int, int, int, int] = (1, 4, 6, 2), **kwargs) -> MobileFaceNet:
    """MobileFaceNet; ``mbf`` is blocks (1, 4, 6, 2), 512-d, scale 2."""
    if len(blocks) != 4 or any(not isinstance(n, int) or n < 1 for n in blocks):
        raise ValueError(f"blocks must be 4 positive integers, got {blocks!r}")
    return MobileFaceNet(tuple(blocks), **kwargs)
