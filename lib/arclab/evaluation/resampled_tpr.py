"""All-pairs TPR at FPR on identity resamples of a large test set, from the pairs that decide it.

The challenge notebook compares models over seeds on every pair of a 15,000-image set
(112 million pairs). Holding every pair in memory and sorting it
(:func:`~arclab.evaluation.paired.allpairs_tpr_boot` on :func:`~arclab.evaluation.all_pair_scores`)
takes about 10 GB and minutes per model at that size; :func:`tpr_resamples` gives the same
numbers from the few pairs that can matter: the genuine pairs (the sum over
identities of C(n_id, 2)) and the highest-scoring impostors. The threshold of replicate r is
the (k_r + 1)-th largest impostor score, each impostor pair of identities p and q weighing
count_p·count_q (:func:`~arclab.evaluation.paired.allpairs_tpr_boot`), so only a prefix of
the impostors sorted by score is ever read. The scores are the evaluator's own float32 tiles
(:func:`~arclab.evaluation.all_pair_scores` with the same block size), so the full-set value
equals :func:`~arclab.evaluation.tpr_at_fpr`'s strict TPR and every replicate equals
``allpairs_tpr_boot``'s.

Units: rates are fractions; scores are cosines.

Taught in: notebooks/09_lightweight_challenge.ipynb, notebooks/05_margin_ablation.ipynb
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor

from arclab.evaluation._tiles import as_features, as_ids, default_block, tile_matmul, tiles_of

__all__ = ["tpr_resamples"]


class _TopImpostors:
    """The ``keep`` highest impostor scores seen so far, with the identity of each side."""

    def __init__(self, keep: int):
        self.keep, self.cutoff, self.pruned = keep, -math.inf, False
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = 0

    def add(self, s: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
        above = s > self.cutoff
        if above.any():
            self.parts.append((s[above], p[above], q[above]))
            self.size += int(above.sum())
        if self.size > 2 * self.keep:
            self._prune()

    def _prune(self) -> None:
        s, p, q = (np.concatenate(a) for a in zip(*self.parts))
        top = np.argpartition(-s, self.keep - 1)[:self.keep]
        self.parts, self.size, self.pruned = [(s[top], p[top], q[top])], self.keep, True
        self.cutoff = float(s[top].min())  # anything not above it can no longer enter

    def sorted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.parts:
            return np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        s, p, q = (np.concatenate(a) for a in zip(*self.parts))
        order = np.argsort(-s, kind="stable")
        return s[order], p[order], q[order]


def _scan(x: Tensor, who: np.ndarray, block: int, keep: int
          ) -> tuple[tuple[np.ndarray, np.ndarray], _TopImpostors]:
    """One pass over the tiles: every genuine (score, identity) and the top impostors."""
    top, pos_s, pos_p, workspace = _TopImpostors(keep), [], [], {}
    who_t = torch.from_numpy(who)
    for i0, i1, j0, j1 in tiles_of(x.shape[0], block):
        s = tile_matmul(x, (i0, i1, j0, j1), workspace).cpu()
        a, b = who_t[i0:i1, None], who_t[None, j0:j1]
        upper = torch.ones(s.shape, dtype=torch.bool)
        if i0 == j0:  # a diagonal tile: pairs i < j only
            upper = torch.triu(upper, diagonal=1)
        same = (a == b) & upper
        if same.any():
            pos_s.append(s[same].numpy().copy())
            pos_p.append(a.expand_as(s)[same].numpy())
        imp = upper & ~same
        if top.pruned:
            imp &= s > top.cutoff
        top.add(s[imp].numpy().copy(), a.expand_as(s)[imp].numpy(), b.expand_as(s)[imp].numpy())
    pos = (np.concatenate(pos_s or [np.zeros(0, np.float32)]),
           np.concatenate(pos_p or [np.zeros(0, np.int64)]))
    return pos, top


def _thresholds(neg: tuple, counts: np.ndarray, ks: np.ndarray) -> np.ndarray | None:
    """Per replicate, the (k + 1)-th largest impostor score in the weighted multiset; None
    where the kept prefix is too short for some replicate."""
    s, p, q = neg
    out = np.empty(len(counts))
    for r, (c, k) in enumerate(zip(counts, ks)):
        if k < 0:  # no impostor or no genuine weight: NaN, decided by the caller
            out[r] = np.nan
            continue
        cum = np.cumsum(c[p] * c[q])
        at = int(np.searchsorted(cum, k + 1))
        if at >= len(s):
            return None
        out[r] = s[at]
    return out


def tpr_resamples(features: Tensor | np.ndarray, ids, fprs: dict[str, float],
                  counts: np.ndarray, *, block_size: int | None = None
                  ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Strict TPR at each FPR over all pairs, on the set and on each identity resample.

    The numbers of ``allpairs_tpr_boot`` on every pair, in O(N·D + genuine pairs + top
    impostors) memory: one pass over the score
    tiles keeps the genuine pairs and the 2·max(k) + 4,096 highest impostors (k = floor(f·W)
    for each FPR f and replicate's impostor weight W); a second pass with four times as many
    runs only where the kept impostors' weight does not reach k + 1 in some replicate.

    Args:
        features: (N, D) real features, N >= 2 (rows L2-normalised here).
        ids: (N,) integer identities; column p of ``counts`` is the p-th smallest.
        fprs: {name: FPR in (0, 1]}, e.g. ``{"TPR@1e-3": 1e-3}``; the names key the outputs.
        counts: (R, n_ids) from :func:`~arclab.evaluation.paired.identity_resamples`, the
            same array for every run that will be compared.
        block_size: the evaluator's tile side (default 1024 on the CPU, 4096 elsewhere).

    Returns:
        ({name: TPR on the whole set}, {name: (R,) TPR on each resample}); fractions, NaN
        where a replicate drew no genuine pair (as ``allpairs_tpr_boot``).

    Raises:
        ValueError: features not (N, D) finite with nonzero rows; ids not (N,) integers or
            fewer than two identities; an FPR outside (0, 1]; counts not (R, n_ids)
            non-negative integers.

    Example:
        >>> from arclab.evaluation import identity_resamples
        >>> f = torch.eye(4)[[0, 0, 1, 1, 2, 2, 3, 3]] + 0.01 * torch.arange(8.0)[:, None]
        >>> v, b = tpr_resamples(f, np.repeat(np.arange(4), 2), {"TPR@0.1": 0.1},
        ...                      identity_resamples(4, 5, seed=0))
        >>> v, b["TPR@0.1"].shape
        ({'TPR@0.1': 1.0}, (5,))
    """
    x = as_features(features, None)
    labels, who = np.unique(as_ids(ids, x.shape[0]), return_inverse=True)
    if len(labels) < 2:
        raise ValueError(f"ids must hold at least two identities, got {len(labels)}")
    c = np.asarray(counts)
    if c.ndim != 2 or c.shape[1] != len(labels) or c.dtype.kind not in "iu" or (c < 0).any():
        raise ValueError(f"counts must be (R, {len(labels)}) non-negative integers, got "
                         f"{c.dtype} {c.shape}")
    for name, f in fprs.items():
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"fprs[{name!r}] must be in (0, 1], got {f!r}")
    if not fprs:  # nothing asked: no pass over the tiles
        return {}, {}
    c = np.vstack([np.ones((1, len(labels)), np.int64), c.astype(np.int64)])  # row 0: the set
    mass = c * np.bincount(who)
    total = (mass.sum(1) ** 2 - (mass * mass).sum(1)) // 2  # impostor weight per replicate
    ks = {n: np.array([math.floor(Fraction(repr(float(f))) * int(w)) for w in total])
          for n, f in fprs.items()}
    block = default_block(block_size, x.device)
    keep = 2 * max(int(k.max()) + 1 for k in ks.values()) + 4096
    while True:
        (pos_s, pos_p), top = _scan(x, who, block, keep)
        neg = top.sorted()
        order = np.argsort(pos_s, kind="stable")
        pos_s, pos_p = pos_s[order], pos_p[order]
        pos_w = c[:, pos_p]  # (R + 1, genuine pairs)
        done, values, boots = True, {}, {}
        for name, k in ks.items():
            live = (total > 0) & (pos_w.sum(1) > 0)
            every = k >= total  # threshold -inf: every genuine pair accepted
            ask = np.where(live & ~every, k, -1)
            thr = _thresholds(neg, c, ask)  # None only when some impostors were dropped
            if thr is None:
                done = False
                break
            tpr = np.full(len(c), np.nan)
            for r in np.flatnonzero(live):
                tpr[r] = 1.0 if every[r] else pos_w[r, np.searchsorted(
                    pos_s, thr[r], side="right"):].sum() / pos_w[r].sum()
            values[name], boots[name] = float(tpr[0]), tpr[1:]
        if done:
            return values, boots
        keep *= 4
