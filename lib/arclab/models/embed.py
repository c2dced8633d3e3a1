"""Embeddings of a whole data set, with the flip test (feature of image + feature of mirror).

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = ["embed_images", "extract_embeddings"]


def extract_embeddings(model: nn.Module, loader: Iterable, *, flip: bool = True,
                       progress: bool = False) -> Tensor:
    """Run ``model`` over ``loader`` in eval mode without gradients; returns (N, D) float32 on
    the CPU, in loader order, not normalised.

    ``loader`` yields image batches (B, 3, H, W) or (images, labels) tuples; images go to the
    model's device. With ``flip`` each embedding is model(x) + model(x mirrored left-right), the
    challenge's and ArcFace's flip test.

    Raises:
        ValueError: ``loader`` yields a batch that is not (B, C, H, W).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        >>> extract_embeddings(net, [torch.rand(3, 3, 2, 2)]).shape
        torch.Size([3, 4])
    """
    device = next(model.parameters(), torch.zeros(0)).device  # a parameter-free model: CPU
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="embedding", leave=False, disable=not progress):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                if x.ndim != 4:
                    raise ValueError(f"loader must yield (B, C, H, W) images, got {tuple(x.shape)}")
                x = x.to(device, non_blocking=True)
                emb = model(x)
                if flip:
                    emb = emb + model(torch.flip(x, dims=[3]))
                out.append(emb.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def embed_images(model: nn.Module, images, *, batch_size: int = 256, flip: bool = True,
                 progress: bool = False) -> Tensor:
    """Embeddings (N, D) float32 of uint8 images (N, H, W, 3) (a numpy array or memmap, as
    SynthFaces and ``load_bin`` return them), scaled to [−1, 1] as in training, batched,
    with the flip test.

    Raises:
        ValueError: images not (N, H, W, 3); batch_size not an integer >= 1.

    Example:
        >>> import numpy as np
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        >>> embed_images(net, np.zeros((5, 2, 2, 3), np.uint8), batch_size=2).shape
        torch.Size([5, 4])
    """
    if getattr(images, "ndim", 0) != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got shape "
                         f"{getattr(images, 'shape', None)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    def batches():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.array(images[i:i + batch_size], dtype=np.uint8))
            yield x.permute(0, 3, 1, 2).float() / 127.5 - 1

    return extract_embeddings(model, batches(), flip=flip, progress=progress)
