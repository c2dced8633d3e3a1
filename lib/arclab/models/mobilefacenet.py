"""MobileFaceNet with arcface_torch's module names (``mbf``): depthwise-separable bottlenecks,
a 1×1 conv to 512 channels and a global depthwise conv (GDC) head.

``y2``, the Lightweight Face Recognition Challenge's light baseline ("a deeper mobilefacenet",
933M FLOPs), is insightface's MXNet ``fmobilefacenet`` symbol (recognition/arcface_mxnet/
symbol/fmobilefacenet.py with sample_config.py's ``network.y2``: net_blocks [2, 8, 16, 4],
emb_size 256, net_output "GDC"). It has the same layer sequence as arcface_torch's
MobileFaceNet at ``scale=1`` except that (a) the stage-1 blocks (``res_2``) expand 64 -> 64
channels (``num_group=64``), not 64 -> 128, and (b) the head (symbol_utils.get_fc1, "GDC") is
``pre_fc1``, a FullyConnected *with* a bias, then the ``fc1`` BatchNorm with gamma fixed at 1.
The MXNet symbol also maps pixels with (x − 127.5)/128 inside the network; here the input is
expected already normalised that way.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

from torch import Tensor, nn

from arclab.models.shapes import downsampled_size

__all__ = ["MobileFaceNet", "mobilefacenet", "y2"]


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
    """(N, 3, S, S) -> (N, embedding_size). ``blocks`` per stage, width ``scale`` × 64.

    ``stage1_groups``: expansion width of the stage-1 residual blocks (arcface_torch 128,
    MXNet fmobilefacenet 64; unused when ``blocks[0] == 1``). ``mxnet_head``: the embedding FC
    has a bias and the final BatchNorm1d's scale is fixed at 1 (MXNet ``fix_gamma=True``).
    """

    def __init__(self, blocks: tuple[int, int, int, int] = (1, 4, 6, 2), *,
                 embedding_size: int = 512, scale: int = 2, input_size: int = 112,
                 stage1_groups: int = 128, mxnet_head: bool = False) -> None:
        super().__init__()
        c1, c2 = 64 * scale, 128 * scale
        first = (_conv(c1, c1, 3, 1, 1, 64, True) if blocks[0] == 1
                 else _residual(c1, blocks[0], stage1_groups))
        self.layers = nn.ModuleList([
            _conv(3, c1, 3, 2, 1, 1, True), first,
            _DepthWise(c1, c1, 128, 2, False), _residual(c1, blocks[1], 128),
            _DepthWise(c1, c2, 256, 2, False), _residual(c2, blocks[2], 256),
            _DepthWise(c2, c2, 512, 2, False), _residual(c2, blocks[3], 256),
        ])
        self.conv_sep = _conv(c2, 512, 1, 1, 0, 1, True)
        side = downsampled_size(input_size)
        self.features = _Wrapped(_conv(512, 512, side, 1, 0, 512, False), nn.Flatten(),
                                 nn.Linear(512, embedding_size, bias=mxnet_head),
                                 nn.BatchNorm1d(embedding_size))  # GDC head
        if mxnet_head:
            bn = self.features.layers[3]
            nn.init.constant_(bn.weight, 1.0)
            bn.weight.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


def mobilefacenet(blocks: tuple[int, int, int, int] = (1, 4, 6, 2), **kwargs) -> MobileFaceNet:
    """MobileFaceNet; ``mbf`` is blocks (1, 4, 6, 2), 512-d, scale 2.

    Raises:
        ValueError: blocks not 4 integers >= 1.
    """
    if len(blocks) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                               for n in blocks):
        raise ValueError(f"blocks must be 4 positive integers, got {blocks!r}")
    return MobileFaceNet(tuple(blocks), **kwargs)


def y2(*, embedding_size: int = 256, input_size: int = 112) -> MobileFaceNet:
    """The challenge's light baseline ``y2``: MXNet fmobilefacenet, blocks (2, 8, 16, 4), GDC.

    (N, 3, S, S) in (pixel − 127.5)/128 -> (N, embedding_size). At 112×112 it counts
    931.1M FLOPs with :func:`~arclab.models.count_flops` (challenge README: 933M; insightface's
    own counter, which charges a depthwise 3×3 (18·C − 1)·H·W instead of 17·C·H·W, gives
    933.3M), 469M MACs, 2.00M parameters (7.99 MB fp32).

    Example:
        >>> import torch
        >>> tuple(y2(input_size=56).eval()(torch.randn(2, 3, 56, 56)).shape)
        (2, 256)
    """
    return MobileFaceNet((2, 8, 16, 4), embedding_size=embedding_size, scale=1,
                         input_size=input_size, stage1_groups=64, mxnet_head=True)
