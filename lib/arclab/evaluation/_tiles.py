"""Tiles of the upper triangle of the all-pairs cosine matrix, shared by every pass.

The evaluator visits the unordered pairs i < j tile by tile. Every pass, and
:func:`all_pair_scores`, computes a tile with the same matmul call on the same slices into a
buffer of the same shape, so a pair's float32 score is the same number in every pass: that is
what makes the histogram-then-refine selection exact. A tile's *keys* are its scores' histogram
bins, ``trunc(clamp((s + 1) * bins / 2, 0, bins - 1))`` in float32 (:func:`bin_keys`), a
monotone function of the score (every value in bin b is below every value in bin b + 1); pairs
that do not count (j <= i, or excluded by the mask) get the sentinel key ``bins``, and so do the
positive (same-id) pairs once their scores are read (:func:`fill_keys`), so that the keys count
negatives only. Tiles are not reordered by id: a pair's score depends only on the tiles and
the block size, as :func:`all_pair_scores` reproduces, and the positives' in-tile positions are
listed once (:func:`prepare`), so no tile compares ids.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["DEFAULT_BINS", "Problem", "all_pair_scores", "as_features", "as_ids", "bin_keys",
           "call_mask", "default_block", "fill_keys", "prepare", "same_value_pairs",
           "scan_tiles", "tile_matmul", "tiles_of", "TileGrid", "Tiler", "TileWork"]

DEFAULT_BINS = 1 << 16
"""Histogram bins over [-1, 1] (width 2**-15 ≈ 3.1e-5 in cosine)."""

PairMask = Callable[[Tensor, Tensor], Tensor]


class Problem(NamedTuple):
    """Everything a pass needs; built once by :func:`prepare`."""

    x: Tensor                       # (N, D) float32, rows L2-normalised, on the device
    ids: np.ndarray                 # (N,) int64
    groups: np.ndarray | None       # (N,) int64 group ids of the mask, or None
    mask_fn: PairMask | None        # callable mask, or None
    tiles: TileGrid                 # (i0, i1, j0, j1), upper triangle, in visit order
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
    given = t
    t = t.to(torch.device(device) if device is not None else t.device, torch.float32)
    owned = t.data_ptr() != given.data_ptr()  # a converted copy: normalise it in place
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
        t = t if owned else t.clone()
        t[rows] = sub
        owned = True
        norms = norms.clone()
        norms[rows] = torch.linalg.vector_norm(sub, dim=1, keepdim=True)
    return t.div_(norms) if owned else t / norms


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
    return list(TileGrid(n, block))


class TileGrid(Sequence):
    """The tiles of :func:`tiles_of` as a sequence computed on access: O(N / block) memory
    instead of one tuple per tile (1.5 million of them for N = 1.8 million)."""

    def __init__(self, n: int, block: int):
        self.n, self.block = n, block
        self.rows = math.ceil(n / block)
        a = np.arange(self.rows, dtype=np.int64)
        self.row_start = a * self.rows - a * (a - 1) // 2  # tiles before block row a

    def __len__(self) -> int:
        return self.rows * (self.rows + 1) // 2

    def __getitem__(self, t):
        if not isinstance(t, (int, np.integer)):
            raise TypeError("TileGrid takes integer indices")
        t = int(t) + (len(self) if t < 0 else 0)
        if not 0 <= t < len(self):
            raise IndexError(t)
        a = int(np.searchsorted(self.row_start, t, side="right")) - 1
        b = a + t - int(self.row_start[a])
        blk, n = self.block, self.n
        return a * blk, min(n, (a + 1) * blk), b * blk, min(n, (b + 1) * blk)

    def __iter__(self):
        edges = list(range(0, self.n, self.block)) + [self.n]
        for a in range(self.rows):
            for b in range(a, self.rows):
                yield edges[a], edges[a + 1], edges[b], edges[b + 1]


def _by_tile(i: np.ndarray, j: np.ndarray, n: int, block: int, device: torch.device,
             compact: bool = False) -> tuple[Tensor, np.ndarray]:
    """Flat in-tile index of pairs i < j, grouped by tile in visit order, and tile offsets.

    ``compact``: int32 indices where a tile has fewer than 2**31 elements (half the memory;
    ``index_select`` takes them, ``index_fill_`` does not)."""
    rows = math.ceil(n / block)
    bi, bj = i // block, j // block
    flat = (i - bi * block) * np.minimum(block, n - bj * block) + (j - bj * block)
    tile = bi * rows + bj
    del bi, bj
    order = np.argsort(tile, kind="stable")
    tile, flat = tile[order], flat[order]
    del order
    a, b = np.triu_indices(rows)  # row-major, as the tiles are visited
    ptr = np.r_[np.searchsorted(tile, a * rows + b, side="left"), len(tile)]
    dtype = torch.int32 if compact and block * block < 2**31 else torch.int64
    return torch.as_tensor(flat).to(device, dtype), ptr


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
    pos_flat, pos_ptr = _by_tile(pi, pj, n, block_size, x.device, compact=True)
    ei, ej = same_value_pairs(groups) if groups is not None else (pi[:0], pj[:0])
    excl_flat, excl_ptr = _by_tile(ei, ej, n, block_size, x.device)
    return Problem(x, ids_np, groups, mask_fn, TileGrid(n, block_size), pos_flat, pos_ptr,
                   excl_flat, excl_ptr)


def default_block(block_size: int | None, device: torch.device) -> int:
    """The tile side: ``block_size`` checked, or 1024 on the CPU and 4096 elsewhere."""
    if block_size is None:
        return 1024 if device.type == "cpu" else 4096
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) \
            or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    return int(block_size)


def _buffer(workspace: dict, name: str, numel: int, dtype: torch.dtype,
            device: torch.device) -> Tensor:
    """A flat workspace buffer of at least ``numel`` elements, allocated once and reused."""
    buf = workspace.get(name)
    if buf is None or buf.numel() < numel:
        buf = workspace[name] = torch.empty(numel, dtype=dtype, device=device)
    return buf[:numel]


def tile_matmul(x: Tensor, tile: tuple[int, int, int, int], workspace: dict) -> Tensor:
    """Scores of one tile, ``x[i0:i1] @ x[j0:j1].T``, into the workspace's score buffer.

    The one place a score is computed: passes and :func:`all_pair_scores` all call it, so the
    same pair gets the same float32 number. The buffer is one flat allocation (the first, full
    tile's size) whose leading elements, viewed as (i1 - i0, j1 - j0), hold every tile's
    scores; the returned tensor is overwritten by the next call.
    """
    i0, i1, j0, j1 = tile
    shape = (i1 - i0, j1 - j0)
    out = _buffer(workspace, "scores", shape[0] * shape[1], torch.float32, x.device)
    return torch.matmul(x[i0:i1], x[j0:j1].T, out=out.view(shape))


def bin_keys(scores: Tensor, bins: int, out: Tensor | None = None) -> Tensor:
    """Histogram bin of each score: ``trunc(clamp(h + h·s, 0, bins - 1))``, h = bins / 2, int32.

    ``bins`` is a power of two, so h·s is exact and h + h·s is the correctly rounded
    (s + 1)·h whether or not the kernel fuses the multiply-add: the key is a deterministic,
    monotone non-decreasing function of the float32 score on any device. ``out`` (int32, as
    many elements as ``scores``) receives the keys: the float h + h·s is written into its
    memory viewed as float32, truncated there in place and then clamped as integers (the same
    function: truncation and clamping to integer bounds commute), three passes over one buffer.
    """
    if bins < 2 or bins & (bins - 1):
        raise ValueError(f"bins must be a power of two >= 2, got {bins}")
    if out is None:
        out = torch.empty(scores.shape, dtype=torch.int32, device=scores.device)
    out = out.view(scores.shape)
    as_float = out.view(torch.float32)
    torch.add(scores.new_full((), bins // 2), scores, alpha=bins // 2, out=as_float)
    return out.copy_(as_float).clamp_(0, bins - 1)


def call_mask(mask_fn: PairMask, i: Tensor, j: Tensor) -> Tensor:
    """``mask_fn(i, j)``, checked to be a bool tensor of the broadcast shape of i and j."""
    shape = torch.broadcast_shapes(i.shape, j.shape)
    drop = mask_fn(i, j)
    try:
        fits = (isinstance(drop, Tensor) and drop.dtype == torch.bool
                and torch.broadcast_shapes(drop.shape, shape) == shape)
    except RuntimeError:  # torch's word for shapes that do not broadcast at all
        fits = False
    if not fits:
        raise ValueError(f"mask must return a bool tensor broadcastable to {tuple(shape)}, got "
                         f"{getattr(drop, 'dtype', type(drop).__name__)} "
                         f"{tuple(getattr(drop, 'shape', ()))}")
    return drop.to(i.device)


class TileWork(NamedTuple):
    """One computed tile: its scores, a buffer for its keys and the pairs that need care."""

    t: int                      # tile index into Problem.tiles
    scores: Tensor              # (m, n) float32 workspace buffer
    keys: Tensor                # (m, n) int32 workspace buffer, filled by :func:`fill_keys`
    drop_masks: list[Tensor]    # flat (m·n,) bool tensors, True for pairs that do not count
    drop_index: Tensor | None   # flat in-tile indices (int64) of more pairs that do not count
    positives: Tensor | None    # flat in-tile indices of the same-id pairs


def _part_of(index: Tensor, a: int, b: int, whole: bool) -> Tensor:
    """The entries of a flat in-tile index that fall in a:b, shifted to start at a (int64)."""
    if not whole:
        index = index[(index >= a) & (index < b)] - a
    return index.long()


def fill_keys(work: TileWork, bins: int, a: int = 0, b: int | None = None
              ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Keys of the tile's flat elements ``a:b`` (default all) into its key buffer.

    Pairs that do not count get the sentinel ``bins``, and so do the positive (same-id) pairs
    once read: the keys then count negatives only, and a tile's highest key is that of its
    highest negative. Returns the flat key slice and the (scores, keys) of the positives in
    a:b that count (None if there are none). Parts of one tile can be filled by different
    threads at the same time.
    """
    numel = work.scores.numel()
    b = numel if b is None else b
    whole = a == 0 and b == numel
    s = work.scores.view(-1)[a:b]
    k = bin_keys(s, bins, work.keys.view(-1)[a:b])
    for drop in work.drop_masks:
        k.masked_fill_(drop[a:b], bins)
    if work.drop_index is not None:
        k.index_fill_(0, _part_of(work.drop_index, a, b, whole), bins)
    pos = None
    if work.positives is not None:
        idx = _part_of(work.positives, a, b, whole)
        if idx.numel():
            pk = k.index_select(0, idx)
            counted = pk != bins
            pos = s.index_select(0, idx)[counted], pk[counted]
            k.index_fill_(0, idx, bins)
    return k, pos


class Tiler:
    """Computes a problem's tiles into ``buffers`` workspaces (one per tile worked on at once).

    :meth:`drops` lists a tile's pairs that do not count (j <= i on a diagonal tile, and those
    a callable mask excludes; it calls the mask, so call it on one thread); :meth:`compute`
    runs the tile's matmul into workspace ``space``, and may run on any thread as long as no
    two tiles in the same workspace are in progress at once.
    """

    def __init__(self, prob: Problem, buffers: int = 1):
        self.prob = prob
        dev = prob.x.device
        i0, i1, j0, j1 = prob.tiles[0]  # the first tile is a largest one: size buffers once
        self.spaces: list[dict] = [{} for _ in range(buffers)]
        for workspace in self.spaces:
            for name, dtype in (("scores", torch.float32), ("keys", torch.int32)):
                _buffer(workspace, name, (i1 - i0) * (j1 - j0), dtype, dev)
        self.tril: dict[int, Tensor] = {}
        for m in {i1 - i0, (prob.x.shape[0] - 1) % (i1 - i0) + 1}:  # full and last block
            self.tril[m] = torch.ones(m, m, dtype=torch.bool, device=dev).tril().view(-1)

    def drops(self, t: int) -> list[Tensor]:
        i0, i1, j0, j1 = self.prob.tiles[t]
        drops = [self.tril[i1 - i0]] if i0 == j0 else []
        if self.prob.mask_fn is not None:
            dev = self.prob.x.device
            drop = call_mask(self.prob.mask_fn, torch.arange(i0, i1, device=dev)[:, None],
                             torch.arange(j0, j1, device=dev)[None, :])
            drops.append(drop.expand(i1 - i0, j1 - j0).reshape(-1))
        return drops

    def compute(self, t: int, space: int, drops: list[Tensor]) -> TileWork:
        prob, workspace = self.prob, self.spaces[space]
        s = tile_matmul(prob.x, prob.tiles[t], workspace)
        k = _buffer(workspace, "keys", s.numel(), torch.int32, prob.x.device).view(s.shape)
        a, b = prob.excl_ptr[t], prob.excl_ptr[t + 1]
        c, d = prob.pos_ptr[t], prob.pos_ptr[t + 1]
        return TileWork(t, s, k, drops, prob.excl_flat[a:b] if b > a else None,
                        prob.pos_flat[c:d] if d > c else None)


def scan_tiles(prob: Problem, *, desc: str, progress: bool,
               visit: np.ndarray | None = None) -> Iterator[TileWork]:
    """Compute the tiles of the upper triangle one by one (``visit``: the indices of the tiles
    to compute, ascending; default all); keys are left to :func:`fill_keys`.

    A tile's buffers are overwritten by the next tile. Pairs that do not count: j <= i on
    diagonal tiles, and those the mask excludes; the same-id pairs are passed on.
    """
    tiler = Tiler(prob)
    order = range(len(prob.tiles)) if visit is None else visit.tolist()
    for t in tqdm(order, desc=desc, leave=False, disable=not progress):
        yield tiler.compute(t, 0, tiler.drops(t))


def all_pair_scores(features: Tensor | np.ndarray, *, block_size: int | None = None,
                    device: str | torch.device | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Every pair's score exactly as the evaluator computes it (same tiles, same float32 ops).

    Memory is O(N²): meant for tests and small N. Pairs come tile by tile, row-major inside a
    tile; pass the same ``block_size`` as to the evaluator to get the same numbers.

    Shapes: features (N, D) -> i (P,), j (P,) int64 with i < j, scores (P,) float32 on the CPU,
    where P = N(N-1)/2.
    Units: scores are cosines in [-1, 1] (up to float32 rounding).

    Raises:
        ValueError: features not (N, D) real numbers with N >= 2, not finite or with a zero
            row; block_size not a positive integer (numpy's count, booleans do not).

    Example:
        >>> i, j, s = all_pair_scores(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]))
        >>> i.tolist(), j.tolist(), [round(v, 4) for v in s.tolist()]
        ([0, 0, 1], [1, 2, 2], [0.7071, 0.0, 0.7071])

    Taught in: notebooks/08_trillion_pairs.ipynb
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
