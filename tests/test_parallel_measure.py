"""arclab.parallel.sizing and .measure: the memory model over a grid, ranks needed, per-rank
measurements and the equality check, each against numbers computed here from the definitions.

One spawned 3-rank gloo group (uneven classes and batches, an empty rank) runs both launched
functions; everything else runs in this process, where the layer is a plain single-rank one.
"""

from __future__ import annotations

import math

import pytest
import torch

from arclab.parallel import class_range, fc_memory, launch
from arclab.parallel.measure import dense_margin_loss, equality_check, fc_step_stats
from arclab.parallel.sizing import measured_vs_model, memory_table, ranks_needed

C, D, BATCH, RATE = 100, 16, 7, 0.25  # 100 classes over 3 ranks: 34, 33, 33
CHECK_SIZES = [4, 0, 3]


def _wrong_reference(weight, x, y, *, margin, s, subcenters):
    """A plausible bug: the dense loss without the margin (as if m were 0)."""
    return dense_margin_loss(weight, x, y, margin="normface", s=s, subcenters=subcenters)


def _rank_both(rank: int, world_size: int) -> dict:
    return {"stats": fc_step_stats(rank, world_size, C, D, BATCH, [1.0, RATE], 2),
            "check": equality_check(rank, world_size, C, D, CHECK_SIZES, [1.0, RATE],
                                    subcenters=2)}


@pytest.fixture(scope="module")
def three_ranks() -> list[dict]:
    return launch(_rank_both, 3, timeout_s=180)


def test_memory_table_is_the_closed_form():
    rows = memory_table([1_000_000, 10_000_003], [1, 8], [1.0, 0.1], 512, batch_size=64)
    assert len(rows) == 8
    for row in rows:
        c, w, r = row["classes"], row["world_size"], row["sample_rate"]
        c_r = math.ceil(c / w)  # rank 0 holds the largest shard
        kept = c_r if r == 1 else round(r * c_r)
        assert row["weight"] == row["momentum"] == c_r * 512 * 4
        assert row["weight_grad"] == (c_r * 512 * 4 if r == 1 else kept * (512 * 4 + 8))
        assert row["logits"] == row["logits_grad"] == 64 * w * kept * 4
        assert row["features"] == 64 * w * 512 * 4
        assert row["total"] == (2 * c_r * 512 * 4 + row["weight_grad"] + 2 * row["logits"])
    slides = next(r for r in rows if (r["classes"], r["world_size"], r["sample_rate"])
                  == (1_000_000, 8, 1.0))
    assert slides["weight"] == slides["logits"] == 256e6  # 2 GB / 8 = 256 MB, W and x^T W
    assert slides["features"] == 64 * 8 * 512 * 4  # the slides' "1 MB" (1.05e6 bytes)


def test_ranks_needed_is_the_first_world_size_that_fits():
    # by hand: 1M classes, D = 512, 64 per rank: 3·2.048e9/W + 2·64·1e6·4 bytes <= 2e9 first
    # at W = 5 (1.2288e9 + 0.512e9); W = 4 gives 1.536e9 + 0.512e9 = 2.048e9 > 2e9
    assert ranks_needed(1_000_000, 512, 2e9) == 5
    budget = 1e9
    w = ranks_needed(3_000_000, 512, budget, sample_rate=0.1)
    assert fc_memory(3_000_000, 512, w, batch_size=64, sample_rate=0.1)["total"] <= budget
    assert all(fc_memory(3_000_000, 512, v, batch_size=64, sample_rate=0.1)["total"] > budget
               for v in range(1, w))
    # 100M classes: the logits floor 2·64·1e8·4 = 51.2 GB exceeds 32 GB at any world size
    assert ranks_needed(100_000_000, 512, 32e9) is None
    assert ranks_needed(100_000_000, 512, 32e9, sample_rate=0.1) is not None


def test_step_stats_in_one_process_match_the_tensors_definitions():
    out = fc_step_stats(0, 1, 200, D, 5, [1.0, 0.1], 2, threads=1)
    assert out["threads"] == 1 and out["classes"] == 200 and out["batch"] == 5
    assert out["weight"] == out["momentum"] == 200 * D * 4
    full, partial = out["modes"]
    assert full["kept"] == 200 and full["weight_grad"] == 200 * D * 4
    assert full["logits"] == 5 * 200 * 4 and full["logit_copies"] >= 1
    assert 5 <= partial["kept"] <= 20  # max(positives, round(0.1·200)), positives <= 5
    assert partial["weight_grad"] == partial["kept"] * (D * 4 + 8)  # values + int64 rows
    assert partial["logits"] == 5 * partial["kept"] * 4
    assert partial["saved"] < full["saved"]
    for mode in out["modes"]:
        assert len(mode["times"]) == 2 and min(mode["times"]) > 0
    with pytest.raises(ValueError, match="repeats"):
        fc_step_stats(0, 1, 200, D, 5, [1.0], 0)
    rows = measured_vs_model({1: [out]}, 200, D)
    assert [r["sample_rate"] for r in rows] == [1.0, 0.1]
    for row in rows:  # 20 kept classes > 5 positives: the model's count is the measured one
        for key in ("weight", "weight_grad", "momentum", "logits"):
            assert row[key] == row[f"model_{key}"], key
        assert row["model_total"] == sum(fc_memory(200, D, batch_size=5,
                                                   sample_rate=row["sample_rate"])[k]
                                         for k in ("weight", "weight_grad", "momentum",
                                                   "logits", "logits_grad"))


def test_step_stats_on_three_ranks_follow_the_class_ranges(three_ranks):
    for rank, result in enumerate(three_ranks):
        stats = result["stats"]
        start, stop = class_range(C, 3, rank)
        assert stats["classes"] == stop - start
        assert stats["weight"] == stats["momentum"] == (stop - start) * D * 4
        assert stats["batch"] == [3, 2, 2][rank]
        full, partial = stats["modes"]
        assert full["weight_grad"] == (stop - start) * D * 4
        assert full["logits"] == BATCH * (stop - start) * 4  # global batch × local classes
        assert partial["weight_grad"] == partial["kept"] * (D * 4 + 8)
        assert partial["logits"] == BATCH * partial["kept"] * 4
    times = [r["stats"]["modes"][0]["times"] for r in three_ranks]
    assert all(len(t) == 2 for t in times)


def test_equality_check_on_three_ranks_is_exact(three_ranks):
    for rank, result in enumerate(three_ranks):
        full, partial = result["check"]
        assert full["classes"] == list(class_range(C, 3, rank))
        for check in (full, partial):
            assert check["loss_diff"] < 1e-12
            assert check["embeddings_grad_diff"] < 1e-12
            assert check["weight_grad_diff"] < 1e-10
        assert full["unsampled_grad_max"] == 0.0 and full["kept"] == full["classes"][1] - \
            full["classes"][0]
        assert partial["unsampled_grad_max"] == 0.0 and partial["kept"] < full["kept"]
        # the same loss on every rank, and a rank alone (no all-reduce) gets another number
        assert full["loss"] == pytest.approx(three_ranks[0]["check"][0]["loss"], abs=1e-12)
        assert abs(full["local_only_loss"] - full["dense_loss"]) > 1e-3


def test_equality_check_detects_a_wrong_reference():
    right = equality_check(0, 1, 30, D, [6], [1.0, 0.2])
    wrong = equality_check(0, 1, 30, D, [6], [1.0, 0.2], reference=_wrong_reference)
    for good, bad in zip(right, wrong):
        assert max(good["loss_diff"], good["embeddings_grad_diff"],
                   good["weight_grad_diff"]) < 1e-10
        assert bad["loss_diff"] > 1e-3 and bad["weight_grad_diff"] > 1e-6
    with pytest.raises(ValueError, match="batch_sizes"):
        equality_check(0, 1, 30, D, [3, 3])


def test_dense_margin_loss_is_the_textbook_formula():
    """ArcFace by hand: CE of s·cos(θ_y + m) against s·cos θ_j, one softmax over all classes."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 4, 2, 2])
    loss, gx, gw = dense_margin_loss(w, x, y, s=8.0)
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    logits = 8.0 * cos
    logits[torch.arange(4), y] = 8.0 * torch.cos(torch.acos(cos[torch.arange(4), y]) + 0.5)
    assert float(loss) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)),
                                        abs=1e-12)
    assert gx.shape == x.shape and gw.shape == w.shape
