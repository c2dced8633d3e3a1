"""arclab.experiments.inversion: the BN-statistics loss against its formula, inversion on a tiny
model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from arclab.experiments.inversion import (
    bn_statistics_loss,
    deepinversion_bn_sum,
    invert,
    total_variation,
)


def _tiny(seed: int = 0) -> nn.Module:
    """conv-BN-PReLU twice, pooling, FC to 8-d and a BatchNorm1d (insightface's feature BN,
    which centres the embeddings: two random images are not already similar); running
    statistics set from random images so they are not the (0, 1) defaults."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.PReLU(8),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.PReLU(8),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 8),
                        nn.BatchNorm1d(8))
    net.train()
    with torch.no_grad():
        for _ in range(20):
            net(torch.rand(16, 3, 16, 16) * 1.6 - 0.9)
    return net.eval()


def test_bn_loss_is_the_mean_relative_distance_over_the_feature_map_bn_layers():
    net = _tiny()
    x = torch.randn(4, 3, 16, 16)
    _, loss = bn_statistics_loss(net, x)
    # by hand: run the layers one at a time and measure the input of each BatchNorm2d; the
    # final BatchNorm1d (on the embedding vectors) is left out by design
    terms, h = [], x
    for layer in net:
        if isinstance(layer, nn.BatchNorm2d):
            mean = h.mean((0, 2, 3), keepdim=True)
            var = ((h - mean) ** 2).mean((0, 2, 3))
            mean = mean.flatten()
            terms.append(((mean - layer.running_mean).norm() / layer.running_var.sum().sqrt()
                          + (var - layer.running_var).norm() / layer.running_var.norm()).item())
        h = layer(h)
    assert len(terms) == 2
    assert loss.item() == pytest.approx(sum(terms) / 2, rel=1e-5)
    # scale-free: scaling a layer's input and its running statistics together changes nothing
    scaled = _tiny()
    with torch.no_grad():
        scaled[0].weight.mul_(3.0)
        scaled[0].bias.mul_(3.0)
        scaled[1].running_mean.mul_(3.0)
        scaled[1].running_var.mul_(9.0)
    assert bn_statistics_loss(scaled, x)[1].item() == pytest.approx(loss.item(), rel=1e-4)
    with pytest.raises(ValueError, match="must contain BatchNorm layers"):
        bn_statistics_loss(nn.Linear(3, 2), torch.randn(2, 3))
    with pytest.raises(ValueError, match="on feature maps"):
        bn_statistics_loss(nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval(),
                           torch.randn(2, 3))


def test_deepinversion_sum_is_the_absolute_sum_over_every_bn_layer():
    net = _tiny(1)
    x = torch.randn(4, 3, 16, 16)
    total, h = 0.0, x
    for layer in net:  # by hand, the final BatchNorm1d included
        if isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm1d)):
            dims = (0, 2, 3) if h.ndim == 4 else (0,)
            mean = h.mean(dims)
            var = ((h - h.mean(dims, keepdim=True)) ** 2).mean(dims)
            total += ((mean - layer.running_mean).norm()
                      + (var - layer.running_var).norm()).item()
        h = layer(h)
    assert deepinversion_bn_sum(net, x) == pytest.approx(total, rel=1e-5)
    # absolute: scaling a layer's input and running statistics by 3 changes it, unlike the
    # relative mean of bn_statistics_loss
    scaled = _tiny(1)
    with torch.no_grad():
        scaled[0].weight.mul_(3.0)
        scaled[0].bias.mul_(3.0)
        scaled[1].running_mean.mul_(3.0)
        scaled[1].running_var.mul_(9.0)
    assert deepinversion_bn_sum(scaled, x) > total * 1.05
    with pytest.raises(ValueError, match="must contain BatchNorm layers"):
        deepinversion_bn_sum(nn.Linear(3, 2), torch.randn(2, 3))


def test_total_variation_by_hand():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)  # rows differ by 4, columns by 1
    assert total_variation(x).item() == pytest.approx((8 * 4 + 9 * 1) / (8 + 9))


def test_inversion_raises_the_target_cosine_far_above_its_start_and_is_reproducible():
    net = _tiny()
    with torch.no_grad():
        target = net(torch.rand(3, 3, 16, 16) * 2 - 1)
    runs = [invert(net, target, input_size=16, steps=150, lr=0.05, bn_weight=0.0, seed=4,
                   progress=False)
            for _ in range(2)]
    start, end = runs[0]["history"]["cosine"][0], runs[0]["cosine"]
    assert end.min() > 0.95 and (1 - end.mean()) < 0.2 * (1 - start)  # the gap shrinks 5x
    assert torch.equal(runs[0]["images"], runs[1]["images"])  # deterministic by seed
    assert runs[0]["images"].abs().max() <= 1
    other = invert(net, target, input_size=16, steps=5, seed=5, progress=False)
    assert not torch.equal(other["images"], invert(net, target, input_size=16, steps=5,
                                                   seed=4, progress=False)["images"])
    assert not net.training and all(p.requires_grad for p in net.parameters())


def test_the_bn_prior_pulls_the_batch_statistics_towards_the_running_ones():
    net = _tiny()
    with torch.no_grad():
        target = net(torch.rand(8, 3, 16, 16) * 2 - 1)
    off = invert(net, target, input_size=16, steps=150, bn_weight=0.0, seed=1,
                 progress=False)
    on = invert(net, target, input_size=16, steps=150, bn_weight=1.0, seed=1,
                progress=False)
    _, bn_off = bn_statistics_loss(net, off["images"])
    _, bn_on = bn_statistics_loss(net, on["images"])
    assert bn_on.item() < 0.7 * bn_off.item()
    assert on["cosine"].mean() > 0.8  # identity is kept while the statistics move


@pytest.mark.parametrize("kwargs, message", [
    ({"target": torch.zeros(2, 8)}, "no zero rows"),
    ({"target": torch.ones(8)}, r"must be a \(B, D\) tensor"),
    ({"target": torch.ones(2, 5)}, "target has D = 5"),
    ({"steps": 0}, "steps must be a positive integer"),
    ({"bn_weight": -1.0}, "bn_weight must be a finite number >= 0"),
    ({"input_size": 4}, "input_size must be an integer >= 8"),
    ({"init": torch.zeros(1, 3, 16, 16)}, r"init must have shape \(2, 3, 16, 16\)"),
])
def test_bad_arguments_are_named(kwargs, message):
    args = {"target": torch.ones(2, 8), "input_size": 16, "steps": 2, "progress": False}
    with pytest.raises(ValueError, match=message):
        invert(_tiny(), **(args | kwargs))
    with pytest.raises(ValueError, match="needs a model with BatchNorm"):
        invert(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8)), torch.ones(1, 8),
               input_size=16, steps=1, progress=False)
    with pytest.raises(ValueError, match="needs BatchNorm layers on feature maps"):
        invert(nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 8), nn.BatchNorm1d(8)).eval(),
               torch.ones(1, 8), input_size=16, steps=1, progress=False)


def test_uint8_round_trip_and_image_statistics_by_hand():
    import numpy as np

    from arclab.experiments.inversion import image_statistics, to_uint8

    x = torch.rand(2, 3, 5, 4) * 2 - 1
    u = to_uint8(x)
    assert u.shape == (2, 5, 4, 3) and u.dtype == np.uint8
    back = torch.from_numpy(u).permute(0, 3, 1, 2).float() / 127.5 - 1  # embed_images' scaling
    assert (back - x).abs().max() <= 1 / 127.5
    img = np.zeros((1, 3, 3, 3), np.uint8)
    img[0, 1, 1] = 90  # one grey pixel: 4 of the 12 adjacent differences per channel are 90
    stats = image_statistics(img)
    assert stats["mean"] == pytest.approx(10.0) and stats["tv"] == pytest.approx(4 * 90 / 12)
    assert stats["saturated"] == pytest.approx(8 / 9)
    with pytest.raises(ValueError, match="uint8"):
        image_statistics(img.astype(np.float32))


def test_holdout_halves_alternate_within_each_group_and_the_pick_ignores_the_test_half():
    import numpy as np

    from arclab.experiments.inversion_judge import holdout_halves, pick_weight

    val, test = holdout_halves(4)  # targets 0-3 inside, 4-7 outside
    assert val.tolist() == [1, 3, 5, 7] and test.tolist() == [0, 2, 4, 6]
    val, test = holdout_halves(5)
    assert sorted(np.r_[val, test].tolist()) == list(range(10)) and not set(val) & set(test)
    assert {int(i >= 5) for i in val} == {0, 1} and len(test) == 6  # both groups in each
    # the test rows favour 3.0, the validation rows 0.3: only the validation rows decide
    scores = {0.0: np.full(8, 0.9), 0.3: np.array([0, .6, 0, .6, 0, .6, 0, .6]),
              3.0: np.array([1, .2, 1, .2, 1, .2, 1, .2])}
    val, test = holdout_halves(4)
    assert pick_weight(scores, val) == 0.3 and pick_weight(scores, test) == 3.0
    assert pick_weight(scores, val, exclude=()) == 0.0  # 0 competes only when not excluded
    assert pick_weight({1.0: np.ones(2), 0.5: np.ones(2)}, np.arange(2)) == 0.5  # tie: smaller
    with pytest.raises(ValueError, match="n_invert must be an integer >= 2"):
        holdout_halves(1)
    with pytest.raises(ValueError, match="need a weight outside"):
        pick_weight({0.0: np.ones(2)}, np.arange(2))


def test_compare_identities_is_the_one_seed_paired_comparison_and_judge_images_by_hand():
    import numpy as np
    import torch.nn.functional as F

    from arclab.evaluation.paired import compare_paired, grouped_mean_boot, identity_resamples
    from arclab.experiments.inversion_judge import compare_identities, judge_images

    a, b = np.array([0.5, 0.1, 0.9, 0.4, 0.6]), np.array([0.3, 0.2, 0.5, 0.4, 0.1])
    c = compare_identities(a, b, name_a="on", name_b="off", unit="cos", seed=3)
    counts = identity_resamples(5, 200, seed=3)
    want = compare_paired([a.mean()], [b.mean()], grouped_mean_boot(a, np.arange(5), counts)[None],
                          grouped_mean_boot(b, np.arange(5), counts)[None], name_a="on",
                          name_b="off", unit="cos")
    assert c.mean == pytest.approx(a.mean() - b.mean()) and c.half_width == want.half_width
    assert c.test_only and c.verdict == want.verdict
    with pytest.raises(ValueError, match="one length N >= 2"):
        compare_identities(a, b[:4], name_a="on", name_b="off")
    # a judge that returns the image's first pixel's colour as its feature (flip test: same)
    judge = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[0, ..., 0] = 255  # (+1, -1, -1) after scaling
    images[1, ..., 1] = 255  # (-1, +1, -1)
    refs = F.normalize(torch.tensor([[[1.0, -1, -1], [1, 1, 1]], [[1, -1, -1], [1, 1, 1]]]), dim=2)
    v = judge_images(judge, images, refs, threshold=0.5)
    f = F.normalize(torch.tensor([[1.0, -1, -1], [-1, 1, -1]]), dim=1)
    centre = F.normalize(refs.mean(1), dim=1)
    assert torch.allclose(v["cos to centre"], (f * centre).sum(1))
    assert v["accepted"].tolist() == [0.5, 0.0]  # image 0 matches its first reference only
    with pytest.raises(ValueError, match=r"references must be \(N, K, D\)"):
        judge_images(judge, images, refs[:1], threshold=0.5)
