"""The passes of the all-pairs evaluator: histogram + positives, and collection of chosen bins.

Pass 1 (:func:`scan` with ``histogram=True``) counts every counted pair's key per bin, keeps the
positive pairs' scores and keys, and may collect the pairs of some bins at once (those that
:func:`speculate` predicts from a row sample). Later passes only collect bins. Collected scores
are kept as distinct values with multiplicities, so memory follows the number of distinct
scores in the collected bins, not their count. On a CPU with two or more torch threads the
single-threaded part of each tile (``bincount``, the collection) runs in two halves side by
side; the result is the same.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from arclab.evaluation._select import Counts, widen
from arclab.evaluation._tiles import Problem, bin_keys, call_mask, scan_tiles

__all__ = ["SPECULATION_BUDGET", "counts_of", "scan", "speculate", "to_cache"]

SPECULATION_BUDGET = 1 << 22
"""Most distinct scores pass 1 may collect on the sample's prediction (48 MiB with counts)."""


def _capture(s: Tensor, k: Tensor, lut: Tensor) -> np.ndarray | None:
    """Scores of the pairs whose key is marked in ``lut`` (flat views), or None if there are none.

    Hits are rare, so the flags are scanned eight at a time (as int64 words) first.
    """
    flags = lut.index_select(0, k)
    if flags.numel() % 8:
        where = flags.nonzero().squeeze(1)
    else:
        words = flags.view(torch.int64).nonzero().squeeze(1)
        row, col = flags.view(-1, 8).index_select(0, words).nonzero(as_tuple=True)
        where = words.index_select(0, row) * 8 + col
    return s.index_select(0, where).cpu().numpy() if where.numel() else None


def _count_and_capture(s: Tensor, k: Tensor, bins: int, histogram: bool,
                       lut: Tensor | None, lut_idx: Tensor | None
                       ) -> tuple[Tensor | None, np.ndarray | None]:
    """Histogram of the keys (if asked) and the scores in the ``lut`` bins, for flat views."""
    h = torch.bincount(k, minlength=bins + 1) if histogram else None
    if lut is None or (h is not None and int(h.index_select(0, lut_idx).sum()) == 0):
        return h, None
    return h, _capture(s, k, lut)


def _compress(store: list) -> list:
    """Merge stored chunks (raw values, or distinct values with counts) into one chunk."""
    raw = [v for v, n in store if n is None]
    merged = [(v, n) for v, n in store if n is not None]
    if raw:
        v = np.sort(np.concatenate(raw))
        starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
        merged.append((v[starts], np.diff(np.r_[starts, len(v)])))
    if len(merged) > 1:
        v = np.concatenate([m[0] for m in merged])
        n = np.concatenate([m[1] for m in merged])
        order = np.argsort(v)
        v, n = v[order], n[order]
        starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
        merged = [(v[starts], np.add.reduceat(n, starts))]
    return merged


def scan(prob: Problem, bins: int, lut_bins: np.ndarray | None, *, histogram: bool,
          progress: bool, desc: str, cap: int | None = None) -> dict:
    """One pass over the tiles: histogram and positives (pass 1) and/or collection of bins."""
    dev = prob.x.device
    hist = torch.zeros(bins + 1, dtype=torch.int64, device=dev) if histogram else None
    pos_v: list[Tensor] = []
    pos_k: list[Tensor] = []
    store: list | None = None
    lut = lut_idx = None
    if lut_bins is not None and len(lut_bins):
        lut_idx = torch.as_tensor(np.asarray(lut_bins), dtype=torch.int64, device=dev)
        lut = torch.zeros(bins + 1, dtype=torch.uint8, device=dev).index_fill_(0, lut_idx, 1)
        store, pending = [], 0
    # bincount and the capture run on one core; on a CPU with two or more threads, each tile
    # is split in two halves done side by side (torch releases the GIL)
    pool = (ThreadPoolExecutor(1) if dev.type == "cpu" and torch.get_num_threads() > 1
            else None)
    for t, s, k in scan_tiles(prob, bins, desc=desc, progress=progress):
        flat, sv = k.view(-1), s.view(-1)
        args = (bins, histogram, lut if store is not None else None,
                lut_idx if store is not None else None)
        if pool is not None and flat.numel() >= 1 << 16:
            half = flat.numel() // 16 * 8
            first = pool.submit(_count_and_capture, sv[:half], flat[:half], *args)
            h, got = _count_and_capture(sv[half:], flat[half:], *args)
            h0, got0 = first.result()
            h, got = (h + h0 if histogram else None), [got0, got]
        else:
            h, got = _count_and_capture(sv, flat, *args)
            got = [got]
        if histogram:
            hist += h
            a, b = prob.pos_ptr[t], prob.pos_ptr[t + 1]
            if b > a:
                pk = flat.index_select(0, prob.pos_flat[a:b])
                pos_k.append(pk[pk != bins])
                pos_v.append(sv.index_select(0, prob.pos_flat[a:b])[pk != bins])
        if store is not None:
            for g in got:
                if g is not None:
                    store.append((g, None))
                    pending += len(g)
            if pending > (1 << 21):
                store[:], pending = _compress(store), 0
                if cap is not None and len(store[0][0]) > cap:
                    store = None  # the prediction was poor: leave these bins to pass 2
    if pool is not None:
        pool.shutdown()
    empty = (np.zeros(0, np.float32), np.zeros(0, np.int64))
    out = {"store": None if store is None else _compress(store)[0] if store else empty}
    if hist is not None:
        pos = torch.cat(pos_v).cpu().numpy() if pos_v else empty[0]
        pos_keys = torch.cat(pos_k).cpu().numpy() if pos_k else np.zeros(0, np.int32)
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


def to_cache(store: tuple, wanted: np.ndarray, c: Counts, device: torch.device) -> dict:
    """Negative multisets of the wanted bins: collected scores minus the positives there.

    Keys are recomputed from the values with :func:`bin_keys` on the tiles' device; any
    disagreement with pass 1 shows up as a count that differs from the histogram.
    """
    vals, counts = store
    wanted = np.asarray(wanted, dtype=np.int64)
    wanted = wanted[c.hist[wanted] > 0]  # empty bins need no entry
    keys = bin_keys(torch.from_numpy(vals).to(device), len(c.hist)).cpu().numpy()
    v, n = vals.astype(np.float64), counts.astype(np.int64)
    pv = c.pos[np.isin(c.pos_keys, wanted)]
    at = np.searchsorted(v, pv)
    if pv.size and (at.max() >= v.size or not np.array_equal(v[at], pv)):
        raise RuntimeError("a positive score is missing from its bin: scores differ between "
                           "passes (non-deterministic matmul?)")
    np.subtract.at(n, at, 1)
    if not np.array_equal(np.bincount(keys, weights=n, minlength=len(c.hist))[wanted],
                          c.hist[wanted]):
        raise RuntimeError("collected scores disagree with the histogram: scores differ "
                           "between passes (non-deterministic matmul?)")
    v, keys, n = v[n > 0], keys[n > 0], n[n > 0]
    lo, hi = np.searchsorted(keys, wanted, "left"), np.searchsorted(keys, wanted, "right")
    return {int(b): (v[a:z][::-1], n[a:z][::-1]) for b, a, z in zip(wanted, lo, hi)}


def _floats_in(lo_key: int, hi_key: int, bins: int) -> int:
    """How many float32 values bins lo_key..hi_key span: a bound on their distinct scores."""
    edges = np.array([lo_key, hi_key + 1], np.float64) / (bins // 2) - 1
    bits = edges.astype(np.float32).view(np.int32).astype(np.int64)
    ordered = np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))
    return int(ordered[1] - ordered[0]) + 1


def speculate(prob: Problem, fprs: list[float], rule: str, bins: int) -> np.ndarray:
    """Bins likely to hold each threshold, predicted from the scores of a few whole rows.

    Only a guess: pass 1 collects these bins too, and a later pass reads any it missed.
    """
    x, n = prob.x, prob.x.shape[0]
    rows = np.sort(np.random.default_rng(0).choice(
        n, min(max(1, n // 8), max(1, math.ceil((1 << 20) / n))), replace=False))
    r = torch.as_tensor(rows, device=x.device)
    cols = torch.arange(n, device=x.device)
    ids = torch.as_tensor(prob.ids, device=x.device)
    keep = cols[None, :] != r[:, None]
    if prob.groups is not None:
        groups = torch.as_tensor(prob.groups, device=x.device)
        keep &= groups[None, :] != groups[r][:, None]
    if prob.mask_fn is not None:
        keep &= ~call_mask(prob.mask_fn, torch.minimum(r[:, None], cols[None, :]),
                           torch.maximum(r[:, None], cols[None, :]))
    same = ids[None, :] == ids[r][:, None]
    all_keys = bin_keys(x[r] @ x.T, bins)
    sample = torch.bincount(all_keys[keep & ~same], minlength=bins).cpu().numpy()
    pos_keys = np.sort(all_keys[keep & same].cpu().numpy())
    size = int(sample.sum())
    if size == 0:
        return np.zeros(0, np.int64)
    m_est = n * (n - 1) / 2 - len(prob.pos_flat)
    hist = sample * (m_est / size)
    from_top = np.cumsum(sample[::-1])
    windows = []
    for f in fprs:
        if rule == "strict" and f * m_est > m_est - 0.5:
            continue  # k >= n_neg: nothing to read
        ks = f * size
        lo_rank = math.floor(ks - 6 * math.sqrt(ks) - 4)  # 0-based, descending
        hi_rank = math.ceil(ks + 6 * math.sqrt(ks) + 4)
        hi_key = bins - 1
        if lo_rank > 0:
            hi_key = min(bins - int(np.searchsorted(from_top, lo_rank + 1)), bins - 1)
        lo_key = 0
        if hi_rank < size:
            lo_key = max(bins - 2 - int(np.searchsorted(from_top, hi_rank + 1)), 0)
        if rule == "nearest":
            lo_key, hi_key = widen((lo_key, hi_key), pos_keys, hist, SPECULATION_BUDGET / 8, 1)
        windows.append((min(hist[lo_key:hi_key + 1].sum(), _floats_in(lo_key, hi_key, bins)),
                        lo_key, hi_key))
    chosen = np.zeros(bins, bool)
    total = 0.0
    for cost, lo_key, hi_key in sorted(windows):
        if total + cost > SPECULATION_BUDGET:
            break
        chosen[lo_key:hi_key + 1] = True
        total += cost
    return np.flatnonzero(chosen)
