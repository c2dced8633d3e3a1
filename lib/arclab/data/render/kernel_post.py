"""The kernel engine's post-processing, compiled (numba): Gaussian blur (``blur``, taps from
``blur_weights``) and noise + clamp (``noise_and_clamp``) in place, the same arithmetic as the
torch engine's :mod:`~arclab.data.render.post`, with the per-image steps (``blur_image``,
``noise_image``) that :mod:`~arclab.data.render.kernel` runs on each image right after
drawing it; and ``parallel``, which runs image ranges on threads for both.

Images run in parallel on ``torch.get_num_threads()`` Python threads (the kernels release the
GIL), not on numba's own thread pool, so that they follow ``torch.set_num_threads`` and are
safe in forked DataLoader workers.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit
from torch import Tensor

__all__ = ["blur", "blur_image", "blur_weights", "noise_and_clamp", "noise_image", "parallel"]


def parallel(run, b: int) -> None:
    """``run(lo, hi)`` over image ranges on ``torch.get_num_threads()`` threads: four ranges
    per thread, handed out as threads come free (images differ in cost: occluders, blur)."""
    threads = max(1, min(torch.get_num_threads(), b))
    if threads == 1:
        run(0, b)
        return
    cuts = np.linspace(0, b, min(b, 4 * threads) + 1).astype(int).tolist()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, cuts[:-1], cuts[1:]))


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _blur_plane(x, k, r, row, tmp):
    """Separable Gaussian blur of one plane ``x`` (H, W) in place, rows first, edges
    replicated, taps ``k[:r + 1]`` (centre first); ``row`` and ``tmp`` are scratch of at least
    W + 2r and (H, W). Each output is k₀·x + Σₜ kₜ·(x₋ₜ + x₊ₜ), as in the torch engine's
    ``post._gaussian_blur``."""
    h, w = x.shape
    k0 = k[0]
    # (inner loops over 1-D rows, which LLVM vectorises: 2.8× faster than 2-D indexing)
    for y in range(h):  # along rows, into tmp: each row padded by replication
        src, out = x[y], tmp[y]
        for i in range(r):
            row[i] = src[0]
            row[w + r + i] = src[w - 1]
        for i in range(w):
            row[r + i] = src[i]
        for i in range(w):
            out[i] = row[i + r] * k0
        for t in range(1, r + 1):
            kt = k[t]
            lo, hi = row[r - t:r - t + w], row[r + t:r + t + w]
            for i in range(w):
                out[i] += (lo[i] + hi[i]) * kt
    for y in range(h):  # along columns, back into the image
        out, mid = x[y], tmp[y]
        for i in range(w):
            out[i] = mid[i] * k0
        for t in range(1, r + 1):
            kt = k[t]
            up, down = tmp[max(y - t, 0)], tmp[min(y + t, h - 1)]
            for i in range(w):
                out[i] += (up[i] + down[i]) * kt


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def blur_image(x, k, r, row, tmp):
    """``_blur_plane`` on every plane of one image ``x`` (C, H, W); reach ``r`` 0: unchanged."""
    if r > 0:
        for ch in range(x.shape[0]):
            _blur_plane(x[ch], k, r, row, tmp)


@njit(nogil=True, cache=True, error_model="numpy")
def _blur_kernel(img, weights, radius, start, stop):
    """``_blur_plane`` over every plane of images start..stop-1 of ``img`` (B, C, H, W);
    image b's taps are ``weights[b, :radius[b] + 1]``, radius 0 leaves it as it is."""
    h, w = img.shape[2:]
    row = np.empty(w + 2 * (weights.shape[1] - 1), np.float32)
    tmp = np.empty((h, w), np.float32)
    for b in range(start, stop):
        blur_image(img[b], weights[b], radius[b], row, tmp)


def blur_weights(sigma: Tensor, radius: Tensor) -> Tensor:
    """Each image's Gaussian taps (B, max radius + 1) float32, centre first, normalised so
    that k₀ + 2·Σₜ kₜ = 1, zero beyond its own ``radius``: computed per radius, exactly as the
    torch engine's ``post._gaussian_blur`` computes them, so that an image's taps do not
    depend on the reach of the others in its batch (float32 sums of 8 or more values round
    differently from shorter ones)."""
    radius = radius.long()
    rmax = int(radius.max()) if len(radius) else 0
    out = torch.zeros(len(radius), rmax + 1)
    for r in torch.unique(radius).tolist():
        if r > 0:
            sel = (radius == r).nonzero().squeeze(1)
            taps = torch.arange(r + 1, dtype=torch.float32)
            k = torch.exp(-0.5 * (taps / sigma[sel].float()[:, None]) ** 2)
            out[sel, :r + 1] = k / (2 * k.sum(1, keepdim=True) - k[:, :1])
    return out


def blur(img: Tensor, sigma: Tensor, radius: Tensor) -> None:
    """Blur each image of ``img`` (B, C, H, W) float32 contiguous in place by its own Gaussian
    ``sigma`` (B,) px with taps reaching ``radius`` (B,) int px (0: no blur); weights from
    ``blur_weights``."""
    if not len(radius) or int(radius.max()) == 0:
        return
    k = blur_weights(sigma, radius).numpy()
    arr, rad = img.numpy(), radius.to(torch.int64).numpy()
    parallel(lambda lo, hi: _blur_kernel(arr, k, rad, lo, hi), len(img))


@njit(nogil=True, cache=True, error_model="numpy", inline="always")
def noise_image(x, bank, offset, s):
    """In place on one flat image ``x``: + s · bank[offset:][:len(x)], then clamp to [0, 1]."""
    zero, one = np.float32(0), np.float32(1)
    n = x.shape[0]
    if s > 0:
        noise = bank[offset:offset + n]
        for i in range(n):  # comparisons, not min/max: LLVM vectorises them
            v = x[i] + s * noise[i]
            v = v if v > zero else zero
            x[i] = v if v < one else one
    else:
        for i in range(n):
            v = x[i] if x[i] > zero else zero
            x[i] = v if v < one else one


@njit(nogil=True, cache=True, error_model="numpy")
def _noise_kernel(flat, bank, offsets, sigma, order, start, stop):
    for j in range(start, stop):
        b = order[j]
        noise_image(flat[b], bank, offsets[b], sigma[b])


def noise_and_clamp(img: Tensor, bank: Tensor, offsets: Tensor, sigma: Tensor,
                    which: Tensor | None = None) -> None:
    """In place: ``img[b] += sigma[b] * bank[offsets[b]:][:img[b].numel()]``, then clamp to
    [0, 1], in one pass (img (B, ...) float32 contiguous), for the images ``which`` (indices;
    None: all)."""
    if not len(img):
        return
    flat = img.view(len(img), -1).numpy()
    bank_np, off = bank.numpy(), offsets.to(torch.int64).numpy()
    sig = sigma.float().numpy()
    order = (np.arange(len(img)) if which is None else which.to(torch.int64).numpy())
    parallel(lambda lo, hi: _noise_kernel(flat, bank_np, off, sig, order, lo, hi), len(order))
