"""Tiles of the upper triangle of the all-pairs cosine matrix, shared by every pass.

The evaluator visits the unordered pairs i < j tile by tile. Every pass, and
:func:`all_pair_scores`, computes a tile with the same matmul call on the same slices into a
buffer of the same shape, so a pair's float32 score is the same number in every pass: that is
what makes the histogram-then-refine selection exact. A tile's *keys* are its scores' histogram
bins, ``trunc(clamp((s + 1) * bins / 2, 0, bins - 1))`` in float32 (:func:`bin_keys`), a
monotone function of the score (every value in bin b is below every value in bin b + 1); pairs
that do not count (j <= i, or excluded by the mask) get the sentinel key ``bins``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["DEFAULT_BINS", "Problem", "all_pair_scores", "as_features", "as_ids", "bin_keys",
           "call_mask", "default_block", "prepare", "same_value_pairs", "scan_tiles",
           "tile_matmul", "tiles_of"]

DEFAULT_BINS = 1 << 16
"""Histogram bins over [-1, 1] (width 2**-15 ≈ 3.1e-5 in cosine)."""

PairMask = Callable[[Tensor, Tensor], Tensor]


class Problem(NamedTuple):
    """Everything a pass needs; built once by :func:`prepare`."""

    x: Tensor                       # (N, D) float32, rows L2-normalised, on the device
    ids: np.ndarray                 # (N,) int64
    groups: np.ndarray | None       # (N,) int64 group ids of the mask, or None
    mask_fn: PairMask | None        # callable mask, or None
    tiles: list[tuple[int, int, int, int]]  # (i0, i1, j0, j1), upper triangle, in visit order
    pos_flat: Tensor                # flat index inside its tile of every same-id pair i < j
    pos_ptr: np.ndarray             # tile t owns pos_flat[pos_ptr[t]:pos_ptr[t + 1]]
    excl_flat: Tensor               # same for the same-group pairs of an integer mask
    excl_ptr: np.ndarray


def as_features(features: Tensor | np.ndarray, device: str | torch.device | None,
                name: str = "features") -> Tensor:
    """(N, D) float32 rows on ``device`` (default: the input's), each scaled to unit L2 norm."""
    t = features.detach() if isinstance(features, Tensor) else torch.as_tensor(np.asarray(features))
    if t.dtype == torch.bool or t.is_complex() or not (t.is_floating_point() or t.dtype in (
            torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, D) with N >= 2 and D >= 1, "
                         f"got shape {tuple(t.shape)}")
    t = t.to(torch.device(device) if device is not None else t.device, torch.float32)
    norms = torch.linalg.vector_norm(t, dim=1, keepdim=True)
    odd = ~torch.isfinite(norms[:, 0]) | (norms[:, 0] < 1e-18)
    if odd.any():  # NaN/inf, zero, or a norm that over- or underflows: look closer
        rows = odd.nonzero()[:, 0]
        sub = t[rows]
        bad = ~torch.isfinite(sub).all(dim=1)
        if bad.any():
            raise ValueError(f"{name} must be finite, got NaN or inf in row "
                             f"{int(rows[bad][0])}")
        scale = sub.abs().amax(dim=1, keepdim=True)
        if (scale == 0).any():
            raise ValueError(f"{name} must have nonzero rows (cosine is undefined), got a zero "
                             f"row at index {int(rows[scale[:, 0] == 0][0])}")
        sub = sub / scale
        t = t.clone()
        t[rows] = sub
        norms = norms.clone()
        norms[rows] = torch.linalg.vector_norm(sub, dim=1, keepdim=True)
    return t / norms


def as_ids(ids: Tensor | np.ndarray, n: int, name: str = "ids") -> np.ndarray:
    """(N,) int64 labels; ``n`` is the number of feature rows they must match."""
    a = ids.detach().cpu().numpy() if isinstance(ids, Tensor) else np.asarray(ids)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match features, got {a.shape}")
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def same_value_pairs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i, j), i < j, with ``values[i] == values[j]``: sum over values of C(n_v, 2)."""
    order = np.argsort(values, kind="stable")
    sorted_v = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for size in np.unique(sizes[sizes >= 2]):
        members = order[starts[sizes == size][:, None] + np.arange(size)]  # ascending per row
        a, b = np.triu_indices(size, 1)
        out_i.append(members[:, a].ravel())
        out_j.append(members[:, b].ravel())
    return np.concatenate(out_i), np.concatenate(out_j)


def tiles_of(n: int, block: int) -> list[tuple[int, int, int, int]]:
    """Tiles (i0, i1, j0, j1) of the upper triangle (block row <= block column), row-major."""
    edges = list(range(0, n, block)) + [n]
    nb = len(edges) - 1
    return [(edges[a], edges[a + 1], edges[b], edges[b + 1])
            for a in range(nb) for b in range(a, nb)]


def _by_tile(i: np.ndarray, j: np.ndarray, n: int, block: int,
             device: torch.device) -> tuple[Tensor, np.ndarray]:
    """Flat in-tile index of pairs i < j, grouped by tile in visit order, and tile offsets."""
    nb = math.ceil(n / block)
    bi, bj = i // block, j // block
    order = np.argsort(bi * nb + bj, kind="stable")
    i, j, bi, bj = i[order], j[order], bi[order], bj[order]
    width = np.minimum(block, n - bj * block)
    flat = (i - bi * block) * width + (j - bj * block)
    tile_ids = np.array([a * nb + b for a in range(nb) for b in range(a, nb)], dtype=np.int64)
    ptr = np.r_[np.searchsorted(bi * nb + bj, tile_ids, side="left"), len(i)]
    return torch.as_tensor(flat, dtype=torch.int64).to(device), ptr


def prepare(features: Tensor | np.ndarray, ids: Tensor | np.ndarray, *,
            block_size: int | None, device: str | torch.device | None,
            mask: np.ndarray | Tensor | PairMask | None) -> Problem:
    """Validate the inputs and lay out the tiles and the pairs that need special handling."""
    x = as_features(features, device)
    n = x.shape[0]
    ids_np = as_ids(ids, n)
    block_size = default_block(block_size, x.device)
    groups, mask_fn = None, None
    if callable(mask):
        mask_fn = mask
    elif mask is not None:
        m = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
        if m.dtype == bool:
            raise ValueError("mask must be None, an (N,) integer array of group ids or a "
                             "callable; got a bool array (to drop items, index features and "
                             "ids instead)")
        groups = as_ids(m, n, name="mask")
    pi, pj = same_value_pairs(ids_np)
    pos_flat, pos_ptr = _by_tile(pi, pj, n, block_size, x.device)
    ei, ej = same_value_pairs(groups) if groups is not None else (pi[:0], pj[:0])
    excl_flat, excl_ptr = _by_tile(ei, ej, n, block_size, x.device)
    return Problem(x, ids_np, groups, mask_fn, tiles_of(n, block_size), pos_flat, pos_ptr,
                   excl_flat, excl_ptr)


def default_block(block_size: int | None, device: torch.device) -> int:
    """The tile side: ``block_size`` checked, or 1024 on the CPU and 4096 elsewhere."""
    if block_size is None:
        return 1024 if device.type == "cpu" else 4096
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return block_size


def tile_matmul(x: Tensor, tile: tuple[int, int, int, int], workspace: dict) -> Tensor:
    """Scores of one tile, ``x[i0:i1] @ x[j0:j1].T``, into the workspace buffer of its shape.

    The one place a score is computed: passes and :func:`all_pair_scores` all call it, so the
    same pair gets the same float32 number. The returned buffer is reused by the next call.
    """
    i0, i1, j0, j1 = tile
    shape = (i1 - i0, j1 - j0)
    if shape not in workspace:
        workspace[shape] = tuple(torch.empty(shape, dtype=dt, device=x.device)
                                 for dt in (torch.float32, torch.float32, torch.int32))
    return torch.matmul(x[i0:i1], x[j0:j1].T, out=workspace[shape][0])


def bin_keys(scores: Tensor, bins: int, out_f: Tensor | None = None,
             out_i: Tensor | None = None) -> Tensor:
    """Histogram bin of each score: ``trunc(clamp(h + h·s, 0, bins - 1))``, h = bins / 2, int32.

    ``bins`` is a power of two, so h·s is exact and h + h·s is the correctly rounded
    (s + 1)·h whether or not the kernel fuses the multiply-add: the key is a deterministic,
    monotone non-decreasing function of the float32 score on any device.
    """
    if bins < 2 or bins & (bins - 1):
        raise ValueError(f"bins must be a power of two >= 2, got {bins}")
    h = scores.new_full((), bins // 2)
    f = torch.add(h, scores, alpha=bins // 2, out=out_f).clamp_(0, bins - 1)
    return out_i.copy_(f) if out_i is not None else f.to(torch.int32)


def call_mask(mask_fn: PairMask, i: Tensor, j: Tensor) -> Tensor:
    """``mask_fn(i, j)``, checked to be a bool tensor of the broadcast shape of i and j."""
    shape = torch.broadcast_shapes(i.shape, j.shape)
    drop = mask_fn(i, j)
    if (not isinstance(drop, Tensor) or drop.dtype != torch.bool
            or torch.broadcast_shapes(drop.shape, shape) != shape):
        raise ValueError(f"mask must return a bool tensor broadcastable to {tuple(shape)}, got "
                         f"{getattr(drop, 'dtype', type(drop).__name__)} "
                         f"{tuple(getattr(drop, 'shape', ()))}")
    return drop.to(i.device)


def scan_tiles(prob: Problem, bins: int, *, desc: str, progress: bool
               ) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield (tile index, scores, keys) over the upper triangle; non-counting pairs keyed ``bins``.

    Both tensors are workspace buffers, overwritten by the next tile.
    """
    workspace: dict = {}
    tril: dict[int, Tensor] = {}
    dev = prob.x.device
    for t, tile in enumerate(tqdm(prob.tiles, desc=desc, leave=False, disable=not progress)):
        i0, i1, j0, j1 = tile
        s = tile_matmul(prob.x, tile, workspace)
        _, kf, ki = workspace[s.shape]
        k = bin_keys(s, bins, kf, ki)
        if i0 == j0:
            if s.shape[0] not in tril:
                tril[s.shape[0]] = torch.ones(s.shape, dtype=torch.bool, device=dev).tril()
            k.masked_fill_(tril[s.shape[0]], bins)
        if prob.mask_fn is not None:
            k.masked_fill_(call_mask(prob.mask_fn, torch.arange(i0, i1, device=dev)[:, None],
                                     torch.arange(j0, j1, device=dev)[None, :]), bins)
        a, b = prob.excl_ptr[t], prob.excl_ptr[t + 1]
        if b > a:
            k.view(-1).index_fill_(0, prob.excl_flat[a:b], bins)
        yield t, s, k


def all_pair_scores(features: Tensor | np.ndarray, *, block_size: int | None = None,
                    device: str | torch.device | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Every pair's score exactly as the evaluator computes it (same tiles, same float32 ops).

    Memory is O(N²): meant for tests and small N. Pairs come tile by tile, row-major inside a
    tile; pass the same ``block_size`` as to the evaluator to get the same numbers.

    Shapes: features (N, D) -> i (P,), j (P,) int64 with i < j, scores (P,) float32 on the CPU,
    where P = N(N-1)/2.
    Units: scores are cosines in [-1, 1] (up to float32 rounding).

    Raises:
        ValueError: features not (N, D) with N >= 2, or not finite, or with a zero row.

    Example:
        >>> i, j, s = all_pair_scores(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]))
        >>> i.tolist(), j.tolist(), [round(v, 4) for v in s.tolist()]
        ([0, 0, 1], [1, 2, 2], [0.7071, 0.0, 0.7071])

    Taught in: notebooks/08_trillion_pairs.ipynb (planned)
    """
    x = as_features(features, device)
    workspace: dict = {}
    out_i, out_j, out_s = [], [], []
    for tile in tiles_of(x.shape[0], default_block(block_size, x.device)):
        i0, i1, j0, j1 = tile
        s = tile_matmul(x, tile, workspace)
        ii, jj = torch.meshgrid(torch.arange(i0, i1), torch.arange(j0, j1), indexing="ij")
        keep = ii < jj
        out_i.append(ii[keep])
        out_j.append(jj[keep])
        out_s.append(s.cpu()[keep])
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_s)
