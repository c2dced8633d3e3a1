"""Face images from a trained recognition model alone: invert its embedding with the model's
gradient, using the batch-normalisation statistics stored in the model as the image prior.

The sub-center ArcFace TPAMI paper (seed 003) generates identity-preserving faces "without
training any additional generator or discriminator ... only by using the network gradient and
Batch Normalization (BN) priors". The method (as in DeepInversion, Yin et al. 2020): start from
noise x and minimise

    L(x) = (1 − cos(f(x), t))                                   identity: embedding → target
         + λ_bn · mean_l ( ‖μ_l(x) − μ̂_l‖₂ / √(Σ σ̂²_l) + ‖σ²_l(x) − σ̂²_l‖₂ / ‖σ̂²_l‖₂ )
                                                                 BN prior
         + λ_tv · TV(x) + λ_l2 · mean(x²)                       image priors

where μ_l(x), σ²_l(x) are the per-channel mean and (biased) variance of the input of BN layer l
over the batch and the spatial positions, and μ̂_l, σ̂²_l its running statistics (what real
training faces produced). The model stays in eval mode (BN normalises with its running
statistics), each step sees x shifted by a random jitter and randomly mirrored, and x is kept
in the training range [−1, 1]. ``t`` is one target per image: a class centre of the trained
classifier (an identity *inside* the training set) or the embedding of a real face (any
identity).

Two deliberate differences from DeepInversion's ``Σ_l ‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂``:

- Only BN layers over feature maps count (inputs with spatial positions, as DeepInversion
  hooks only BatchNorm2d). The BatchNorm1d on insightface's embedding sees one vector per
  target, so its batch statistics are set by the targets themselves: the prior would fight
  the identity term, and with 16 targets they are mostly noise.
- Each layer's distances are divided by the size of its running statistics and averaged over
  layers, so the prior is a dimensionless number that does not grow with the network's width,
  depth or activation scale. The absolute sum (``deepinversion_bn_sum``) of notebook 04's
  ResNet18 runs into the thousands on noise and on real faces alike, against an identity term
  ≤ 2, so no fixed λ_bn means the same on two networks; notebook 13 prints both measures on
  noise and on real faces.

Taught in: notebooks/13_inversion.ipynb
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = ["bn_statistics_loss", "deepinversion_bn_sum", "image_statistics", "invert", "to_uint8",
           "total_variation"]


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


_EPS = 1e-12  # guards the relative distances against an all-zero running variance


class _Statistics:
    """Forward hooks on every BN layer that add its relative batch-statistics distance to
    ``total`` when its input has spatial positions (feature maps, not embedding vectors)."""

    def __init__(self, layers) -> None:
        self.total: Tensor | None = None
        self.count = 0
        self.handles = [m.register_forward_hook(self._hook) for m in layers]

    def _hook(self, module, inputs, _output) -> None:
        x = inputs[0]
        if x.ndim < 3:  # (B, C) vectors: the embedding's BN, see the module docstring
            return
        dims = [0] + list(range(2, x.ndim))  # batch and every spatial axis
        mean = x.mean(dims)
        var = x.var(dims, unbiased=False)
        rv = module.running_var
        term = (torch.linalg.vector_norm(mean - module.running_mean)
                / rv.sum().clamp_min(_EPS).sqrt()
                + torch.linalg.vector_norm(var - rv) / torch.linalg.vector_norm(rv).clamp_min(
                    _EPS))
        self.total = term if self.total is None else self.total + term
        self.count += 1

    def mean(self) -> Tensor | None:
        """The mean of the layer terms of the last forward pass (None: no layer counted)."""
        return None if self.total is None else self.total / self.count

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def bn_statistics_loss(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run ``model`` on ``x`` and return (its output, the BN prior): the mean over its
    BatchNorm layers on feature maps of ‖μ_l − μ̂_l‖₂ / √(Σ σ̂²_l) + ‖σ²_l − σ̂²_l‖₂ / ‖σ̂²_l‖₂,
    a dimensionless distance (see the module docstring); statistics over the batch and the
    spatial positions, the variance biased (divided by the count), as BN computes it in
    training. BN layers on (B, C) vectors, such as an embedding's BatchNorm1d, are left out.

    Raises:
        ValueError: the model has no BatchNorm layer with running statistics on feature maps.

    Example:
        >>> bn = nn.BatchNorm2d(2).eval()  # running mean (0, 0), variance (1, 1)
        >>> x = torch.tensor([[1.0, 0.0], [3.0, 0.0]]).view(2, 2, 1, 1)  # μ (2, 0), σ² (1, 0)
        >>> _, loss = bn_statistics_loss(bn, x)
        >>> round(loss.item(), 4)  # ‖(2, 0)‖ / √2 + ‖(0, −1)‖ / ‖(1, 1)‖
        2.1213
    """
    layers = _bn_layers(model)
    if not layers:
        raise ValueError("model must contain BatchNorm layers with running statistics (the "
                         "prior is their stored mean and variance)")
    stats = _Statistics(layers)
    try:
        out = model(x)
    finally:
        stats.close()
    if stats.count == 0:
        raise ValueError("model must contain BatchNorm layers on feature maps (inputs with "
                         "spatial positions); its BatchNorm layers only see vectors")
    return out, stats.mean()


def deepinversion_bn_sum(model: nn.Module, x: Tensor) -> float:
    """DeepInversion's BN prior as published, for comparison with ``bn_statistics_loss``:
    Σ_l ‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂ over *every* BatchNorm layer with running statistics
    (on vectors too), statistics over the batch and any spatial positions, variance biased.
    Absolute, so it grows with the network's width, depth and activation scale.

    Example:
        >>> bn = nn.BatchNorm2d(2).eval()  # running mean (0, 0), variance (1, 1)
        >>> x = torch.tensor([[1.0, 0.0], [3.0, 0.0]]).view(2, 2, 1, 1)  # μ (2, 0), σ² (1, 0)
        >>> round(deepinversion_bn_sum(bn, x), 4)  # ‖(2, 0)‖ + ‖(0, −1)‖
        3.0
    """
    layers = _bn_layers(model)
    if not layers:
        raise ValueError("model must contain BatchNorm layers with running statistics")
    terms: list[float] = []

    def hook(module, inputs, _output) -> None:
        h = inputs[0]
        dims = [0] + list(range(2, h.ndim))
        terms.append(float(torch.linalg.vector_norm(h.mean(dims) - module.running_mean)
                           + torch.linalg.vector_norm(h.var(dims, unbiased=False)
                                                      - module.running_var)))

    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return sum(terms)


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference between horizontally and vertically adjacent pixels of
    (B, C, H, W) images (the anisotropic TV, averaged over every difference).

    Example:
        >>> total_variation(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]]))  # |1-0| twice, 0 twice
        tensor(0.5000)
    """
    dh = (x[..., 1:, :] - x[..., :-1, :]).abs()
    dw = (x[..., :, 1:] - x[..., :, :-1]).abs()
    return (dh.sum() + dw.sum()) / (dh.numel() + dw.numel())


def _check_number(name: str, value, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return float(value)


def invert(model: nn.Module, target: Tensor, *, input_size: int, steps: int = 300,
           lr: float = 0.05, bn_weight: float = 1.0, tv_weight: float = 0.05,
           l2_weight: float = 0.0, jitter: int = 2, flip: bool = True, seed: int = 0,
           init: Tensor | None = None, device: str | torch.device | None = None,
           progress: bool = True) -> dict:
    """Images whose embeddings match ``target``, with the BN statistics as the prior.

    Args:
        model: a trained backbone, (B, 3, S, S) in [−1, 1] -> (B, D); used in eval mode, its
            parameters untouched (their gradients are not kept).
        target: (B, D) one target embedding per image (normalised here).
        input_size: S, the model's input size in pixels.
        steps: Adam steps.
        lr: Adam learning rate, in units of the [−1, 1] pixel range.
        bn_weight: λ_bn (0 turns the BN prior off); the prior is dimensionless, ≈ 0.1–0.3 for
            a batch of real faces, so λ_bn ≈ 1 weighs it like the identity term.
        tv_weight, l2_weight: λ_tv and λ_l2 of the image priors.
        jitter: the largest random shift, in pixels, applied before each step (0: none).
        flip: mirror the batch at random on each step.
        seed: seeds the starting noise and the jitter, so a call is reproducible.
        init: (B, 3, S, S) starting images instead of noise.
        device: where to run (default: the model's device).
        progress: show a progress bar.

    Returns:
        {"images": (B, 3, S, S) float in [−1, 1] on the CPU, "cosine": (B,) final cosine
        between each image's embedding (unjittered) and its target, "history": {"cosine",
        "bn", "tv"} per step (batch means; "bn" is the unweighted statistics distance)}.

    Raises:
        ValueError: target not (B, D) finite and nonzero, or D not the model's; bad numbers;
            bn_weight > 0 on a model without BatchNorm layers.
    """
    lr, bn_weight, tv_weight, l2_weight = _check_invert_args(
        model, target, input_size=input_size, steps=steps, jitter=jitter, lr=lr,
        bn_weight=bn_weight, tv_weight=tv_weight, l2_weight=l2_weight)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    shape = (target.shape[0], 3, input_size, input_size)
    if init is None:
        x0 = 0.5 * torch.randn(shape, generator=gen)
    else:
        if tuple(init.shape) != shape:
            raise ValueError(f"init must have shape {shape}, got {tuple(init.shape)}")
        x0 = init.detach().float().cpu()
    x = x0.clamp(-1, 1).to(dev).requires_grad_(True)
    t = F.normalize(target.detach().float(), dim=1).to(dev)
    weights = {"bn": bn_weight, "tv": tv_weight, "l2": l2_weight}
    try:
        _probe(model, x, t, bn_weight)
        opt = torch.optim.Adam([x], lr=lr, betas=(0.5, 0.99))
        history: dict[str, list[float]] = {"cosine": [], "bn": [], "tv": []}
        layers = _bn_layers(model)  # measured even when bn_weight = 0, for comparison
        for _ in tqdm(range(steps), desc="inverting", unit="step", leave=False,
                      disable=not progress):
            for key, value in _inversion_step(model, x, t, opt, layers, gen, weights,
                                              jitter=jitter, flip=flip).items():
                history[key].append(value)
        with torch.no_grad():
            final = F.cosine_similarity(model(x), t, dim=1)
    finally:
        for p, r in zip(model.parameters(), requires, strict=True):
            p.requires_grad_(r)
        model.train(was_training)
    return {"images": x.detach().cpu(), "cosine": final.cpu(), "history": history}


def _check_invert_args(model: nn.Module, target: Tensor, *, input_size: int, steps: int,
                       jitter: int, lr: float, bn_weight: float, tv_weight: float,
                       l2_weight: float) -> tuple[float, float, float, float]:
    """:func:`invert`'s argument checks; returns lr and the three weights as floats."""
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size < 8:
        raise ValueError(f"input_size must be an integer >= 8 pixels, got {input_size!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(jitter, int) or isinstance(jitter, bool) or jitter < 0:
        raise ValueError(f"jitter must be an integer >= 0 pixels, got {jitter!r}")
    lr = _check_number("lr", lr, 1e-12)
    bn_weight = _check_number("bn_weight", bn_weight)
    tv_weight = _check_number("tv_weight", tv_weight)
    l2_weight = _check_number("l2_weight", l2_weight)
    if not isinstance(target, Tensor) or target.ndim != 2 or target.shape[0] < 1:
        raise ValueError(f"target must be a (B, D) tensor, got "
                         f"{tuple(target.shape) if isinstance(target, Tensor) else target!r}")
    if not torch.isfinite(target).all() or (target.norm(dim=1) == 0).any():
        raise ValueError("target must be finite with no zero rows")
    if bn_weight > 0 and not _bn_layers(model):
        raise ValueError("bn_weight > 0 needs a model with BatchNorm layers; pass bn_weight=0")
    return lr, bn_weight, tv_weight, l2_weight


def _probe(model: nn.Module, x: Tensor, t: Tensor, bn_weight: float) -> None:
    """One forward pass on the first image: the model's BN layers see feature maps when the
    prior is on, and its embedding has the target's D (else ValueError)."""
    probe_stats = _Statistics(_bn_layers(model))
    try:
        with torch.no_grad():
            probe = model(x[:1])
    finally:
        probe_stats.close()
    if bn_weight > 0 and probe_stats.count == 0:
        raise ValueError("bn_weight > 0 needs BatchNorm layers on feature maps; this "
                         "model's only normalise vectors; pass bn_weight=0")
    if probe.ndim != 2 or probe.shape[1] != t.shape[1]:
        raise ValueError(f"target has D = {t.shape[1]}, the model outputs "
                         f"{tuple(probe.shape[1:])}")


def _inversion_step(model: nn.Module, x: Tensor, t: Tensor, opt: torch.optim.Optimizer,
                    layers: list, gen: torch.Generator, weights: dict[str, float], *,
                    jitter: int, flip: bool) -> dict[str, float]:
    """One Adam step on the pixels ``x`` (jittered, maybe mirrored view); returns the step's
    batch-mean cosine, BN distance (unweighted) and total variation."""
    dx, dy = (torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
              if jitter else (0, 0))
    view = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if flip and bool(torch.rand((), generator=gen) < 0.5):
        view = view.flip(3)
    stats = _Statistics(layers)
    try:
        emb = model(view)
    finally:
        stats.close()
    cos = F.cosine_similarity(emb, t, dim=1)
    bn = stats.mean() if stats.count else torch.zeros((), device=x.device)
    tv = total_variation(x)
    loss = (1 - cos).mean() + weights["bn"] * bn + weights["tv"] * tv \
        + weights["l2"] * x.pow(2).mean()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the inversion loss became {loss.item()}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        x.clamp_(-1, 1)
    return {"cosine": cos.mean().item(), "bn": float(bn.detach()), "tv": tv.item()}


def to_uint8(images: Tensor) -> np.ndarray:
    """(B, 3, S, S) float images in [−1, 1] (the models' input range) -> (B, S, S, 3) uint8,
    the layout SynthFaces renders have (the inverse of the scaling ``embed_images`` applies).

    Example:
        >>> to_uint8(torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)).tolist()
        [[[[0, 128, 255]]]]
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be a (B, 3, S, S) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else images!r}")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def image_statistics(images: np.ndarray) -> dict[str, float]:
    """Low-level statistics of a set of (N, H, W, 3) uint8 images, in grey levels: the mean
    and standard deviation of all pixel values, the mean absolute difference of adjacent pixels
    (``tv``, the roughness the TV prior penalises) and the fraction of saturated values (0 or
    255). Compare generated sets with real ones by these.

    Example:
        >>> img = np.zeros((1, 2, 2, 3), np.uint8); img[0, :, 1] = 255
        >>> image_statistics(img)
        {'mean': 127.5, 'std': 127.5, 'tv': 127.5, 'saturated': 1.0}
    """
    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8 or a.size == 0:
        raise ValueError(f"images must be (N, H, W, 3) uint8, got shape {a.shape} and dtype "
                         f"{a.dtype}")
    f = a.astype(np.float64)
    dh, dw = np.abs(np.diff(f, axis=1)), np.abs(np.diff(f, axis=2))
    return {"mean": float(f.mean()), "std": float(f.std()),
            "tv": float((dh.sum() + dw.sum()) / (dh.size + dw.size)),
            "saturated": float(((a == 0) | (a == 255)).mean())}
