"""Sharded FC and Partial FC against the dense single-process loss; the launcher; fc_memory.

The multi-rank checks run in few spawned gloo groups (each spawn costs seconds): one launched
function per world size does every preset, both K, Partial FC and the bad-input agreement, and
returns what the parent compares with the dense computation it does itself.
"""

from __future__ import annotations

import datetime
import time

import pytest
import torch

from arclab.losses.heads import NormLinear, SubCenterNormLinear
from arclab.losses.margins import PRESETS, MarginLoss
from arclab.parallel import (
    RowSGD,
    ShardedMarginFC,
    class_range,
    fc_memory,
    init_weight,
    launch,
)

COSINE_PRESETS = [name for name, m in PRESETS.items() if m.normalised]
D, C, S = 6, 7, 16.0  # embedding size, classes (uneven over 2 and 3 ranks), scale
PARTIAL_C, PARTIAL_RATE, PARTIAL_K = 40, 0.25, 2
TOL = {"rtol": 1e-7, "atol": 1e-9}


def global_batch(sizes: list[int], num_classes: int, seed: int) -> tuple[torch.Tensor, ...]:
    """The float64 embeddings (N, D) and labels (N,) of a global batch; rank r takes its rows."""
    gen = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    return (torch.randn(n, D, generator=gen, dtype=torch.float64),
            torch.randint(0, num_classes, (n,), generator=gen))


def local_rows(x: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
    start = sum(sizes[:rank])
    return x[start: start + sizes[rank]]


def dense_reference(weight: torch.Tensor, x: torch.Tensor, y: torch.Tensor, preset: str,
                    k: int) -> tuple[torch.Tensor, ...]:
    """Loss, ∂/∂x and ∂/∂W of MarginLoss(preset)(head(x), y) with the given dense weight."""
    c = weight.shape[0] // k
    head = SubCenterNormLinear(D, c, subcenters=k) if k > 1 else NormLinear(D, c)
    head = head.double()
    head.weight.data.copy_(weight)
    x = x.clone().requires_grad_()
    loss = MarginLoss(preset, s=S)(head(x), y)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad


def _rank_checks(rank: int, world_size: int, sizes: list[int]) -> dict:
    """Everything one rank computes for the multi-rank tests (see the tests below)."""
    out: dict = {}
    x_all, y_all = global_batch(sizes, C, seed=world_size)
    for k in (1, 3):
        for preset in COSINE_PRESETS:
            fc = ShardedMarginFC(D, C, margin=preset, s=S, subcenters=k, seed=1).double()
            x = local_rows(x_all, sizes, rank).clone().requires_grad_()
            loss = fc(x, local_rows(y_all, sizes, rank))
            loss.backward()
            out[f"{preset}/{k}"] = {"loss": loss.detach(), "x_grad": x.grad,
                                    "weight": fc.weight.detach(), "weight_grad": fc.weight.grad,
                                    "range": [fc.start, fc.stop]}
    # Partial FC: a sampled step, then the same seed again (same sample) and the next step
    xp_all, yp_all = global_batch(sizes, PARTIAL_C, seed=10 + world_size)
    fc = ShardedMarginFC(D, PARTIAL_C, margin="arcface", s=S, subcenters=PARTIAL_K,
                         sample_rate=PARTIAL_RATE, seed=3).double()
    x = local_rows(xp_all, sizes, rank).clone().requires_grad_()
    loss = fc(x, local_rows(yp_all, sizes, rank))
    loss.backward()
    twin = ShardedMarginFC(D, PARTIAL_C, subcenters=PARTIAL_K, sample_rate=PARTIAL_RATE,
                           seed=3).double()
    twin(local_rows(xp_all, sizes, rank), local_rows(yp_all, sizes, rank))
    first = twin.kept_classes.clone()
    twin(local_rows(xp_all, sizes, rank), local_rows(yp_all, sizes, rank))
    out["partial"] = {"loss": loss.detach(), "x_grad": x.grad, "weight": fc.weight.detach(),
                      "weight_grad": fc.weight.grad.coalesce().to_dense(),
                      "kept": fc.kept_classes, "range": [fc.start, fc.stop],
                      "twin_kept": first, "twin_next": twin.kept_classes}
    # bad input on the last rank only: every rank raises instead of waiting in a collective
    fc = ShardedMarginFC(D, C).double()
    labels = local_rows(y_all, sizes, rank) + (C if rank == world_size - 1 else 0)
    try:
        fc(local_rows(x_all, sizes, rank), labels)
        out["bad_labels"] = "no error"
    except ValueError as err:
        out["bad_labels"] = str(err)
    try:
        ShardedMarginFC(D, world_size - 1)
        out["too_few_classes"] = "no error"
    except ValueError as err:
        out["too_few_classes"] = str(err)
    return out


@pytest.fixture(scope="module", params=[(2, [5, 3]), (3, [4, 0, 6])], ids=["world2", "world3"])
def ranks(request) -> tuple[int, list[int], list[dict]]:
    world_size, sizes = request.param
    return world_size, sizes, launch(_rank_checks, world_size, sizes, timeout_s=120)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("preset", COSINE_PRESETS)
def test_sharded_equals_dense(ranks, preset, k):
    """Loss on every rank, ∂/∂x of every rank's rows and ∂/∂W of every shard equal the dense
    MarginLoss on the concatenated weights; classes split unevenly, batch sizes differ (world
    3 has an empty rank)."""
    world_size, sizes, results = ranks
    parts = [r[f"{preset}/{k}"] for r in results]
    assert [p["range"] for p in parts] == [list(class_range(C, world_size, r))
                                          for r in range(world_size)]
    weight = torch.cat([p["weight"] for p in parts])
    assert torch.equal(weight, init_weight(0, C, D, subcenters=k, seed=1).double())
    x_all, y_all = global_batch(sizes, C, seed=world_size)
    loss, x_grad, w_grad = dense_reference(weight, x_all, y_all, preset, k)
    for p in parts:
        torch.testing.assert_close(p["loss"], loss, **TOL)
    torch.testing.assert_close(torch.cat([p["x_grad"] for p in parts]), x_grad, **TOL)
    torch.testing.assert_close(torch.cat([p["weight_grad"] for p in parts]), w_grad, **TOL)


def test_partial_fc_equals_dense_on_kept_classes(ranks):
    """Every positive class is kept by its owner, about max(positives, round(r·C_r)) classes
    per rank; loss and gradients equal the dense loss over the kept classes only; unsampled
    rows get a zero gradient; the same seed draws the same sample, the next step another."""
    world_size, sizes, results = ranks
    x_all, y_all = global_batch(sizes, PARTIAL_C, seed=10 + world_size)
    parts = [r["partial"] for r in results]
    for p in parts:
        start, stop = p["range"]
        mine = torch.unique(y_all[(y_all >= start) & (y_all < stop)])
        assert set(mine.tolist()) <= set(p["kept"].tolist())
        assert len(p["kept"]) == max(len(mine), round(PARTIAL_RATE * (stop - start)))
        assert torch.equal(p["twin_kept"], p["kept"])
    assert any(not torch.equal(p["twin_next"], p["kept"]) for p in parts)  # where not all pos.
    kept = torch.cat([p["kept"] for p in parts])
    rows = (kept[:, None] * PARTIAL_K + torch.arange(PARTIAL_K)).reshape(-1)
    weight = torch.cat([p["weight"] for p in parts])
    loss, x_grad, w_grad = dense_reference(weight[rows], x_all, torch.searchsorted(kept, y_all),
                                           "arcface", PARTIAL_K)
    for p in parts:
        torch.testing.assert_close(p["loss"], loss, **TOL)
    torch.testing.assert_close(torch.cat([p["x_grad"] for p in parts]), x_grad, **TOL)
    full_grad = torch.cat([p["weight_grad"] for p in parts])
    torch.testing.assert_close(full_grad[rows], w_grad, **TOL)
    unsampled = torch.ones(len(full_grad), dtype=torch.bool)
    unsampled[rows] = False
    assert torch.count_nonzero(full_grad[unsampled]) == 0


def test_bad_input_on_one_rank_raises_on_every_rank(ranks):
    world_size, _, results = ranks
    assert f"labels must be in [0, {C})" in results[-1]["bad_labels"]
    for r in results[:-1]:
        assert f"rank(s) [{world_size - 1}]" in r["bad_labels"]
    for r in results:
        assert "num_classes must be >= the world size" in r["too_few_classes"]


def _rank_fails(rank: int, world_size: int) -> None:
    if rank == 1:
        raise ValueError("boom on purpose")
    torch.distributed.all_reduce(torch.ones(1))  # would wait for rank 1 until the timeout


def test_launch_reports_a_failing_rank_without_hanging():
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 failed: ValueError: boom on purpose"):
        launch(_rank_fails, 2, timeout_s=20)
    assert time.monotonic() - start < 20


def _rank_returns_an_object(rank: int, world_size: int) -> object:
    return datetime.timedelta(seconds=rank)  # picklable, but not what weights_only reads


def test_launch_refuses_return_values_it_would_have_to_unpickle():
    with pytest.raises(RuntimeError, match="rank 0's return value"):
        launch(_rank_returns_an_object, 1)


def test_launch_checks_its_arguments():
    with pytest.raises(ValueError, match="world_size"):
        launch(_rank_fails, 0)
    with pytest.raises(ValueError, match="timeout_s"):
        launch(_rank_fails, 1, timeout_s=0)


def test_partial_fc_step_leaves_unsampled_rows_and_momentum_untouched():
    """After a dense step (momentum everywhere non-zero), a sampled RowSGD step with momentum
    and weight decay changes only the kept rows and their momentum, exactly as torch SGD does
    on those rows alone; every other row and momentum row is bit-identical."""
    torch.manual_seed(0)
    fc = ShardedMarginFC(D, 50, subcenters=2, sample_rate=0.2, seed=4).double()
    opt = RowSGD(fc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(8, D, dtype=torch.float64), torch.randint(0, 50, (8,))
    fc.eval()  # all classes: a dense gradient
    fc(x, y).backward()
    opt.step()
    opt.zero_grad()
    assert fc.weight.grad is None
    weight, momentum = fc.weight.detach().clone(), opt.state[fc.weight]["momentum_buffer"].clone()
    fc.train()
    fc(x, y).backward()
    grad = fc.weight.grad.coalesce()
    rows = grad.indices()[0]
    assert grad.is_sparse and len(rows) == len(fc.kept_classes) * 2 < 100
    sub = torch.nn.Parameter(weight[rows].clone())
    sub.grad = grad.values().clone()
    reference = torch.optim.SGD([sub], lr=0.1, momentum=0.9, weight_decay=5e-4)
    reference.state[sub]["momentum_buffer"] = momentum[rows].clone()
    reference.step()
    opt.step()
    untouched = torch.ones(100, dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(fc.weight.detach()[untouched], weight[untouched])
    assert torch.equal(opt.state[fc.weight]["momentum_buffer"][untouched], momentum[untouched])
    torch.testing.assert_close(fc.weight.detach()[rows], sub.detach(), rtol=0, atol=1e-15)
    torch.testing.assert_close(opt.state[fc.weight]["momentum_buffer"][rows],
                               reference.state[sub]["momentum_buffer"], rtol=0, atol=1e-15)
    assert not torch.equal(fc.weight.detach()[rows], weight[rows])


def test_row_sgd_dense_is_torch_sgd():
    torch.manual_seed(1)
    a, b = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(4, 3))
    b.data.copy_(a.data)
    opts = [RowSGD([a], lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True),
            torch.optim.SGD([b], lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)]
    for _ in range(3):
        g = torch.randn(4, 3)
        for p, opt in zip((a, b), opts):
            p.grad = g.clone()
            opt.step()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="lr"):
        RowSGD([a], lr=0)
    with pytest.raises(ValueError, match="momentum"):
        RowSGD([a], lr=0.1, momentum=-1)


def test_row_sgd_sums_duplicate_rows_of_an_unsorted_sparse_gradient():
    w = torch.nn.Parameter(torch.zeros(4, 2))
    torch.nn.functional.embedding(torch.tensor([2, 0, 2]), w, sparse=True).sum().backward()
    RowSGD([w], lr=1.0, momentum=0.5).step()
    assert w.detach()[:, 0].tolist() == [-1.0, 0.0, -2.0, 0.0]


def test_single_process_layer_and_state():
    """No process group: a plain layer over all classes; the sampler's step counter is saved
    in the state dict, so a resumed run draws the same sample."""
    fc = ShardedMarginFC(D, 30, sample_rate=0.5, seed=2).double()
    assert (fc.rank, fc.world_size, fc.start, fc.stop) == (0, 1, 0, 30)
    x, y = torch.randn(5, D, dtype=torch.float64), torch.randint(0, 30, (5,))
    fc(x, y)
    resumed = ShardedMarginFC(D, 30, sample_rate=0.5, seed=2).double()
    resumed.load_state_dict(fc.state_dict())
    assert resumed.step == fc.step == 1
    fc(x, y)
    resumed(x, y)
    assert torch.equal(resumed.kept_classes, fc.kept_classes)
    fc.eval()
    fc(x, y)
    assert fc.kept_classes is None and fc.step == 2
    assert float(fc(x[:0], y[:0]).detach()) == 0.0


def test_bad_input():
    x, y = torch.randn(4, D), torch.tensor([0, 1, 2, 6])
    fc = ShardedMarginFC(D, C)
    for bad_x, bad_y, name in [(x[:, :-1], y, "embeddings"), (x.long(), y, "embeddings"),
                               (x, y.float(), "labels"), (x, y[:3], "labels"),
                               (x, y + 1, "labels"), (x, y - 1, "labels"),
                               (x * float("nan"), y, "embeddings")]:
        with pytest.raises(ValueError, match=name):
            fc(bad_x, bad_y)
    for kwargs, name in [({"sample_rate": 0.0}, "sample_rate"), ({"sample_rate": 1.5},
                         "sample_rate"), ({"subcenters": 0}, "subcenters"),
                         ({"margin": "softmax"}, "margin"), ({"margin": "nope"}, "margin"),
                         ({"s": -1.0}, "s must"), ({"gradient": "nope"}, "gradient"),
                         ({"overflow": "nope"}, "overflow")]:
        with pytest.raises(ValueError, match=name):
            ShardedMarginFC(D, C, **kwargs)
    with pytest.raises(ValueError, match="num_classes"):
        class_range(2, 3, 0)
    with pytest.raises(ValueError, match="rank"):
        class_range(7, 3, 3)


def test_class_range_is_contiguous_and_balanced():
    for c, w in [(7, 2), (7, 3), (10, 10), (1_000_003, 8)]:
        blocks = [class_range(c, w, r) for r in range(w)]
        assert blocks[0][0] == 0 and blocks[-1][1] == c
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        assert max(b - a for a, b in blocks) - min(b - a for a, b in blocks) <= 1


def test_fc_memory_matches_the_slides_and_the_formula():
    assert fc_memory(1_000_000, 512)["weight"] == 2.048e9  # 512 × 1M × 4 B = 2 GB
    assert fc_memory(1_000_000, 512, 8)["weight"] == 256e6  # 256 MB per GPU on 8
    m = fc_memory(10, 4, 3, batch_size=5, sample_rate=0.5, dtype=torch.float64, subcenters=2)
    # C_r = 4 classes on rank 0, kept 2, global batch 15
    assert m == {"weight": 4 * 2 * 4 * 8, "weight_grad": 2 * 2 * (4 * 8 + 8),
                 "momentum": 4 * 2 * 4 * 8, "logits": 15 * 2 * 8, "logits_grad": 15 * 2 * 8,
                 "total": 256 + 160 + 256 + 240 + 240}
    assert fc_memory(10, 4)["weight_grad"] == fc_memory(10, 4)["weight"]
    with pytest.raises(ValueError, match="sample_rate"):
        fc_memory(10, 4, sample_rate=0)
    with pytest.raises(ValueError, match="num_classes"):
        fc_memory(2, 4, 3)


def test_fc_memory_matches_measured_tensors():
    """The weight, its (row-sparse) gradient and the momentum of a real step have the bytes
    fc_memory models."""
    fc = ShardedMarginFC(D, 40, subcenters=2, sample_rate=0.25, seed=0).double()
    opt = RowSGD(fc.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(3, D, dtype=torch.float64), torch.tensor([0, 1, 2])  # 3 <= 10 kept
    fc(x, y).backward()
    opt.step()
    grad = fc.weight.grad.coalesce()
    measured = {"weight": fc.weight.nbytes,
                "weight_grad": grad.values().nbytes + grad.indices().nbytes,
                "momentum": opt.state[fc.weight]["momentum_buffer"].nbytes}
    model = fc_memory(40, D, batch_size=3, sample_rate=0.25, dtype=torch.float64,
                      subcenters=2)
    assert measured == {key: model[key] for key in measured}
    assert x.shape[0] * len(fc.kept_classes) * 8 == model["logits"]
