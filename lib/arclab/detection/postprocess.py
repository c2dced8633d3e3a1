"""From RetinaFace outputs to faces (decode, score threshold, top-k, NMS), the detector's
cost in FLOPs, and its latency for the speed table.

:func:`detect` follows the port's ``detect.py``: face probability = softmax of the two class
logits, keep scores above ``score_threshold``, the ``top_k`` best, NMS, then the
``keep_top_k`` best. Two differences: the whole batch is decoded and suppressed at once
(torchvision's ``batched_nms``, the image as the category), and NMS uses continuous box areas
(the port's ``py_cpu_nms`` adds one pixel to each side length). Boxes are not clipped to the
image, as in the port.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import math
import numbers
import statistics
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import DeformConv2d, batched_nms

from arclab.detection.coding import decode_boxes, decode_landmarks
from arclab.detection.model import preprocess
from arclab.detection.priors import priors
from arclab.models.flops import count_flops

__all__ = ["detect", "detector_costs", "time_detector"]


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _dtype_of(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter or buffer, else float32."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _integer(name: str, value: int, low: int) -> int:
    """``value`` as an int, checked to be an integer (numpy's too, not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _real(name: str, value: float) -> float:
    """``value`` as a float, checked to be a finite real number (numpy's too, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (not a bool), got {value!r}")
    return float(value)


def _check_images(images: Tensor | Sequence[Tensor]) -> list[Tensor]:
    """The images as a list of (B, 3, H, W) batches, each checked."""
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) or a list of (3, H, W), got "
                             f"{tuple(images.shape)}")
        batches = [images]
    else:
        if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
            raise ValueError(f"images must be a tensor or a list of tensors, got "
                             f"{type(images).__name__}")
        batches = []
        for i, image in enumerate(images):
            if not isinstance(image, Tensor) or image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"images[{i}] must be a (3, H, W) tensor, got "
                                 f"{tuple(getattr(image, 'shape', ())) or type(image).__name__}")
            batches.append(image[None])
    for i, batch in enumerate(batches):
        if not batch.is_floating_point():
            raise ValueError(f"images must be float tensors with values in [0, 1] (convert "
                             f"uint8 with x.float() / 255), got {batch.dtype} at {i}")
        if batch.numel() == 0:
            raise ValueError(f"images must not be empty, got shape {tuple(batch.shape)} at {i}")
        low, high = batch.aminmax()
        if not (low >= 0 and high <= 1):  # also catches NaN
            raise ValueError(f"images must have values in [0, 1], got [{low:.4g}, {high:.4g}] "
                             f"at {i}")
    return batches


def _detect_batch(model: nn.Module, images: Tensor, prior_config: str | dict,
                  score_threshold: float, nms_threshold: float, top_k: int,
                  keep_top_k: int) -> list[dict[str, Tensor]]:
    b, _, h, w = images.shape
    out = model(preprocess(images.to(_dtype_of(model))))  # half images, float32 model: cast
    anchors = priors((h, w), prior_config).to(images.device)
    if out["cls"].shape[:2] != (b, len(anchors)):
        raise ValueError(f"the model gives {tuple(out['cls'].shape[:2])} (batch, priors) for a "
                         f"{h}x{w} image but prior_config has {len(anchors)} priors")
    scores = out["cls"].float().softmax(dim=-1)[..., 1]  # (B, P)
    # the top_k best above the threshold per image (masked scores sort below any kept one)
    best, order = scores.masked_fill(scores <= score_threshold, -1.0).topk(
        min(top_k, len(anchors)), dim=1)
    image, rank = torch.nonzero(best > score_threshold, as_tuple=True)
    prior = order[image, rank]
    scale = torch.tensor([w, h], device=images.device, dtype=torch.float32)
    boxes = decode_boxes(out["box"][image, prior].float(), anchors[prior]) * scale.repeat(2)
    points = decode_landmarks(out["landmarks"][image, prior].float(), anchors[prior])
    points = points.unflatten(-1, (5, 2)) * scale
    score = scores[image, prior]
    kept = batched_nms(boxes, score, image, nms_threshold)  # highest score first
    results = []
    for i in range(b):
        idx = kept[image[kept] == i][:keep_top_k]
        results.append({"boxes": boxes[idx], "scores": score[idx], "landmarks": points[idx]})
    return results


@torch.no_grad()
def detect(model: nn.Module, images: Tensor | Sequence[Tensor], *,
           score_threshold: float = 0.02, nms_threshold: float = 0.4, top_k: int = 5000,
           keep_top_k: int = 750, prior_config: str | dict = "port",
           device: str | torch.device | None = None) -> list[dict[str, Tensor]]:
    """Faces in RGB images with values in [0, 1].

    Shapes: images (B, 3, H, W) float (float16 and bfloat16 too: they are cast to the model's
    dtype), or a list of (3, H, W) images of any sizes (images of one size run as one batch)
    -> per image {"boxes": (D, 4) x1, y1, x2, y2 in pixels, "scores": (D,) face probability,
    "landmarks": (D, 5, 2) (x, y) in pixels}, highest score first, on the device the model ran
    on.

    Scores at or under ``score_threshold`` are dropped, the ``top_k`` best kept, NMS at
    ``nms_threshold`` IoU applied and at most ``keep_top_k`` kept. ``model`` maps
    :func:`~arclab.detection.model.preprocess` outputs to the RetinaFace dict, its priors given
    by ``prior_config``. It runs in eval mode without gradients on ``device`` (default: where
    its parameters are); its device and every module's train/eval mode are restored afterwards.

    Raises:
        ValueError: images not float in [0, 1], of the wrong shape or empty; thresholds not
            numbers in range or counts not positive integers (numpy scalars count, booleans do
            not); a model whose prior count does not match ``prior_config``.
    """
    score_threshold = _real("score_threshold", score_threshold)
    nms_threshold = _real("nms_threshold", nms_threshold)
    if not 0 <= score_threshold < 1 or not 0 < nms_threshold <= 1:
        raise ValueError(f"score_threshold must be in [0, 1) and nms_threshold in (0, 1], got "
                         f"{score_threshold} and {nms_threshold}")
    top_k, keep_top_k = _integer("top_k", top_k, 1), _integer("keep_top_k", keep_top_k, 1)
    batches = _check_images(images)
    home = _device_of(model)
    dev = torch.device(device) if device is not None else home
    modes = {m: m.training for m in model.modules()}
    model.eval().to(dev)
    try:
        if isinstance(images, Tensor):
            return _detect_batch(model, images.to(dev), prior_config, score_threshold,
                                 nms_threshold, top_k, keep_top_k)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(batches):
            groups.setdefault(tuple(image.shape[-2:]), []).append(i)
        results: list[dict[str, Tensor]] = [{}] * len(batches)
        for idx in groups.values():
            batch = torch.cat([batches[i] for i in idx]).to(dev)
            found = _detect_batch(model, batch, prior_config, score_threshold, nms_threshold,
                                  top_k, keep_top_k)
            for i, r in zip(idx, found):
                results[i] = r
        return results
    finally:
        model.to(home)
        for m, mode in modes.items():
            m.training = mode


class _FirstOutput(nn.Module):
    """The detector with one tensor output, for :func:`arclab.models.flops.count_flops`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)["cls"]


def detector_costs(model: nn.Module, image_size: tuple[int, int] = (480, 640)) -> dict:
    """FLOPs (the challenge convention of :func:`arclab.models.flops.count_flops`), MACs,
    parameters and fp32 size of one forward pass at ``image_size`` = (H, W) pixels.

    ``count_flops`` hooks ``nn.Conv2d`` and ``nn.Linear`` only; a ``DeformConv2d`` is counted
    here as the convolution of its shape (its bilinear sampling is not counted), its offset
    conv by ``count_flops``. BN, activations, upsampling and additions are ignored.

    Returns:
        {"flops": int, "macs": int, "params": int, "size_mb": float (fp32 bytes / 1e6)}.

    Raises:
        ValueError: image_size not two positive integers (H, W) (numpy integers count,
            booleans do not).
    """
    if not isinstance(image_size, Sequence) or len(image_size) != 2 or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
            for v in image_size):
        raise ValueError(f"image_size must be (H, W) positive integers, got {image_size!r}")
    image_size = (int(image_size[0]), int(image_size[1]))
    extra = {"flops": 0, "macs": 0}

    def deform_hook(m: DeformConv2d, _inp, out: Tensor) -> None:
        kernel = m.in_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        outputs = out.shape[1] * out.shape[2] * out.shape[3]
        extra["flops"] += (2 * kernel - 1) * outputs + (outputs if m.bias is not None else 0)
        extra["macs"] += kernel * outputs

    hooks = [m.register_forward_hook(deform_hook) for m in model.modules()
             if isinstance(m, DeformConv2d)]
    try:
        counts = count_flops(_FirstOutput(model), (3, *image_size))
    finally:
        for hook in hooks:
            hook.remove()
    return {"flops": counts["flops"] + extra["flops"], "macs": counts["macs"] + extra["macs"],
            "params": counts["params"], "size_mb": counts["size_mb"]}


@torch.no_grad()
def time_detector(model: nn.Module,
                  sizes: Sequence[tuple[int, int]] = ((480, 640), (1080, 1920)),
                  threads: Sequence[int | None] = (1, None), *, repeats: int = 5,
                  warmup: int = 1, device: str | torch.device = "cpu") -> list[dict]:
    """Median milliseconds of one forward pass (batch 1, the network alone, as the slides'
    table times it) per image size (H, W) in pixels and CPU thread count (``None``: torch's
    current setting). On a GPU ``device`` the thread counts are ignored (one row per size,
    ``threads`` 0) and the device is synchronised around each pass.

    Returns rows {"height", "width", "threads", "device", "ms", "ms_min"}; the thread
    setting, the model's device and its train/eval modes are restored afterwards.

    Raises:
        ValueError: repeats not an integer >= 1, warmup not an integer >= 0, sizes not pairs
            of positive integers, or (on the CPU) threads not positive integers or None
            (numpy integers count, booleans do not).
    """
    repeats, warmup = _integer("repeats", repeats, 1), _integer("warmup", warmup, 0)
    for size in sizes:
        if not isinstance(size, Sequence) or len(size) != 2 or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1
                for v in size):
            raise ValueError(f"sizes must be (H, W) pairs of positive integers, got {size!r}")
    dev = torch.device(device)
    before = torch.get_num_threads()
    home = _device_of(model)
    modes = {m: m.training for m in model.modules()}
    model.eval().to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rows = []
    try:
        for n in (threads if dev.type == "cpu" else [0]):
            if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral)
                                  or n < 1) and dev.type == "cpu":
                raise ValueError(f"threads must be positive integers or None, got {n!r}")
            count = before if n is None else int(n)
            torch.set_num_threads(count or before)
            for h, w in sizes:
                x = torch.rand(1, 3, int(h), int(w), device=dev)
                for _ in range(warmup):
                    model(x)
                times = []
                for _ in range(repeats):
                    sync()
                    t0 = time.perf_counter()
                    model(x)
                    sync()
                    times.append((time.perf_counter() - t0) * 1000)
                rows.append({"height": h, "width": w, "threads": count, "device": dev.type,
                             "ms": statistics.median(times), "ms_min": min(times)})
    finally:
        torch.set_num_threads(before)
        model.to(home)
        for m, mode in modes.items():
            m.training = mode
    return rows
