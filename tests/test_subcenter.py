"""Sub-center head, dominant sub-centers, drop-and-retrain, noisy training sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from arclab.data.params import SynthConfig
from arclab.data.splits import OUTLIER_OFFSET, noisy_training_set
from arclab.losses.heads import NormLinear, SubCenterNormLinear, make_head
from arclab.losses.margins import PRESETS, MarginLoss
from arclab.losses.subcenter import dominant_subcenters, drop_noisy, drop_quality, threshold_sweep
from arclab.train.config import TrainConfig, weights_key
from arclab.train.sources import build_dataset
from arclab.train.spec import load_spec, tutorial_spec


def test_subcenter_head_with_one_subcenter_is_normlinear():
    torch.manual_seed(0)
    plain = NormLinear(6, 5)
    sub = SubCenterNormLinear(6, 5, subcenters=1)
    sub.weight.data.copy_(plain.weight.data)
    x = torch.randn(7, 6)
    assert torch.equal(sub(x), plain(x))


def test_max_picks_the_nearest_subcenter_and_only_it_gets_gradient():
    torch.manual_seed(1)
    c, k, d = 4, 3, 5
    head = SubCenterNormLinear(d, c, subcenters=k)
    x = torch.randn(1, d, dtype=torch.float64)
    head.double()
    cos = F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T  # (1, C*K)
    winners = [cls * k + int(cos[0, cls * k:(cls + 1) * k].argmax()) for cls in range(c)]
    out = head(x)
    assert torch.allclose(out[0], cos[0, winners].detach())
    MarginLoss("arcface", s=16.0)(out, torch.tensor([2])).backward()
    nonzero = (head.weight.grad.abs().sum(1) > 0).nonzero().squeeze(1).tolist()
    assert nonzero == winners


@pytest.mark.parametrize("preset", [p for p in PRESETS if PRESETS[p].normalised])
def test_every_margin_applies_to_the_winning_subcenter(preset):
    """Loss and feature gradient of the sub-center head equal those of a plain head whose
    class weights are the sub-centers each sample picks (brute force, one sample at a time)."""
    torch.manual_seed(2)
    c, k, d = 5, 3, 8
    head = SubCenterNormLinear(d, c, subcenters=k).double()
    x = torch.randn(4, d, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, 3, 4])
    loss_fn = MarginLoss(preset, s=8.0)
    loss = loss_fn(head(x), y)
    (g,) = torch.autograd.grad(loss, x)
    w = F.normalize(head.weight.detach(), dim=1).view(c, k, d)
    total, grads = 0.0, []
    for i in range(len(y)):
        xi = x[i:i + 1].detach().clone().requires_grad_()
        pick = (F.normalize(xi.detach(), dim=1) @ w.transpose(1, 2)).squeeze(1).argmax(1)
        plain = NormLinear(d, c).double()
        plain.weight.data.copy_(w[torch.arange(c), pick.view(-1)])
        li = loss_fn(plain(xi), y[i:i + 1])
        grads.append(torch.autograd.grad(li, xi)[0])
        total += float(li.detach())
    assert float(loss.detach()) == pytest.approx(total / len(y), rel=1e-10)
    assert torch.allclose(g, torch.cat(grads) / len(y), atol=1e-12)


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_dominant_subcenter_and_drop_on_a_hand_made_example():
    # class 0: sub-centers at 0 and 90 degrees; class 1: at 180 and 270 degrees (K = 2)
    w = torch.tensor([_unit(0), _unit(90), _unit(180), _unit(270)])
    feats = torch.tensor([_unit(10), _unit(-20), _unit(85),            # class 0
                          _unit(260), _unit(275), _unit(265), _unit(190), _unit(100)])
    labels = [0, 0, 0, 1, 1, 1, 1, 1]
    out = drop_noisy(feats, labels, w, subcenters=2, threshold_deg=75.0)
    assert out["counts"].tolist() == [[2, 1], [2, 3]]
    assert out["dominant"].tolist() == [0, 1]  # class 0 picks 0 twice; class 1 picks 270 thrice
    assert out["nearest"].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    assert np.allclose(out["angle"], [10, 20, 85, 10, 5, 5, 80, 170], atol=1e-9)
    assert out["keep"].tolist() == [0, 1, 3, 4, 5]
    assert out["drop"].tolist() == [2, 6, 7]
    assert out["stats"]["dominant_fraction"] == pytest.approx(5 / 8)
    # with a head module, the same; a tie (one sample at each) goes to the lowest index
    head = SubCenterNormLinear(2, 2, subcenters=2)
    head.weight.data.copy_(w)
    tie = dominant_subcenters(torch.tensor([_unit(10), _unit(80)]), [0, 0], head)
    assert tie["nearest"].tolist() == [0, 1] and tie["dominant"].tolist() == [0, 0]


def test_drop_precision_on_a_constructed_noisy_set():
    """Clean samples lie within 40 degrees of their class's dominant sub-center; flipped ones
    carry another class's label, outliers are random directions: the drop finds exactly the
    noisy samples whose angle exceeds the threshold, computed here by brute force."""
    rng = np.random.default_rng(0)
    c, k, d, per = 6, 3, 24, 30
    centres = np.linalg.qr(rng.normal(size=(d, d)))[0][: c * k]  # orthonormal sub-centers
    weight = torch.tensor(centres, dtype=torch.float64)
    labels = np.repeat(np.arange(c), per)
    feats, noise = [], np.zeros(len(labels), dtype=np.int64)
    for i, y in enumerate(labels):
        v = centres[y * k] + 0.15 * rng.normal(size=d) / math.sqrt(d)
        if i % 10 == 3:  # a closed-set flip: the face of another class
            v = centres[((y + 1) % c) * k] + 0.15 * rng.normal(size=d) / math.sqrt(d)
            noise[i] = 1
        elif i % 10 == 7:  # an open-set outlier
            v = rng.normal(size=d)
            noise[i] = 2
        feats.append(v)
    feats = np.array(feats)
    out = drop_noisy(feats, labels, weight, subcenters=k)
    cos = (feats / np.linalg.norm(feats, axis=1, keepdims=True) * centres[labels * k]).sum(1)
    expect = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    assert np.allclose(out["angle"], expect, atol=1e-9)
    assert out["dominant"].tolist() == [0] * c
    q = drop_quality(out["angle"] > 75, noise)
    assert q["precision"] == 1.0 and q["clean_kept"] == 1.0
    assert q["by_type"]["closed-set flip"]["recall"] == 1.0
    assert q["recall"] == pytest.approx(float((expect[noise > 0] > 75).mean()))
    sweep = threshold_sweep(out["angle"], noise, [30, 75, 179])
    assert [r["kept_fraction"] for r in sweep] == sorted(r["kept_fraction"] for r in sweep)
    assert sweep[-1]["recall"] == 0.0 and sweep[-1]["precision"] == 0.0


def test_drop_quality_formula():
    q = drop_quality(np.array([0, 2, 3]), [0, 1, 1, 2, 0])
    assert q["precision"] == pytest.approx(2 / 3)
    assert q["recall"] == pytest.approx(2 / 3)
    assert q["clean_kept"] == pytest.approx(1 / 2)
    assert q["by_type"]["open-set outlier"] == {"n": 1, "dropped": 1, "recall": 1.0}
    assert q["by_type"]["closed-set flip"] == {"n": 2, "dropped": 1, "recall": 0.5}


def test_bad_input_is_refused():
    w = torch.randn(6, 4)
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="subcenters"):
        SubCenterNormLinear(4, 3, subcenters=0)
    with pytest.raises(ValueError, match="subcenters"):
        make_head("arcface", 4, 3, subcenters=0)
    with pytest.raises(ValueError, match="subcenters"):
        make_head("softmax", 4, 3, subcenters=2)
    with pytest.raises(ValueError, match="subcenters"):
        dominant_subcenters(x, [0, 1, 2], w, subcenters=0)
    for t in (0, 180, -5, 200.0):
        with pytest.raises(ValueError, match="threshold_deg"):
            drop_noisy(x, [0, 1, 2], w, subcenters=2, threshold_deg=t)
    with pytest.raises(ValueError, match="labels"):
        drop_noisy(x, [0, 1, 3], w, subcenters=2)
    with pytest.raises(ValueError, match="labels"):
        drop_noisy(x, [0, -1, 2], w, subcenters=2)
    with pytest.raises(ValueError, match="finite"):
        drop_noisy(torch.full((3, 4), float("nan")), [0, 1, 2], w, subcenters=2)
    with pytest.raises(ValueError, match="subcenters"):
        TrainConfig(margin="softmax", subcenters=3)
    with pytest.raises(ValueError, match="subcenters"):
        TrainConfig(subcenters=0)


def test_neutral_subcenters_keeps_old_run_keys():
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "subcenters"}
    assert weights_key(old) == weights_key(TrainConfig(subcenters=1).to_dict())
    assert weights_key(old) != weights_key(TrainConfig(subcenters=3).to_dict())


def test_noisy_training_set_renders_outlier_faces_and_keeps_truth():
    t = noisy_training_set(SynthConfig(seed=3), 20, 5, closed_rate=0.1, open_rate=0.2,
                           seed=1)
    ident, noise = t["items"]["identity"], t["noise"]
    assert np.bincount(noise).tolist() == [70, 10, 20]
    assert (ident[noise == 2] >= OUTLIER_OFFSET).all()
    assert (ident[noise != 2] == t["clean_label"][noise != 2]).all()
    assert (t["label"][noise == 1] != t["clean_label"][noise == 1]).all()
    assert (t["label"][noise != 1] == t["clean_label"][noise != 1]).all()


def test_spec_noise_and_keep_select_the_training_items():
    spec = tutorial_spec(n_train_ids=4, n_per_id=3, input_size=32,
                         label_noise={"closed_rate": 0.25, "open_rate": 0.0, "seed": 0},
                         keep=[0, 2, 5, 11])
    data, n_classes = build_dataset(spec["data"], 32, progress=False)
    t = noisy_training_set(SynthConfig(seed=0), 4, 3, closed_rate=0.25)
    assert n_classes == 4 and len(data) == 4
    assert [data[i][1] for i in range(4)] == t["label"][[0, 2, 5, 11]].tolist()
    with pytest.raises(ValueError, match="data.keep"):
        load_spec({"data": {"n_identities": 4, "n_per_identity": 3, "keep": [12]}})
    with pytest.raises(ValueError, match="label_noise"):
        load_spec({"data": {"n_identities": 4, "n_per_identity": 3,
                            "label_noise": {"closed_rate": 2}}})
