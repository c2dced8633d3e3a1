"""The 2-D toy of notebook 00, checked against independent geometry."""

from __future__ import annotations

import math

import pytest
import torch

from arclab.experiments import toy


def test_blobs_are_deterministic_and_centred_on_their_directions():
    x, y = toy.make_blobs_2d(4, 400, angle_spread_deg=5.0, seed=3)
    x2, y2 = toy.make_blobs_2d(4, 400, angle_spread_deg=5.0, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, toy.make_blobs_2d(4, 400, angle_spread_deg=5.0, seed=4)[0])
    for c in range(4):
        mean_dir = x[y == c].sum(0)
        angle = math.degrees(math.atan2(mean_dir[1], mean_dir[0])) % 360
        assert abs(angle - 90 * c) < 1.5
    norms = torch.stack([x[y == c].norm(dim=1).mean() for c in range(4)])
    assert bool((norms.diff() > 0).all()), "class norms must grow with the class index"


@pytest.mark.parametrize("kwargs, match", [
    ({"n_classes": 1}, "n_classes"), ({"n_per_class": 0}, "n_per_class"),
    ({"angle_spread_deg": -1.0}, "angle_spread_deg"), ({"radius": (2.0, 1.0)}, "radius"),
])
def test_blobs_refuse_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy.make_blobs_2d(**kwargs)


def test_normalised_logits_are_s_cos_of_the_angle():
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(50, 2, generator=gen) * 3, torch.randn(4, 2, generator=gen)
    angle = torch.atan2(x[:, 1:], x[:, :1]) - torch.atan2(w[:, 1], w[:, 0])
    expected = 7.0 * torch.cos(angle)
    got = toy.linear_logits(x, w, torch.ones(4), normalised=True, s=7.0)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    plain = toy.linear_logits(x, w, torch.ones(4))
    torch.testing.assert_close(plain, x @ w.T + 1)


def test_scale_consistency_separates_angular_from_norm_aware_rules():
    x, _ = toy.make_blobs_2d(3, 200, seed=1)
    by_angle = lambda f: (torch.atan2(f[:, 1], f[:, 0]) > 0).long()  # noqa: E731
    by_norm = lambda f: (f.norm(dim=1) > 1.5).long()  # noqa: E731
    assert toy.scale_consistency(x, by_angle) == 1.0
    expected = ((x.norm(dim=1) <= 1.5) & (4 * x.norm(dim=1) <= 1.5)).float().mean().item()
    assert toy.scale_consistency(x, by_norm) == pytest.approx(expected)


def test_fit_linear_classifier_learns_and_normalised_ignores_norm():
    x, y = toy.make_blobs_2d(4, 100, angle_spread_deg=8.0, seed=0)
    for normalised in (False, True):
        params = toy.fit_linear_classifier(x, y, normalised=normalised, steps=200, s=10.0)
        assert ("bias" in params) is not normalised
        pred = toy.linear_logits(x, params["weight"], params.get("bias"), normalised=normalised,
                                 s=10.0).argmax(1)
        assert (pred == y).float().mean() > 0.95
    with pytest.raises(ValueError, match="steps"):
        toy.fit_linear_classifier(x, y, normalised=True, steps=0)
