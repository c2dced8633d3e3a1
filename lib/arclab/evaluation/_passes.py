"""The passes of the all-pairs evaluator: histogram + positives, and collection of chosen bins.

Pass 1 (:func:`scan` with ``histogram=True``) counts every counted pair's key per bin, keeps the
positive pairs' scores and keys, and may collect the pairs of some bins at once (those that
:func:`speculate` predicts from a row sample). Later passes only collect bins. Collected scores
are kept as distinct values with multiplicities, so memory follows the number of distinct
scores in the collected bins, not their count.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from arclab.evaluation._select import Counts
from arclab.evaluation._tiles import Problem, bin_keys, scan_tiles

__all__ = ["SPECULATION_BUDGET", "counts_of", "scan", "speculate", "to_cache"]

SPECULATION_BUDGET = 1 << 22
"""Most negative scores pass 1 may collect on the sample's prediction (16 MiB of float32)."""


def _capture(store: list, s: Tensor, k: Tensor, lut: Tensor) -> int:
    """Append the (score, key) of every pair whose key is marked in ``lut``; return how many."""
    nz = lut.index_select(0, k.view(-1)).nonzero().squeeze(1)
    if nz.numel():
        store.append((s.view(-1).index_select(0, nz).cpu().numpy(),
                      k.view(-1).index_select(0, nz).cpu().numpy(),
                      np.ones(nz.numel(), np.int64)))
    return int(nz.numel())


def _compress(store: list) -> list:
    """Merge stored (values, keys, multiplicities) into distinct values, ascending."""
    vals = np.concatenate([p[0] for p in store])
    keys = np.concatenate([p[1] for p in store])
    weights = np.concatenate([p[2] for p in store])
    order = np.argsort(vals, kind="stable")
    vals, keys, weights = vals[order], keys[order], weights[order]
    starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])
    return [(vals[starts], keys[starts], np.add.reduceat(weights, starts))]


def scan(prob: Problem, bins: int, lut_bins: np.ndarray | None, *, histogram: bool,
          progress: bool, desc: str, cap: int | None = None) -> dict:
    """One pass over the tiles: histogram and positives (pass 1) and/or collection of bins."""
    dev = prob.x.device
    hist = torch.zeros(bins + 1, dtype=torch.int64, device=dev) if histogram else None
    pos_v: list[Tensor] = []
    pos_k: list[Tensor] = []
    store: list | None = None
    if lut_bins is not None and len(lut_bins):
        lut_idx = torch.as_tensor(np.asarray(lut_bins), dtype=torch.int64, device=dev)
        lut = torch.zeros(bins + 1, dtype=torch.uint8, device=dev).index_fill_(0, lut_idx, 1)
        store, pending = [], 0
    for t, s, k in scan_tiles(prob, bins, desc=desc, progress=progress):
        flat = k.view(-1)
        if hist is not None:
            h = torch.bincount(flat, minlength=bins + 1)
            hist += h
            a, b = prob.pos_ptr[t], prob.pos_ptr[t + 1]
            if b > a:
                pk = flat.index_select(0, prob.pos_flat[a:b])
                keep = pk != bins
                pos_k.append(pk[keep])
                pos_v.append(s.view(-1).index_select(0, prob.pos_flat[a:b])[keep])
            if store is not None and int(h.index_select(0, lut_idx).sum()) == 0:
                continue
        if store is not None:
            pending += _capture(store, s, k, lut)
            if pending > (1 << 21):
                store[:], pending = _compress(store), 0
                if cap is not None and len(store[0][0]) > cap:
                    store = None  # the prediction was poor: leave these bins to pass 2
    empty = (np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64))
    out = {"store": None if store is None else _compress(store)[0] if store else empty}
    if hist is not None:
        pos = torch.cat(pos_v).cpu().numpy() if pos_v else empty[0]
        pos_keys = torch.cat(pos_k).cpu().numpy() if pos_k else empty[1]
        order = np.argsort(pos, kind="stable")
        out.update(hist=hist.cpu().numpy(), pos=pos[order].astype(np.float64),
                   pos_keys=pos_keys[order])
    return out


def counts_of(first: dict) -> Counts:
    """Negative counts per bin (pass 1's histogram minus its positives) and the positives."""
    bins = len(first["hist"]) - 1
    hist = first["hist"][:bins] - np.bincount(first["pos_keys"], minlength=bins)
    above = np.r_[np.cumsum(hist[::-1])[::-1][1:], 0]
    return Counts(hist, above, int(hist.sum()), first["pos"], first["pos_keys"])


def to_cache(store: tuple, wanted, c: Counts) -> dict:
    """Negative multisets of the wanted bins: collected scores minus the positives there."""
    vals, keys, weights = store
    cache = {}
    for b in wanted:
        lo, hi = np.searchsorted(keys, b, "left"), np.searchsorted(keys, b, "right")
        v, w = vals[lo:hi].astype(np.float64), weights[lo:hi].astype(np.int64)
        plo, phi = np.searchsorted(c.pos_keys, b, "left"), np.searchsorted(c.pos_keys, b, "right")
        pu, pc = np.unique(c.pos[plo:phi], return_counts=True)
        where = np.searchsorted(v, pu)
        if pu.size and (where.max() >= v.size or not np.array_equal(v[where], pu)):
            raise RuntimeError("a positive score was not found in its bin: scores differ "
                               "between passes (non-deterministic matmul?)")
        w[where] -= pc
        if w.sum() != c.hist[b] or (w < 0).any():
            raise RuntimeError(f"bin {b} holds {w.sum()} negatives, the histogram says "
                               f"{c.hist[b]}: scores differ between passes")
        cache[int(b)] = (v[w > 0][::-1], w[w > 0][::-1])
    return cache


def speculate(prob: Problem, fprs: list[float], rule: str, bins: int) -> np.ndarray:
    """Bins likely to hold each threshold, from the scores of a few whole rows."""
    x, n = prob.x, prob.x.shape[0]
    rows = np.sort(np.random.default_rng(0).choice(
        n, min(max(1, n // 8), max(1, math.ceil((1 << 20) / n))), replace=False))
    r = torch.as_tensor(rows, device=x.device)
    cols = torch.arange(n, device=x.device)
    ids = torch.as_tensor(prob.ids, device=x.device)
    keep = (cols[None, :] != r[:, None]) & (ids[None, :] != ids[r][:, None])
    if prob.groups is not None:
        groups = torch.as_tensor(prob.groups, device=x.device)
        keep &= groups[None, :] != groups[r][:, None]
    if prob.mask_fn is not None:
        keep &= ~prob.mask_fn(torch.minimum(r[:, None], cols[None, :]),
                              torch.maximum(r[:, None], cols[None, :])).to(x.device)
    keys = bin_keys((x[r] @ x.T)[keep], bins).sort(descending=True).values.cpu().numpy()
    if keys.size == 0:
        return np.zeros(0, np.int64)
    sample_hist = np.bincount(keys, minlength=bins)
    m_est = n * (n - 1) / 2 - len(prob.pos_flat)
    pad = 1 if rule == "strict" else 3
    windows = []
    for f in fprs:
        ks = f * keys.size
        lo_rank = math.floor(ks - 6 * math.sqrt(ks) - 4)
        hi_rank = math.ceil(ks + 6 * math.sqrt(ks) + 4)
        hi_key = int(keys[lo_rank]) + pad if lo_rank > 0 else bins - 1
        lo_key = int(keys[hi_rank]) - pad if hi_rank < keys.size else 0
        lo_key, hi_key = max(lo_key, 0), min(hi_key, bins - 1)
        cost = sample_hist[lo_key:hi_key + 1].sum() / keys.size * m_est
        windows.append((cost, lo_key, hi_key))
    chosen, total = set(), 0.0
    for cost, lo_key, hi_key in sorted(windows):
        if total + cost > SPECULATION_BUDGET:
            break
        chosen.update(range(lo_key, hi_key + 1))
        total += cost
    return np.array(sorted(chosen), dtype=np.int64)
