"""Feature-map geometry the backbones share: the side of the final map after the stride-2
stages, which sizes each backbone's embedding layer.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

__all__ = ["downsampled_size"]


def downsampled_size(size: int) -> int:
    """Side of the final feature map after the four stride-2 3×3 convs (padding 1) that both
    IResNet and MobileFaceNet apply: 112 -> 7, 64 -> 4, 56 -> 4.

    Example:
        >>> downsampled_size(112), downsampled_size(64)
        (7, 4)
    """
    for _ in range(4):
        size = (size - 1) // 2 + 1
    return size
