"""From RetinaFace outputs to faces: decode, score threshold, NMS, top-k; and CPU timing.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import nms

from arclab.detection.coding import decode_boxes, decode_landmarks
from arclab.detection.model import preprocess
from arclab.detection.priors import priors

__all__ = ["detect", "time_detector"]


def _detect_batch(model: nn.Module, images: Tensor, prior_config: str, score_threshold: float,
                  nms_threshold: float, top_k: int, keep_top_k: int) -> list[dict]:
    h, w = images.shape[-2:]
    out = model(preprocess(images))
    anchors = priors((h, w), prior_config).to(images.device)
    scale = torch.tensor([w, h], device=images.device, dtype=torch.float32)
    boxes = decode_boxes(out["box"].float(), anchors) * scale.repeat(2)
    points = decode_landmarks(out["landmarks"].float(), anchors).unflatten(-1, (5, 2)) * scale
    scores = out["cls"].float().softmax(dim=-1)[..., 1]
    results = []
    for b in range(images.shape[0]):
        keep = torch.nonzero(scores[b] > score_threshold).squeeze(1)
        keep = keep[scores[b, keep].argsort(descending=True, stable=True)[:top_k]]
        kept = nms(boxes[b, keep], scores[b, keep], nms_threshold)[:keep_top_k]
        idx = keep[kept]
        results.append({"boxes": boxes[b, idx], "scores": scores[b, idx],
                        "landmarks": points[b, idx]})
    return results


@torch.no_grad()
def detect(model: nn.Module, images: Tensor | Sequence[Tensor], *,
           score_threshold: float = 0.02, nms_threshold: float = 0.4, top_k: int = 5000,
           keep_top_k: int = 750, prior_config: str = "port",
           device: str | torch.device | None = None) -> list[dict[str, Tensor]]:
    """Faces in RGB images with values in [0, 1]: a (B, 3, H, W) batch, or a list of (3, H, W)
    images of different sizes (run one by one).

    Returns, per image, {"boxes": (D, 4) x1, y1, x2, y2 in pixels, "scores": (D,) face
    probability, "landmarks": (D, 5, 2) pixels}, highest score first, after dropping scores
    at or under ``score_threshold``, keeping the ``top_k`` best, NMS at ``nms_threshold`` IoU
    and keeping at most ``keep_top_k``. The model runs in eval mode on ``device`` (default: the
    model's) and is put back in the mode it was in.
    """
    if not 0 <= score_threshold < 1 or not 0 < nms_threshold <= 1:
        raise ValueError(f"score_threshold must be in [0, 1) and nms_threshold in (0, 1], got "
                         f"{score_threshold} and {nms_threshold}")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    for i, image in enumerate([images] if isinstance(images, Tensor) else images):
        if not isinstance(image, Tensor) or not image.is_floating_point():
            raise ValueError(f"images must be float tensors with values in [0, 1] (convert "
                             f"uint8 with x.float() / 255), got "
                             f"{getattr(image, 'dtype', type(image).__name__)} at {i}")
        if image.numel() == 0 or min(image.shape[-2:]) < 1:
            raise ValueError(f"images must not be empty, got shape {tuple(image.shape)}")
    was = model.training
    model.eval()
    try:
        if isinstance(images, Tensor):
            if images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
            return _detect_batch(model, images.to(dev).float(), prior_config, score_threshold,
                                 nms_threshold, top_k, keep_top_k)
        out = []
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"images[{i}] must be a (3, H, W) tensor")
            out += _detect_batch(model, image[None].to(dev).float(), prior_config,
                                 score_threshold, nms_threshold, top_k, keep_top_k)
        return out
    finally:
        model.train(was)


@torch.no_grad()
def time_detector(model: nn.Module, sizes: Sequence[tuple[int, int]] = ((480, 640),),
                  threads: Sequence[int | None] = (None, 1), *, repeats: int = 5,
                  warmup: int = 1, device: str | torch.device = "cpu") -> list[dict]:
    """Median milliseconds of one forward pass (batch 1) per image size and CPU thread count
    (``None``: torch's default), the network alone as the slides' table times it. On a GPU
    ``device`` the thread counts are ignored (one row per size, ``threads`` 0) and the
    device is synchronised around each pass.

    Returns rows {"height", "width", "threads", "device", "ms", "ms_min"}; the thread setting
    and the model's device are restored afterwards.
    """
    dev = torch.device(device)
    before = torch.get_num_threads()
    home = next(model.parameters()).device
    model.eval().to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rows = []
    try:
        for n in (threads if dev.type == "cpu" else [0]):
            torch.set_num_threads(n or before)
            for h, w in sizes:
                x = torch.rand(1, 3, h, w, device=dev)
                for _ in range(warmup):
                    model(x)
                times = []
                for _ in range(repeats):
                    sync()
                    t0 = time.perf_counter()
                    model(x)
                    sync()
                    times.append((time.perf_counter() - t0) * 1000)
                rows.append({"height": h, "width": w, "threads": n or before if n != 0 else 0,
                             "device": dev.type, "ms": statistics.median(times),
                             "ms_min": min(times)})
    finally:
        torch.set_num_threads(before)
        model.to(home)
    return rows
