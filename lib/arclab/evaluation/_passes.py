"""The passes of the all-pairs evaluator: histogram + positives, and collection of chosen bins.

Pass 1 (:func:`scan` with ``histogram=True``) counts every negative pair's key per bin, keeps
the positive pairs' scores and keys (read, then keyed out of the counts), notes each tile's
highest negative key, and may collect the pairs of some bins at once (those that
:func:`speculate` predicts from a row sample). Later passes only collect bins, and only on the
tiles whose highest key reaches them (:func:`tiles_reaching`). Collected scores are kept as
distinct values with multiplicities, merged as they come, so memory follows the number of
distinct scores in the collected bins, not their count. On a CPU with two or more torch
threads, one worker thread per torch thread takes whole tiles (matmul on one core, keys,
``bincount``, collection), each in its own buffers; the result is the same.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from arclab.evaluation._select import Counts, widen
from arclab.evaluation._tiles import (
    Problem,
    Tiler,
    TileWork,
    bin_keys,
    call_mask,
    fill_keys,
    scan_tiles,
)

__all__ = ["SPECULATION_BUDGET", "counts_of", "scan", "speculate", "tiles_reaching",
           "to_cache"]

SPECULATION_BUDGET = 1 << 22
"""Most distinct scores pass 1 may collect on the sample's prediction (48 MiB with counts)."""


def _capture(s: Tensor, k: Tensor, lut: Tensor) -> np.ndarray | None:
    """Scores of the pairs whose key is marked in ``lut`` (flat views), or None if there are none.

    Hits are rare, so the flags are scanned eight at a time (as int64 words) first, and only
    the words with a hit are looked at byte by byte.
    """
    flags = lut.index_select(0, k)
    if flags.numel() % 8:
        vals = s.index_select(0, flags.nonzero().squeeze(1))
    else:
        words = flags.view(torch.int64)
        at = words.nonzero().squeeze(1)
        hit = words.index_select(0, at).view(torch.bool).view(-1, 8)
        vals = torch.masked_select(s.view(-1, 8).index_select(0, at), hit)
    return vals.cpu().numpy() if vals.numel() else None


class _Part:
    """What one thread adds up in a histogram pass over the tiles (or parts of tiles) it takes:
    the key counts, and per tile the highest key of a negative (-1: none)."""

    def __init__(self, bins: int, n_tiles: int, device: torch.device):
        self.bins = bins
        self.hist = torch.zeros(bins + 1, dtype=torch.int64, device=device)
        self.top = np.full(n_tiles, -1, np.int32)

    def add(self, t: int, k: Tensor, marked: np.ndarray | None,
            marked_dev: Tensor | None) -> bool:
        """Count the keys ``k`` of a part of tile ``t``; True if any is one of the ``marked``
        bins (ascending; ``marked_dev``: the same on the device).

        ``bincount`` without ``minlength`` returns max(k) + 1 counts, which gives the highest
        key for free; only where the sentinel ``bins`` is there (a diagonal tile, a mask, a
        positive) is the highest counted key looked for.
        """
        h = torch.bincount(k)
        n = h.numel()
        self.hist[:n] += h
        top = n - 1
        if top >= self.bins:
            seen = h[:self.bins].nonzero()
            top = int(seen[-1, 0]) if len(seen) else -1
        self.top[t] = max(self.top[t], top)
        if marked is None:
            return False
        m = int(np.searchsorted(marked, n))
        if m == 0:
            return False
        if h.device.type == "cpu":
            return bool(h.numpy()[marked[:m]].any())
        return bool(h.index_select(0, marked_dev[:m]).any())


def _work(work: TileWork, a: int, b: int, bins: int, part: _Part | None,
          lut: Tensor | None, marked: np.ndarray | None, marked_dev: Tensor | None
          ) -> tuple[np.ndarray | None, tuple[Tensor, Tensor] | None]:
    """Keys of the tile's flat elements a:b, counted into ``part`` (a histogram pass); returns
    the scores among them whose keys ``lut`` marks (or None) and the part's positives."""
    k, pos = fill_keys(work, bins, a, b)
    if part is not None and not part.add(work.t, k, marked, marked_dev):
        return None, pos
    got = _capture(work.scores.view(-1)[a:b], k, lut) if lut is not None else None
    return got, pos


def _one_thread() -> None:
    torch.get_num_threads()  # torch sets up a thread's count on first use: let it do so now,
    torch.set_num_threads(1)  # not later over this


def _workers(device: torch.device) -> tuple[ThreadPoolExecutor | None, int]:
    """On a CPU with two or more torch threads: as many worker threads, each running torch on
    one intra-op thread, and their number; else (None, 1).

    Each worker takes a whole tile at a time (matmul, keys, counts, collection) while the
    others take the next ones: torch releases the GIL inside its ops, so the cores stay busy
    without any OpenMP team. (With one, a tile's matmul would use every core, but its
    ``bincount`` and collection are single-threaded loops during which the team's idle threads
    spin, holding the other cores.) ``torch.set_num_threads`` sets the calling thread's count
    and also the default that threads started later take; a throwaway thread sets that default
    back to the caller's count, which leaves the caller's own settings untouched.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        return None, 1
    pool = ThreadPoolExecutor(threads, initializer=_one_thread)
    barrier = threading.Barrier(threads)
    for f in [pool.submit(barrier.wait) for _ in range(threads)]:  # all started and set
        f.result()
    restore = threading.Thread(target=torch.set_num_threads, args=(threads,))
    restore.start()
    restore.join()
    return pool, threads


class _Store:
    """The collected scores as distinct values (ascending, float32) with their multiplicities.

    Raw chunks wait in a list until they hold ``limit`` values; they are then sorted, counted
    and merged in: values already present only add to their counts, and only new values are
    inserted, so the temporaries are the size of the chunk plus one copy of the store.
    """

    def __init__(self, limit: int = 1 << 18):
        self.values = np.zeros(0, np.float32)
        self.counts = np.zeros(0, np.int64)
        self.raw: list[np.ndarray] = []
        self.pending = 0
        self.limit = limit

    def add(self, chunk: np.ndarray) -> None:
        self.raw.append(chunk)
        self.pending += len(chunk)
        if self.pending >= self.limit:
            self.merge()

    def merge(self) -> None:
        if not self.raw:
            return
        v = np.concatenate(self.raw) if len(self.raw) > 1 else self.raw[0].copy()
        self.raw, self.pending = [], 0
        v.sort()
        starts = np.flatnonzero(np.r_[True, v[1:] != v[:-1]])
        n = np.diff(np.r_[starts, len(v)])
        v = v[starts]
        at = np.searchsorted(self.values, v)
        old = at < len(self.values)
        old[old] = self.values[at[old]] == v[old]
        self.counts[at[old]] += n[old]  # the values are distinct, so are the positions
        new = ~old
        if new.any():
            self.values = np.insert(self.values, at[new], v[new])
            self.counts = np.insert(self.counts, at[new], n[new])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.merge()
        return self.values, self.counts


def scan(prob: Problem, bins: int, lut_bins: np.ndarray | None, *, histogram: bool,
         progress: bool, desc: str, cap: int | None = None,
         visit: np.ndarray | None = None) -> dict:
    """One pass over the tiles: histogram and positives (pass 1) and/or collection of bins.

    The histogram and the collected scores hold negatives only (positives are keyed out once
    read). ``visit``: the tiles to read (default all). A histogram pass also returns each
    tile's highest key of a negative (``top_key``), so that a later pass can skip the tiles
    whose negatives all lie below the bins it collects (:func:`tiles_reaching`).
    """
    dev = prob.x.device
    pool, n_workers = _workers(dev)
    parts: dict[int, _Part] = {}  # one per thread that counts

    def part() -> _Part | None:
        if not histogram:
            return None
        me = threading.get_ident()
        if me not in parts:
            parts[me] = _Part(bins, len(prob.tiles), dev)
        return parts[me]

    pos_v: list[Tensor] = []
    pos_k: list[Tensor] = []
    store: _Store | None = None
    lut = marked = lut_idx = None
    if lut_bins is not None and len(lut_bins):
        marked = np.unique(np.asarray(lut_bins, dtype=np.int64))
        lut_idx = torch.as_tensor(marked, device=dev)
        lut = torch.zeros(bins + 1, dtype=torch.uint8, device=dev).index_fill_(0, lut_idx, 1)
        store = _Store()

    def use() -> tuple:
        return (lut, marked, lut_idx) if store is not None else (None, None, None)

    def finish(got: np.ndarray | None, pos: tuple[Tensor, Tensor] | None) -> None:
        nonlocal store
        if histogram and pos is not None:
            pos_v.append(pos[0])
            pos_k.append(pos[1])
        if store is not None and got is not None:
            store.add(got)
            if cap is not None and len(store.values) > cap:
                store = None  # the prediction was poor: leave these bins to pass 2

    order = range(len(prob.tiles)) if visit is None else visit.tolist()
    if pool is None:
        for work in scan_tiles(prob, desc=desc, progress=progress, visit=visit):
            finish(*_work(work, 0, work.scores.numel(), bins, part(), *use()))
    else:
        tiler = Tiler(prob, buffers=n_workers)

        def job(t: int, space: int, drops: list[Tensor], use: tuple) -> tuple:
            work = tiler.compute(t, space, drops)
            return _work(work, 0, work.scores.numel(), bins, part(), *use)

        running: deque = deque()  # at most one tile per worker, each in its own workspace
        try:
            for turn, t in enumerate(tqdm(order, desc=desc, leave=False, disable=not progress)):
                if len(running) == n_workers:
                    finish(*running.popleft().result())
                running.append(pool.submit(job, t, turn % n_workers, tiler.drops(t), use()))
            while running:
                finish(*running.popleft().result())
        finally:
            pool.shutdown()
    empty = (np.zeros(0, np.float32), np.zeros(0, np.int64))
    out = {"store": None if store is None else store.result()}
    if histogram:
        counted = list(parts.values()) or [_Part(bins, len(prob.tiles), dev)]
        hist = counted[0].hist
        for p in counted[1:]:
            hist += p.hist
        top_key = np.max([p.top for p in counted], 0)
        pos = torch.cat(pos_v).cpu().numpy() if pos_v else empty[0]
        pos_keys = torch.cat(pos_k).cpu().numpy() if pos_k else np.zeros(0, np.int32)
        order = np.argsort(pos, kind="stable")
        out.update(hist=hist.cpu().numpy(), pos=pos[order].astype(np.float64),
                   pos_keys=pos_keys[order], top_key=top_key)
    return out


def tiles_reaching(top_key: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Indices of the tiles whose highest counted key reaches the lowest ``wanted`` bin: the
    others hold no pair in any wanted bin."""
    return np.flatnonzero(top_key >= np.min(wanted))


def counts_of(first: dict) -> Counts:
    """Negative counts per bin (pass 1's histogram: positives are not in it) and the positives."""
    bins = len(first["hist"]) - 1
    hist = first["hist"][:bins]
    above = np.r_[np.cumsum(hist[::-1])[::-1][1:], 0]
    return Counts(hist, above, int(hist.sum()), first["pos"], first["pos_keys"])


def to_cache(store: tuple, wanted: np.ndarray, c: Counts, device: torch.device) -> dict:
    """Negative multisets of the wanted bins, from the collected scores (negatives only).

    Keys are recomputed from the values with :func:`bin_keys` on the tiles' device; any
    disagreement with pass 1 shows up as a count that differs from the histogram. Values stay
    float32 (the scores' own type), counts int64.
    """
    vals, counts = store
    wanted = np.asarray(wanted, dtype=np.int64)
    wanted = wanted[c.hist[wanted] > 0]  # empty bins need no entry
    keys = bin_keys(torch.from_numpy(vals).to(device), len(c.hist)).cpu().numpy()
    per_bin = np.zeros(len(c.hist), np.int64)
    if keys.size:  # keys ascend with the values
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        per_bin[keys[starts]] = np.add.reduceat(counts, starts)
    if not np.array_equal(per_bin[wanted], c.hist[wanted]):
        raise RuntimeError("collected scores disagree with the histogram: scores or excluded "
                           "pairs differ between passes (a mask callable that depends on more "
                           "than (i, j), or a non-deterministic matmul)")
    lo, hi = np.searchsorted(keys, wanted, "left"), np.searchsorted(keys, wanted, "right")
    return {int(b): (vals[a:z][::-1], counts[a:z][::-1]) for b, a, z in zip(wanted, lo, hi)}


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
    keys = bin_keys(x[r] @ x.T, bins)  # (rows, n)
    keys[torch.arange(len(rows), device=x.device), r] = bins  # a row with itself
    if prob.groups is not None:
        groups = torch.as_tensor(prob.groups, device=x.device)
        keys.masked_fill_(groups[None, :] == groups[r][:, None], bins)
    if prob.mask_fn is not None:
        keys.masked_fill_(call_mask(prob.mask_fn, torch.minimum(r[:, None], cols[None, :]),
                                    torch.maximum(r[:, None], cols[None, :])), bins)
    ids = torch.as_tensor(prob.ids, device=x.device)
    same = (ids[None, :] == ids[r][:, None]).nonzero(as_tuple=True)
    pos_keys = keys[same]
    pos_keys = np.sort(pos_keys[pos_keys != bins].cpu().numpy())
    keys[same] = bins
    sample = torch.bincount(keys.view(-1), minlength=bins + 1)[:bins].cpu().numpy()
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
