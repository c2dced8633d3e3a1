"""arclab.evaluation: exact all-pairs TPR@FPR against brute force, protocols, file format."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve

from arclab.evaluation import (
    all_pair_scores,
    read_features,
    roc_curve_allpairs,
    tar_at_far,
    template_features,
    tpr_at_fpr,
    verification_accuracy_10fold,
    write_features,
)
from arclab.evaluation._passes import _Store
from arclab.evaluation._select import (
    Counts,
    _bin_of_rank,
    float_neighbours,
    nearest_step,
    strict_answer,
)
from arclab.evaluation._tiles import (
    TileGrid,
    as_features,
    bin_keys,
    fill_keys,
    prepare,
    scan_tiles,
    tiles_of,
)
from arclab.evaluation.allpairs import _evaluate

RNG_SEED = 20240605


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these small tiles gain nothing from two, and a busy machine makes
    every parallel op wait for the other thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def evaluate(x, ids, fprs, **kw):
    """The evaluator with its work record; quiet."""
    args = dict(block_size=None, device=None, mask=None, rule="strict", ci=0.95, progress=False)
    args.update(kw)
    return _evaluate(x, ids, fprs, **args)


def reference(scores, same, fprs, rule):
    """Brute force over an explicit score vector: a sort (strict) or sklearn + flipped argmin."""
    scores = np.asarray(scores, np.float64)
    pos, neg = scores[same], scores[~same]
    out = {}
    if rule == "strict":
        desc = np.sort(neg)[::-1]
        for f in fprs:
            k = math.floor(Fraction(repr(f)) * len(neg))
            t = desc[k] if k < len(neg) else -math.inf
            out[f] = ((pos > t).mean(), (neg > t).mean(), t)
    else:
        fpr, tpr, thr = (v[::-1] for v in roc_curve(same.astype(int), scores))
        for f in fprs:
            i = int(np.argmin(np.abs(fpr - f)))
            out[f] = (tpr[i], fpr[i], thr[i])
    return out, len(pos), len(neg)


def assert_same(got, ref):
    want, n_pos, n_neg = ref
    for f, (tpr, fpr, thr) in want.items():
        g = got[f]
        assert (g["tpr"], g["fpr_achieved"], g["threshold"]) == (tpr, fpr, thr), f
        assert (g["n_pos"], g["n_neg"]) == (n_pos, n_neg)


@pytest.fixture(scope="module")
def random_case():
    """N = 2,500 Gaussian features, ~10 images per id; scores from the evaluator's own tiles."""
    rng = np.random.default_rng(RNG_SEED)
    n = 2500
    ids = rng.integers(0, n // 10, n)
    centres = rng.standard_normal((n // 10, 64))
    x = torch.tensor(centres[ids] + 1.5 * rng.standard_normal((n, 64)), dtype=torch.float32)
    i, j, s = (t.numpy() for t in all_pair_scores(x, block_size=512))
    m = n * (n - 1) // 2
    fprs = [1.0, 0.77, 0.5, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1 / m, 0.3 / m]
    return x, ids, i, j, s, fprs


@pytest.mark.parametrize("rule", ["strict", "nearest"])
def test_random_data_equals_brute_force(random_case, rule):
    x, ids, i, j, s, fprs = random_case
    ref = reference(s, ids[i] == ids[j], fprs, rule)
    variants = [{}, {"speculative": False}, {"bins": 64, "speculative": False}]
    for kw in variants:
        got, info = evaluate(x, ids, fprs, block_size=512, rule=rule, **kw)
        assert_same(got, ref)
        if kw:
            assert info["passes"] >= 2  # the fallback pass really ran
    assert (tpr_at_fpr(x.numpy(), ids, fprs, block_size=512, rule=rule, progress=False)
            == evaluate(x, ids, fprs, block_size=512, rule=rule)[0])


def test_two_threads_give_the_same_answer(random_case):
    """With two torch threads each tile's histogram and collection run in two halves side by
    side; the answer must not change."""
    x, ids, i, j, s, fprs = random_case
    torch.set_num_threads(2)
    try:
        for rule in ("strict", "nearest"):
            got, info = evaluate(x, ids, fprs, block_size=512, rule=rule)
            assert_same(got, reference(s, ids[i] == ids[j], fprs, rule))
        got, info = evaluate(x, ids, fprs, block_size=512, speculative=False)
        assert info["passes"] == 2
        assert_same(got, reference(s, ids[i] == ids[j], fprs, "strict"))
    finally:
        torch.set_num_threads(1)


def test_two_threads_with_masks_give_the_same_answer():
    """Two threads split each tile in halves that apply the mask's pairs (group ids: flat
    indices; a callable: a bool tile) on their own; tiles too small to split run whole."""
    rng = np.random.default_rng(RNG_SEED + 9)
    n = 1200  # tiles of 512 x 512 and 512 x 176 are split, 176 x 176 is not
    ids = rng.integers(0, 120, n)
    x = torch.tensor(rng.standard_normal((120, 32))[ids] + 1.5 * rng.standard_normal((n, 32)),
                     dtype=torch.float32)
    i, j, s = (t.numpy() for t in all_pair_scores(x, block_size=512))
    groups = rng.integers(0, 300, n)
    g = torch.as_tensor(groups)
    fprs = [1.0, 0.5, 0.1, 1e-2, 1e-3, 1e-4, 1e-5]
    torch.set_num_threads(2)
    try:
        for mask, keep in [(groups, groups[i] != groups[j]),
                           (lambda a, b: g[a] == g[b], groups[i] != groups[j])]:
            for rule in ("strict", "nearest"):
                for kw in ({}, {"speculative": False}):
                    got, _ = evaluate(x, ids, fprs, block_size=512, mask=mask, rule=rule, **kw)
                    assert_same(got, reference(s[keep], (ids[i] == ids[j])[keep], fprs, rule))
    finally:
        torch.set_num_threads(1)


def test_later_passes_read_only_the_tiles_that_reach_the_wanted_bins(random_case):
    """Pass 1 keeps each tile's highest counted key; a pass for the top bins (small FPRs)
    skips the tiles whose pairs all score below them, and still answers exactly (ids in no
    particular order, so positives sit in every tile)."""
    x, ids, i, j, s, _ = random_case
    m = int((ids[i] != ids[j]).sum())
    fprs = [1e-5, 1e-6, 1 / m]
    for rule in ("strict", "nearest"):
        got, info = evaluate(x, ids, fprs, block_size=256, rule=rule, speculative=False)
        assert_same(got, reference(s, ids[i] == ids[j], fprs, rule))
        assert info["passes"] >= 2
        assert 0 < info["tiles_reread"] < info["tiles"] * (info["passes"] - 1)
    groups = np.random.default_rng(RNG_SEED + 10).integers(0, 600, len(ids))
    keep = groups[i] != groups[j]
    got, info = evaluate(x, ids, fprs, block_size=256, mask=groups, speculative=False)
    assert_same(got, reference(s[keep], (ids[i] == ids[j])[keep], fprs, "strict"))
    assert 0 < info["tiles_reread"] < info["tiles"]


def test_scores_at_and_beyond_plus_minus_one_fall_in_the_end_bins():
    """Duplicates score 1 (or a rounding above it) and negated copies -1 (or below): their
    keys are clamped to the first and last bins, and FPRs near 0 and 1 read exactly those."""
    rng = np.random.default_rng(RNG_SEED + 11)
    base = rng.standard_normal((150, 20))
    x = torch.tensor(np.r_[base, base[:50] * 3.0, -base[50:100]], dtype=torch.float32)
    ids = np.r_[np.arange(150) // 3, np.arange(50) // 3, 1000 + np.arange(50)]
    i, j, s = (t.numpy() for t in all_pair_scores(x, block_size=64))
    assert s.max() >= 1.0 - 1e-6 and s.min() <= -1.0 + 1e-6
    same = ids[i] == ids[j]
    m = int((~same).sum())
    fprs = [1.0, 1 - 1 / m, 1 - 30 / m, 0.5, 30 / m, 1 / m]
    for rule in ("strict", "nearest"):
        for kw in ({}, {"speculative": False}, {"bins": 16, "speculative": False}):
            got, _ = evaluate(x, ids, fprs, block_size=64, rule=rule, **kw)
            assert_same(got, reference(s, same, fprs, rule))


def test_tile_parts_get_the_keys_of_the_whole_tile():
    """Keys filled part by part (as the helper threads do) equal the whole tile's, with the
    diagonal, a group mask, a callable mask and the positives all keyed out, and the parts'
    positives are the whole tile's."""
    rng = np.random.default_rng(RNG_SEED + 12)
    n = 300
    x = torch.tensor(rng.standard_normal((n, 8)), dtype=torch.float32)
    ids = rng.integers(0, 40, n)
    groups = rng.integers(0, 60, n)
    i, j, s = (t.numpy() for t in all_pair_scores(x, block_size=128))
    for mask, keep in [(groups, groups[i] != groups[j]),
                       (lambda a, b: (a * 7 + b) % 11 == 0, (i * 7 + j) % 11 != 0)]:
        prob = prepare(x, ids, block_size=128, device=None, mask=mask)
        whole_pos, part_pos, negatives = [], [], 0
        for work in scan_tiles(prob, desc="", progress=False):
            keys, pos = fill_keys(work, 64)
            keys = keys.clone()
            negatives += int((keys < 64).sum())
            whole_pos += [] if pos is None else pos[0].tolist()
            cuts = [0, 8, work.scores.numel() // 3, work.scores.numel()]
            for a, b in zip(cuts[:-1], cuts[1:]):
                pos = fill_keys(work, 64, a, b)[1]
                part_pos += [] if pos is None else pos[0].tolist()
            assert torch.equal(work.keys.view(-1), keys)
            assert keys.min() >= 0 and keys.max() <= 64
        same = (ids[i] == ids[j]) & keep
        assert sorted(whole_pos) == sorted(part_pos) == sorted(s[same].tolist())
        assert negatives == int(((ids[i] != ids[j]) & keep).sum())


def test_tile_grid_is_the_tile_list():
    for n, block in [(2, 1), (5, 2), (10, 3), (1024, 1024), (1025, 1024), (2000, 300)]:
        grid = TileGrid(n, block)
        tiles = tiles_of(n, block)
        assert len(grid) == len(tiles) and [grid[t] for t in range(len(grid))] == tiles
        assert grid[-1] == tiles[-1] and list(grid) == tiles
        assert all(i0 <= j0 and i1 - i0 <= block for i0, i1, j0, _ in tiles)
        with pytest.raises(IndexError):
            grid[len(grid)]


def test_store_merges_chunks_into_distinct_values_with_counts():
    rng = np.random.default_rng(RNG_SEED + 13)
    store = _Store(limit=1000)
    chunks = [rng.integers(0, 3000, int(rng.integers(0, 700))).astype(np.float32) / 7
              for _ in range(40)]
    for c in chunks:
        store.add(c)
    values, counts = store.result()
    want_v, want_n = np.unique(np.concatenate(chunks), return_counts=True)
    assert values.dtype == np.float32 and np.array_equal(values, want_v)
    assert np.array_equal(counts, want_n)


def test_features_are_normalised_without_changing_the_input():
    """A converted copy (other dtype) is normalised in place; the caller's array never is."""
    rng = np.random.default_rng(RNG_SEED + 14)
    a64 = rng.standard_normal((50, 7)) * 3
    a32 = a64.astype(np.float32)
    t32 = torch.tensor(a32)
    keep = a32.copy(), t32.clone()
    out = [as_features(a64, None), as_features(a32, None), as_features(t32, None)]
    assert np.array_equal(a32, keep[0]) and torch.equal(t32, keep[1])
    assert all(torch.equal(o, out[2]) for o in out)
    norms = torch.linalg.vector_norm(out[0], dim=1)
    assert torch.allclose(norms, torch.ones(50), atol=1e-6)


def test_random_data_sanity(random_case):
    x, ids, *_ = random_case
    got = tpr_at_fpr(x, ids, [1e-4, 1e-2, 1.0], block_size=512, device="cpu", progress=False)
    assert got[1e-4]["tpr"] < got[1e-2]["tpr"] < got[1.0]["tpr"] == 1.0
    assert got[1.0]["threshold"] == -math.inf and got[1.0]["fpr_achieved"] == 1.0
    assert got[1e-2]["fpr_achieved"] <= 1e-2


@pytest.fixture(scope="module")
def tie_case():
    """Sign vectors ±1/4 in 16-d: every cosine is an exact multiple of 1/16 (33 values)."""
    rng = np.random.default_rng(RNG_SEED + 1)
    n = 2000
    x = rng.choice([-0.25, 0.25], size=(n, 16))
    ids = rng.integers(0, n // 4, n)
    full = x @ x.T  # exact in float64: no rounding, so no tiling can differ
    i, j = np.triu_indices(n, 1)
    return torch.tensor(x, dtype=torch.float32), ids, full[i, j], ids[i] == ids[j]


@pytest.mark.parametrize("rule", ["strict", "nearest"])
def test_tie_heavy_data_equals_brute_force(tie_case, rule):
    x, ids, scores, same = tie_case
    assert len(np.unique(scores)) <= 33
    m = int((~same).sum())
    fprs = [1.0, 0.5, 0.2, 0.1, 0.05, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1 / m, 0.5 / m]
    ref = reference(scores, same, fprs, rule)
    for kw in ({}, {"speculative": False}, {"bins": 8}):
        got, _ = evaluate(x, ids, fprs, block_size=300, rule=rule, **kw)
        assert_same(got, ref)


def test_separated_identities_nearest_rule_finds_far_roc_points():
    """Positives far above negatives: sklearn drops the long flat stretch of negatives, so the
    nearest ROC point can be far from f; the evaluator must reproduce it, and the strict rule."""
    rng = np.random.default_rng(RNG_SEED + 2)
    n = 1200
    ids = rng.integers(0, 150, n)
    x = torch.tensor(rng.standard_normal((150, 32))[ids] * 4 + rng.standard_normal((n, 32)),
                     dtype=torch.float32)
    i, j, s = (t.numpy() for t in all_pair_scores(x, block_size=256))
    fprs = [0.9, 0.6, 0.5, 0.3, 1e-2, 1e-4, 1e-6]
    for rule in ("strict", "nearest"):
        ref = reference(s, ids[i] == ids[j], fprs, rule)
        for kw in ({}, {"speculative": False}, {"bins": 32}):
            assert_same(evaluate(x, ids, fprs, block_size=256, rule=rule, **kw)[0], ref)


def test_tiles_skipped_by_pass_1_still_count_their_positives():
    """Duplicated images: every positive scores like the one top negative (a duplicate across
    ids); the tiles holding only positives in the collected top bin are skipped in pass 1, and
    the bin's negatives must still come out right."""
    rng = np.random.default_rng(RNG_SEED + 8)
    base = rng.standard_normal((200, 24))
    x = np.repeat(base, 2, axis=0)  # items 2i, 2i+1: identical, same id
    x[399] = x[0]  # item 399 (id 199) duplicates item 0 (id 0): a negative at the top
    ids = np.arange(400) // 2
    i, j, s = (t.numpy() for t in all_pair_scores(torch.tensor(x), block_size=64))
    fprs = [1e-6, 2e-5]
    got, info = evaluate(torch.tensor(x), ids, fprs, block_size=64)
    assert info["passes"] == 1
    assert_same(got, reference(s, ids[i] == ids[j], fprs, "strict"))


def test_pair_counts_are_unordered():
    ids = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])  # C(3,2) + C(2,2) + C(4,2) = 3 + 1 + 6
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    r = tpr_at_fpr(x, ids, 0.5, progress=False)[0.5]
    assert (r["n_pos"], r["n_neg"]) == (10, 45 - 10)


def test_k_is_taken_on_the_decimal_fpr():
    """0.29 · 100 is 28.999999999999996 in float64; the decimal 0.29 of 100 negatives is 29."""
    ids = np.r_[np.repeat(np.arange(5), 2), np.arange(5, 10)]  # 5 positive pairs, 100 negative
    x = torch.randn(15, 8, generator=torch.Generator().manual_seed(3))
    i, j, s = all_pair_scores(x)
    assert len(np.unique(s.numpy()[ids[i] != ids[j]])) == 100  # distinct negatives
    r = tpr_at_fpr(x, ids, [0.29, 0.01], progress=False)
    assert (r[0.29]["n_neg"], r[0.29]["fpr_achieved"], r[0.01]["fpr_achieved"]) == (100, 0.29, 0.01)


def test_nearest_rule_takes_the_last_of_equally_near_points():
    """ROC (fpr, tpr): (0,0) (.25,0) (.25,1) (.75,1) (1,1). At f = .5 three points are .25 away;
    insightface's flipped argmin takes the last one, (.75, 1)."""
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    r = tpr_at_fpr(x, [0, 0, 1, 1], [0.5, 0.25, 0.1], rule="nearest", progress=False)
    assert (r[0.5]["fpr_achieved"], r[0.5]["tpr"]) == (0.75, 1.0)
    assert (r[0.25]["fpr_achieved"], r[0.25]["tpr"]) == (0.25, 1.0)
    assert (r[0.1]["fpr_achieved"], r[0.1]["tpr"], r[0.1]["threshold"]) == (0.0, 0.0, math.inf)


def test_masks_equal_brute_force_with_the_mask_applied():
    rng = np.random.default_rng(RNG_SEED + 3)
    n = 1200
    ids = rng.integers(0, 120, n)
    x = torch.tensor(rng.standard_normal((120, 32))[ids] + 1.5 * rng.standard_normal((n, 32)),
                     dtype=torch.float32)
    i, j, s = (t.numpy() for t in all_pair_scores(x, block_size=512))
    fprs = [1.0, 0.5, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    groups = rng.integers(0, 300, n)
    g = torch.as_tensor(groups)
    cases = [(groups, groups[i] != groups[j]),
             (lambda a, b: g[a] == g[b], groups[i] != groups[j]),
             (lambda a, b: (a + b) % 5 == 0, (i + j) % 5 != 0)]
    for mask, keep in cases:
        same = (ids[i] == ids[j])[keep]
        for rule in ("strict", "nearest"):
            got = tpr_at_fpr(x, ids, fprs, block_size=512, mask=mask, rule=rule, progress=False)
            assert_same(got, reference(s[keep], same, fprs, rule))
    assert got[0.5]["n_pos"] + got[0.5]["n_neg"] == int(keep.sum())


def test_wilson_interval_of_the_tpr():
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    r = tpr_at_fpr(x, [0, 0, 1, 1], [0.25], ci=0.9, progress=False)[0.25]
    z, n, p = 1.6448536269514722, 2, 1.0  # 2 of 2 accepted
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert r["tpr_ci"] == pytest.approx((centre - half, 1.0), abs=1e-12)
    assert r["tpr_ci"][0] == pytest.approx(n / (n + z * z), abs=1e-12)  # all accepted: n/(n+z²)


def test_roc_curve_allpairs_matches_pointwise_evaluation(tie_case):
    x, ids, scores, same = tie_case
    roc = roc_curve_allpairs(x, ids, n_points=12, block_size=300, progress=False)
    m = int((~same).sum())
    assert roc["fpr"][0] == pytest.approx(2 / (2000 * 1999)) and roc["fpr"][-1] == 1.0
    assert (np.diff(roc["tpr"]) >= 0).all() and (roc["fpr_achieved"] <= roc["fpr"]).all()
    want, n_pos, n_neg = reference(scores, same, [float(f) for f in roc["fpr"]], "strict")
    assert roc["tpr"].tolist() == [want[float(f)][0] for f in roc["fpr"]]
    assert (roc["n_pos"], roc["n_neg"]) == (n_pos, n_neg) == (int(same.sum()), m)


def test_selection_on_synthetic_histograms_equals_sklearn():
    """The selection alone, on random tie structures, tiny bin counts and one-bin start
    windows (so the nearest rule has to grow its window), against sort and sklearn."""
    rng = np.random.default_rng(RNG_SEED + 4)
    for _ in range(120):
        bins = int(rng.choice([2, 4, 16, 256]))
        levels = int(rng.choice([3, 10, 50, 100_000]))
        n_pos, m = int(rng.integers(1, 30)), int(rng.integers(1, 300))
        pos = np.clip(rng.integers(-levels, levels + 1, n_pos) / levels
                      + rng.choice([0.0, 0.3]), -1, 1).astype(np.float32)
        neg = (rng.integers(-levels, levels + 1, m) / levels * 0.8).astype(np.float32)
        pos_keys = bin_keys(torch.tensor(pos), bins).numpy()
        neg_keys = bin_keys(torch.tensor(neg), bins).numpy()
        hist = np.bincount(neg_keys, minlength=bins)
        order = np.argsort(pos, kind="stable")
        c = Counts(hist, np.r_[np.cumsum(hist[::-1])[::-1][1:], 0], m,
                   pos[order].astype(np.float64), pos_keys[order])
        cache = {}
        for b in range(bins):
            u, k = np.unique(neg[neg_keys == b].astype(np.float64), return_counts=True)
            cache[b] = (u[::-1], k[::-1])
        scores, same = np.r_[pos, neg], np.r_[np.ones(n_pos, bool), np.zeros(m, bool)]
        fprs = [1.0, 0.5, 0.1, 1 / m, 0.5 / m, *map(float, rng.uniform(0, 1, 3))]
        fprs = [f for f in fprs if f > 0]
        strict, _, _ = reference(scores, same, fprs, "strict")
        nearest, _, _ = reference(scores, same, fprs, "nearest")
        for f in fprs:
            a = strict_answer(f, c, cache)
            assert (a["accepted"] / n_pos, a["fpr_achieved"], a["threshold"]) == strict[f]
            start = _bin_of_rank(c, max(1, float_neighbours(f, m)[0]))
            window, a = (start, start), None
            while a is None:
                a, window = nearest_step(f, c, cache, window)
            assert (a["accepted"] / n_pos, a["fpr_achieved"], a["threshold"]) == nearest[f]


@pytest.mark.parametrize("call, match", [
    (lambda x, ids: tpr_at_fpr(x[:1], ids[:1], 0.1), "features"),
    (lambda x, ids: tpr_at_fpr(x[None], ids, 0.1), "features"),
    (lambda x, ids: tpr_at_fpr(x, ids[:-1], 0.1), "ids"),
    (lambda x, ids: tpr_at_fpr(x, ids.astype(float), 0.1), "ids"),
    (lambda x, ids: tpr_at_fpr(np.where(np.eye(6, 4) > 0, np.nan, x), ids, 0.1), "features"),
    (lambda x, ids: tpr_at_fpr(x * np.array([np.inf, 1, 1, 1]), ids, 0.1), "features"),
    (lambda x, ids: tpr_at_fpr(x * (np.arange(6) > 0)[:, None], ids, 0.1), "features"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.0), "fprs"),
    (lambda x, ids: tpr_at_fpr(x, ids, [0.1, 1.5]), "fprs"),
    (lambda x, ids: tpr_at_fpr(x, ids, float("nan")), "fprs"),
    (lambda x, ids: tpr_at_fpr(x, ids, []), "fprs"),
    (lambda x, ids: tpr_at_fpr(x, np.arange(6), 0.1), "ids"),
    (lambda x, ids: tpr_at_fpr(x, np.zeros(6, int), 0.1), "ids"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.1, mask=np.zeros(6, bool)), "mask"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.1, mask=np.arange(5)), "mask"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.1, mask=lambda i, j: (i + j).float()), "mask"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.1, mask=np.zeros(6, int)), "mask"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.1, rule="closest"), "rule"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.1, ci=1.0), "ci"),
    (lambda x, ids: tpr_at_fpr(x, ids, 0.1, block_size=0), "block_size"),
    (lambda x, ids: roc_curve_allpairs(x, ids, n_points=1), "n_points"),
])
def test_bad_inputs_raise_naming_the_argument(call, match):
    x = np.random.default_rng(0).standard_normal((6, 4))
    ids = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=match):
        call(x, ids)


def test_10fold_accuracy_by_hand():
    """20 pairs, fold k = pairs 2k and 2k+1, grid (-0.5, 0, 0.5), "same" when sim > t.

    Positives at 0.9 but pair 3 (0.2) and pair 6 (0.3); negatives at -0.9 but pair 5 (-0.2)
    and pair 7 (0.1). Correct pairs over all 20 at t = -0.5, 0, 0.5: 18, 19, 18.
    Fold 2 (pairs 4, 5) trains on 17, 17, 16 -> t = -0.5 (first best), where pair 5 is
    accepted: 1/2. Fold 3 (pairs 6, 7) trains on 17, 18, 17 -> t = 0, where pair 7 is
    accepted: 1/2. Fold 1 (pairs 2, 3) trains on 16, 17, 17 -> t = 0: 2/2. The other folds
    train on 16, 17, 16 -> t = 0: 2/2.
    """
    sims = np.array([0.9, -0.9] * 10)
    issame = np.array([True, False] * 10)
    sims[[3, 5, 6, 7]] = 0.2, -0.2, 0.3, 0.1
    issame[[3, 6]] = True
    angle = np.arccos(sims)
    emb1 = np.stack([np.ones(20), np.zeros(20)], 1)
    emb2 = np.stack([np.cos(angle), np.sin(angle)], 1) * 3.0
    r = verification_accuracy_10fold(emb1, emb2, issame, thresholds=[-0.5, 0.0, 0.5])
    assert r["thresholds"].tolist() == [0.0, 0.0, -0.5] + [0.0] * 7
    assert r["accuracies"].tolist() == [1.0, 1.0, 0.5, 0.5] + [1.0] * 6
    assert r["mean"] == pytest.approx(0.9) and r["std"] == pytest.approx(0.2)


def test_10fold_folds_are_contiguous_like_kfold():
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(RNG_SEED + 5)
    p = 23
    e1, e2 = rng.standard_normal((p, 5)), rng.standard_normal((p, 5))
    issame = rng.random(p) < 0.5
    sims = np.sum(e1 / np.linalg.norm(e1, axis=1, keepdims=True)
                  * e2 / np.linalg.norm(e2, axis=1, keepdims=True), axis=1)
    grid = np.arange(-1, 1, 0.01)
    want = []
    for train, test in KFold(n_splits=10, shuffle=False).split(sims):
        acc = [np.mean((sims[train] > t) == issame[train]) for t in grid]
        t = grid[int(np.argmax(acc))]
        want.append(np.mean((sims[test] > t) == issame[test]))
    r = verification_accuracy_10fold(e1, e2, issame, thresholds=grid)
    assert r["accuracies"].tolist() == want
    with pytest.raises(ValueError, match="emb1"):
        verification_accuracy_10fold(e1[:9], e2[:9], issame[:9])
    with pytest.raises(ValueError, match="issame"):
        verification_accuracy_10fold(e1, e2, issame[:-1])


def test_template_features_follow_the_formulas():
    rng = np.random.default_rng(RNG_SEED + 6)
    f = rng.standard_normal((9, 5)) * rng.uniform(0.5, 3, (9, 1))
    tid = np.array([4, 2, 4, 4, 9, 2, 9, 9, 9])
    ids, mean = template_features(f, tid)
    _, norm3 = template_features(torch.tensor(f), tid, weighting="norm3")
    assert ids.tolist() == [2, 4, 9]
    for row, t in enumerate([2, 4, 9]):
        g = f[tid == t]
        m = (g / np.linalg.norm(g, axis=1, keepdims=True)).mean(0)
        w = np.linalg.norm(g, axis=1) ** 3
        q = (w[:, None] * g).sum(0) / w.sum()
        np.testing.assert_allclose(mean[row].numpy(), m / np.linalg.norm(m), rtol=1e-6)
        np.testing.assert_allclose(norm3[row].numpy(), q / np.linalg.norm(q), rtol=1e-6)
    assert not np.allclose(mean.numpy(), norm3.numpy(), atol=1e-3)
    with pytest.raises(ValueError, match="template_ids"):
        template_features(np.array([[1.0, 0.0], [-1.0, 0.0]]), [1, 1])
    with pytest.raises(ValueError, match="weighting"):
        template_features(f, tid, weighting="max")


def test_tar_at_far_equals_brute_force():
    rng = np.random.default_rng(RNG_SEED + 7)
    t, d, q = 300, 16, 20_000
    feats = rng.standard_normal((t, d)).astype(np.float32)
    tids = rng.permutation(10_000)[:t]
    p_, q_ = rng.choice(tids, q), rng.choice(tids, q)
    labels = rng.random(q) < 0.1
    row = {v: k for k, v in enumerate(tids)}
    fn = as_features(feats, None)  # the normalisation every scorer here shares
    s = (fn[[row[v] for v in p_]] * fn[[row[v] for v in q_]]).sum(1).numpy()
    norm = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(s, np.sum(norm[[row[v] for v in p_]] * norm[[row[v] for v in q_]],
                                         1), atol=1e-5)
    fars = [0.5, 0.1, 1e-2, 1e-3, 1e-4, 1.0]
    for rule in ("strict", "nearest"):
        got = tar_at_far(feats, tids, p_, q_, labels.astype(int), fars, rule=rule)
        assert_same(got, reference(s, labels, fars, rule))
    with pytest.raises(ValueError, match="pairs_q"):
        tar_at_far(feats, tids, p_, np.r_[q_[:-1], 10_001], labels, fars)
    with pytest.raises(ValueError, match="template_ids"):
        tar_at_far(feats, np.r_[tids[:-1], tids[0]], p_, q_, labels, fars)
    with pytest.raises(ValueError, match="labels"):
        tar_at_far(feats, tids, p_, q_, np.zeros(q, bool), fars)


def test_feature_file_round_trip_and_insightface_layout(tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    write_features(tmp_path / "a.bin", x)
    raw = (tmp_path / "a.bin").read_bytes()
    assert raw[:16] == struct.pack("<4i", 7, 3, 4, 5) and len(raw) == 16 + 7 * 3 * 4
    np.testing.assert_array_equal(read_features(tmp_path / "a.bin"), x)
    v = [0.25, -1.5, 3.0]  # insightface's write_bin: struct.pack('4i', len(f), 1, 4, 5) + floats
    (tmp_path / "b.bin").write_bytes(struct.pack("4i", 3, 1, 4, 5) + struct.pack("3f", *v))
    assert read_features(tmp_path / "b.bin").tolist() == [[0.25], [-1.5], [3.0]]
    write_features(tmp_path / "c.bin", torch.tensor(v))
    assert (tmp_path / "c.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin", "c.bin"]


@pytest.mark.parametrize("content, match", [
    (b"\x00" * 10, "header"),
    (struct.pack("<4i", 2, 3, 4, 5) + b"\x00" * 20, "bytes after the header"),  # truncated
    (struct.pack("<4i", 2, 3, 4, 5) + b"\x00" * 28, "bytes after the header"),  # padded
    (struct.pack("<4i", 0, 3, 4, 5), "positive rows"),
    (struct.pack("<4i", -2, 3, 4, 5) + b"\x00" * 24, "positive rows"),
    (struct.pack("<4i", 2, 3, 8, 5) + b"\x00" * 24, "element size"),
    (struct.pack("<4i", 2, 3, 4, 6) + b"\x00" * 24, "type code"),
    (struct.pack("<4i", 2, 3, 4, 5) + struct.pack("<6f", 0, 1, 2, 3, float("nan"), 5), "row 1"),
])
def test_malformed_feature_files_raise(tmp_path, content, match):
    (tmp_path / "bad.bin").write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_features(tmp_path / "bad.bin")


def test_write_features_refuses_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        write_features(tmp_path / "x.bin", np.array([[1.0, np.inf]]))
    with pytest.raises(ValueError, match="features"):
        write_features(tmp_path / "x.bin", np.zeros((2, 2, 2)))
    assert list(tmp_path.iterdir()) == []


def test_wilson_interval_contains_the_estimate_at_zero_and_all():
    from arclab.evaluation._select import wilson

    for successes, n in [(0, 1000), (0, 7), (7, 7), (3, 10)]:
        lo, hi = wilson(successes, n, 0.95)
        assert lo <= successes / n <= hi
    assert wilson(0, 1000, 0.95)[0] == 0.0 and wilson(1000, 1000, 0.95)[1] == 1.0
    z = 1.959963984540054  # upper bound at 0 of n: z²/(n + z²)
    assert wilson(0, 1000, 0.95)[1] == pytest.approx(z * z / (1000 + z * z), rel=1e-12)


def test_score_submission_reads_the_file_checks_it_and_scores_every_pair(tmp_path):
    """The organiser's score of a written file equals a brute-force sort of its float32
    scores; a file with a row missing, or with 513-d features, is refused by name."""
    from arclab.evaluation import score_submission, write_features

    gen = torch.Generator().manual_seed(3)
    ids = torch.arange(40).repeat_interleave(3)
    feats = torch.randn(40, 8, generator=gen)[ids] + 0.8 * torch.randn(120, 8, generator=gen)
    path = tmp_path / "image_track.bin"
    write_features(path, feats)
    fprs = [1e-1, 1e-2, 1e-3]
    got = score_submission(path, ids.numpy(), fprs)
    x = torch.nn.functional.normalize(feats, dim=1)
    iu = torch.triu_indices(120, 120, 1)
    scores = (x @ x.T)[iu[0], iu[1]]
    same = ids[iu[0]] == ids[iu[1]]
    neg = scores[~same].sort(descending=True).values
    for f in fprs:
        k = int(np.floor(f * len(neg)))
        assert got[f]["tpr"] == pytest.approx((scores[same] > neg[k]).double().mean().item(),
                                              abs=1.5 / same.sum().item())
        assert got[f]["n_neg"] == len(neg) and got[f]["n_pos"] == int(same.sum())
    with pytest.raises(ValueError, match="has 120 rows; the test list has 121 items"):
        score_submission(path, np.r_[ids.numpy(), 0], fprs)
    wide = tmp_path / "wide.bin"
    write_features(wide, torch.randn(120, 513, generator=gen))
    with pytest.raises(ValueError, match="513-d features; the rules allow at most 512"):
        score_submission(wide, ids.numpy(), fprs)


@pytest.mark.parametrize("shape_of", [
    lambda i, j: (i.shape[0], j.shape[1] + 1),  # one column too many
    lambda i, j: (3,),                           # broadcasts to nothing
    lambda i, j: (j.shape[1], i.shape[0]),       # transposed
])
def test_a_mask_callable_of_the_wrong_shape_raises_value_error(shape_of):
    x = np.random.default_rng(1).standard_normal((50, 8))
    ids = np.arange(50) // 5
    with pytest.raises(ValueError, match=r"mask must return a bool tensor broadcastable to "
                                         r"\(\d+, 50\), got torch.bool"):
        tpr_at_fpr(x, ids, 0.1, progress=False,  # was a RuntimeError from torch
                   mask=lambda i, j: torch.zeros(shape_of(i, j), dtype=torch.bool))


def test_a_mask_that_changes_between_passes_is_caught_not_answered():
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    ids = np.arange(64) // 4
    calls = []

    def mask(i, j):  # not a function of (i, j) alone: it changes from call to call
        calls.append(1)
        shape = torch.broadcast_shapes(i.shape, j.shape)
        if len(calls) == 1:
            return torch.ones(shape, dtype=torch.bool)  # the row sample sees no pair
        return torch.full(shape, len(calls) > 2)  # pass 1 keeps every pair, pass 2 none

    with pytest.raises(RuntimeError, match="a mask callable that depends on more than"):
        tpr_at_fpr(x, ids, 0.1, mask=mask, progress=False)
    assert len(calls) == 3


@pytest.mark.parametrize("n", [0, 1])
def test_roc_of_fewer_than_two_rows_names_n_not_fpr_min(n):
    x = np.random.default_rng(2).standard_normal((n, 4))
    with pytest.raises(ValueError, match=rf"features must have shape \(N, D\) with N >= 2 "
                                         rf".*got shape \({n}, 4\)"):
        roc_curve_allpairs(x, np.zeros(n, int), progress=False)  # said fpr_min = 1.0
    with pytest.raises(ValueError, match="ids must repeat at least one id"):
        roc_curve_allpairs(np.eye(2), [0, 1], progress=False)  # one pair: not about fpr_min


def test_numpy_scalars_are_numbers_and_booleans_are_not():
    x = np.random.default_rng(3).standard_normal((12, 4))
    ids = np.arange(12) // 3
    plain = roc_curve_allpairs(x, ids, n_points=5, fpr_min=0.01, block_size=4, progress=False)
    numpy = roc_curve_allpairs(x, ids, n_points=np.int64(5), fpr_min=np.float32(0.01),
                               block_size=np.int32(4), progress=False)
    assert np.allclose(plain["fpr"], numpy["fpr"]) and np.array_equal(plain["tpr"],
                                                                      numpy["tpr"])
    a = tpr_at_fpr(x, ids, np.float64(0.1), ci=np.float32(0.9), progress=False)
    b = tpr_at_fpr(x, ids, 0.1, ci=float(np.float32(0.9)), progress=False)
    assert a[0.1]["tpr_ci"] == b[0.1]["tpr_ci"]
    for call, name in ((lambda: roc_curve_allpairs(x, ids, n_points=True), "n_points"),
                       (lambda: roc_curve_allpairs(x, ids, fpr_min=True), "fpr_min"),
                       (lambda: tpr_at_fpr(x, ids, [True, 0.5]), "fprs"),
                       (lambda: tpr_at_fpr(x, ids, 0.1, ci=True), "ci"),
                       (lambda: tpr_at_fpr(x, ids, 0.1, block_size=True), "block_size")):
        with pytest.raises(ValueError, match=name):
            call()


def test_10fold_correct_pairs_give_the_fold_accuracies():
    from arclab.evaluation import verification_accuracy_10fold

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    same = rng.random(200) < 0.5
    b[same] = a[same] + 0.9 * rng.normal(size=(int(same.sum()), 8))
    r = verification_accuracy_10fold(a, b, same)
    folds = r["correct"].reshape(10, 20)  # 200 pairs: ten contiguous folds of 20
    np.testing.assert_array_equal(folds.mean(1), r["accuracies"])
    assert 0.6 < r["mean"] < 1.0 and r["correct"].dtype == bool
