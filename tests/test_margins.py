"""The unified margin against independent closed forms, finite differences and its policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arclab.losses import margins, variants
from arclab.losses.margins import PRESETS, MarginLoss, margin_logits, target_logit

NORMALISED = {k: v for k, v in PRESETS.items() if v.normalised}


def reference_target(c: float, m1: float, m2: float, m3: float, overflow: str) -> float:
    """One target logit / s, written out case by case in float64 from the definitions."""
    theta = math.acos(min(max(c, -1.0), 1.0))
    formula = math.cos(m1 * theta + m2) - m3
    if overflow == "raw":
        return formula
    if overflow == "easy":
        return formula if c > 0 else c
    theta_star = (math.pi - m2) / m1
    if theta <= theta_star:
        return formula
    at_star = math.cos(math.pi) - m3  # the formula's value at θ*
    return c - (math.cos(theta_star) - at_star)  # cos θ shifted to meet it


def random_problem(n=64, c=10, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    cos = torch.rand(n, c, generator=gen, dtype=dtype) * 2 - 1
    labels = torch.randint(-1, c, (n,), generator=gen)
    return cos, labels


@pytest.mark.parametrize("name", sorted(NORMALISED))
@pytest.mark.parametrize("overflow", ["raw", "easy", "monotonic"])
def test_values_match_closed_form(name, overflow):
    m = PRESETS[name]
    cos, labels = random_problem(seed=hash(name) % 1000)
    got = margin_logits(cos, labels, s=30.0, m1=m.m1, m2=m.m2, m3=m.m3, overflow=overflow)
    expected = 30.0 * cos.numpy().copy()
    for i, y in enumerate(labels.tolist()):
        if y >= 0:
            expected[i, y] = 30.0 * reference_target(float(cos[i, y]), m.m1, m.m2, m.m3, overflow)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_arcface_matches_the_slides_pseudocode():
    """Algorithm 1 of the slides: fc7 + one_hot * (cos(θ + m) - cos θ), then * s."""
    cos, labels = random_problem(n=32, c=7, seed=5)
    labels = labels.clamp(min=0)
    fc7 = cos.clone()
    original = fc7.gather(1, labels[:, None]).squeeze(1)
    marginal = torch.cos(torch.acos(original) + 0.5)
    one_hot = torch.nn.functional.one_hot(labels, 7).double()
    fc7 = (fc7 + one_hot * (marginal - original)[:, None]) * 64.0
    got = margin_logits(cos, labels, s=64.0, m2=0.5, overflow="raw")
    torch.testing.assert_close(got, fc7)


@pytest.mark.parametrize("name", sorted(NORMALISED))
def test_exact_gradient_passes_gradcheck(name):
    m = PRESETS[name]
    gen = torch.Generator().manual_seed(1)
    cos = (torch.rand(6, 5, generator=gen, dtype=torch.float64) * 1.96 - 0.98)
    cos[0, 0], cos[1, 1], cos[2, 2] = 1 - 1e-4, -1 + 1e-4, 0.9999  # near ±1
    labels = torch.tensor([0, 1, 2, 3, -1, 4])
    cos.requires_grad_()

    def f(c):
        return margin_logits(c, labels, s=4.0, m1=m.m1, m2=m.m2, m3=m.m3)

    theta_star = margins.overflow_angle(m.m1, m.m2)
    kink = torch.acos(cos.detach()) - theta_star  # the monotonic policy has a kink at θ*
    assume = kink.abs().min() > 1e-3
    assert assume, "test points too close to the kink"
    assert torch.autograd.gradcheck(f, (cos,), eps=1e-7, atol=1e-5, rtol=1e-4)


def test_exact_gradient_closed_form_and_finite_at_the_poles():
    theta = torch.linspace(0.01, math.pi - 0.01, 200, dtype=torch.float64)
    cos = torch.cos(theta).requires_grad_()
    target_logit(cos, m1=1.2, m2=0.3, m3=0.1, overflow="raw").sum().backward()
    expected = 1.2 * torch.sin(1.2 * theta + 0.3) / torch.sin(theta)  # d/dc cos(m1·acos c + m2)
    torch.testing.assert_close(cos.grad, expected)
    for value in (1.0, -1.0, 1.0 + 5e-5, -1.0 - 5e-5):
        c = torch.full((1, 3), 0.1).index_fill(1, torch.tensor([0]), value).requires_grad_()
        out = margin_logits(c, torch.tensor([0]), m2=0.5)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(c.grad).all()


def test_straight_through_gradient_is_s_times_upstream():
    cos, labels = random_problem(n=20, c=6, seed=2)
    cos.requires_grad_()
    upstream = torch.randn(20, 6, dtype=torch.float64)
    st = margin_logits(cos, labels, s=16.0, m1=1.35, m2=0.2, m3=0.1, gradient="straight_through")
    (st * upstream).sum().backward()
    torch.testing.assert_close(cos.grad, 16.0 * upstream)
    exact = margin_logits(cos.detach(), labels, s=16.0, m1=1.35, m2=0.2, m3=0.1)
    torch.testing.assert_close(st.detach(), exact)  # same values


def test_rows_without_target_are_only_scaled():
    cos, labels = random_problem(n=30, c=5, seed=3)
    labels[::3] = -1
    cos.requires_grad_()
    out = margin_logits(cos, labels, s=10.0, m2=0.5, m3=0.2)
    free = labels < 0
    torch.testing.assert_close(out[free], 10.0 * cos[free])
    out.sum().backward()
    torch.testing.assert_close(cos.grad[free], torch.full_like(cos.grad[free], 10.0))
    assert not torch.allclose(out[~free], 10.0 * cos[~free])


@pytest.mark.parametrize("name", sorted(NORMALISED))
def test_monotonic_policy_properties_on_a_dense_grid(name):
    m = PRESETS[name]
    theta = torch.linspace(0, math.pi, 20001, dtype=torch.float64)
    cos = torch.cos(theta)
    value = target_logit(cos, m1=m.m1, m2=m.m2, m3=m.m3)
    step = theta[1] - theta[0]
    assert (value.diff() <= 1e-12).all(), "not non-increasing in θ"
    assert value.diff().abs().max() <= 1.01 * max(m.m1, 1.0) * step, "not continuous"
    assert (value <= cos + 1e-12).all(), "above the no-margin logit"
    inside = m.m1 * theta + m.m2 <= math.pi
    torch.testing.assert_close(value[inside], torch.cos(m.m1 * theta[inside] + m.m2) - m.m3)


def test_raw_and_easy_policies_show_the_problems_monotonic_fixes():
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    raw = target_logit(torch.cos(theta), m1=1.35, overflow="raw")
    assert raw[-1] - raw.min() > 0.1, "SphereFace's raw target logit rises past θ* = 133°"
    easy = target_logit(torch.cos(theta), m2=0.5, overflow="easy")
    assert easy.diff().max() > 0.3, "easy margin jumps at 90°"


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": torch.tensor([0, 5])}, r"labels must be in \[-1, 5\)"),
    ({"labels": torch.tensor([-2, 0])}, r"labels must be in \[-1, 5\)"),
    ({"labels": torch.tensor([0, 1], dtype=torch.int32)}, "labels must be an int64"),
    ({"labels": torch.tensor([0, 1, 2])}, r"shape \(2,\)"),
    ({"cosine": torch.full((2, 5), 1.01)}, r"cosine must be finite and in \[-1, 1\]"),
    ({"cosine": torch.full((2, 5), float("nan"))}, "cosine must be finite"),
    ({"cosine": torch.full((2, 5), float("inf"))}, "cosine must be finite"),
    ({"cosine": torch.zeros(2, 5, dtype=torch.int64)}, "floating-point"),
    ({"cosine": torch.zeros(10)}, r"\(N, C\)"),
    ({"s": 0.0}, "s must be a finite number > 0"),
    ({"s": -64.0}, "s must be"),
    ({"m1": 0.0}, "m1 must be > 0"),
    ({"m2": float("nan")}, "m2 must be a finite"),
    ({"gradient": "approx"}, "gradient must be"),
    ({"overflow": "clip"}, "overflow must be"),
])
def test_bad_input_raises(kwargs, match):
    args = {"cosine": torch.zeros(2, 5), "labels": torch.tensor([0, 1])}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        margin_logits(args.pop("cosine"), args.pop("labels"), **args)


def test_cosine_tolerance_accepts_rounding():
    cos = torch.full((1, 2), 1 + 5e-5)
    assert torch.isfinite(margin_logits(cos, torch.tensor([0]), m2=0.5)).all()


def test_margin_loss_equals_cross_entropy_of_margin_logits_and_ignores_minus_one():
    cos, labels = random_problem(n=40, c=8, seed=4)
    labels[:5] = -1
    loss = MarginLoss("cm2", s=32.0)(cos, labels)
    logits = margin_logits(cos, labels, s=32.0, m1=0.9, m2=0.4, m3=0.15)
    keep = labels >= 0
    log_p = torch.log_softmax(logits[keep], 1).gather(1, labels[keep, None])
    torch.testing.assert_close(loss, -log_p.mean())
    empty = torch.zeros(3, 8, requires_grad=True)
    zero = MarginLoss("arcface")(empty, torch.full((3,), -1))
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(empty.grad, torch.zeros(3, 8))


def test_margin_loss_presets_and_softmax():
    assert MarginLoss(m1=1.0, m2=0.3, m3=0.2).margin == margins.Margin(1.0, 0.3, 0.2,
                                                                        label="(1.0, 0.3, 0.2)")
    logits = torch.randn(4, 3) * 20
    labels = torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(MarginLoss("softmax")(logits, labels),
                               torch.nn.functional.cross_entropy(logits, labels))
    with pytest.raises(ValueError, match="preset must be one of"):
        MarginLoss("arc")
    with pytest.raises(ValueError, match="logits must be finite"):
        MarginLoss("softmax")(torch.full((4, 3), float("nan")), labels)
    with pytest.raises(ValueError, match="s must be"):
        MarginLoss("arcface", s=0)


def test_sphereface_psi_is_monotonic_and_matches_cos_m_theta_on_first_piece():
    theta = torch.linspace(0, math.pi, 10001, dtype=torch.float64)
    for m in (1, 2, 3, 4):
        psi = variants.sphereface_psi(theta, m)
        assert (psi.diff() <= 1e-12).all()
        assert psi[-1].item() == pytest.approx(-(2 * m - 1))
        first = theta <= math.pi / m
        torch.testing.assert_close(psi[first], torch.cos(m * theta[first]))
    assert variants.sphereface_psi(torch.tensor([0.0]), 1).item() == 1.0
    with pytest.raises(ValueError, match="m must be an integer"):
        variants.sphereface_psi(theta, 1.35)


def test_sphereface_lambda_and_annealed_logit():
    assert variants.sphereface_lambda(0) == 1000.0
    assert variants.sphereface_lambda(100) == pytest.approx(1000 / 13)
    assert variants.sphereface_lambda(10**7) == 5.0
    cos = torch.tensor([0.3], dtype=torch.float64)
    psi = variants.sphereface_psi(torch.acos(cos), 4)
    got = variants.sphereface_target_logit(cos, m=4, lam=5.0)
    torch.testing.assert_close(got, (5.0 * cos + psi) / 6.0)
    with pytest.raises(ValueError, match="iteration"):
        variants.sphereface_lambda(-1)


def test_li_arcface_is_linear_in_theta():
    cos, labels = random_problem(n=16, c=4, seed=6)
    out = variants.li_arcface_logits(cos, labels, s=10.0, m=0.45)
    theta = torch.acos(cos)
    expected = 10.0 * (math.pi - 2 * theta) / math.pi
    rows = (labels >= 0).nonzero().squeeze(1)
    expected[rows, labels[rows]] -= 10.0 * 2 * 0.45 / math.pi
    torch.testing.assert_close(out, expected)


def test_angular_margin_closed_forms():
    from arclab.losses.geometry import angular_margin_deg, target_gradient

    theta = torch.linspace(5, 140, 28, dtype=torch.float64)
    arc = angular_margin_deg(theta, m2=0.5)
    torch.testing.assert_close(arc, torch.full_like(theta, math.degrees(0.5)))
    sphere = angular_margin_deg(theta[theta < 130], m1=1.35)
    torch.testing.assert_close(sphere, 0.35 * theta[theta < 130])
    cos = angular_margin_deg(theta, m3=0.35)
    expected = torch.rad2deg(torch.acos((torch.cos(torch.deg2rad(theta)) - 0.35).clamp(-1, 1)))
    torch.testing.assert_close(cos, expected - theta)
    rad = torch.deg2rad(theta)
    exact = target_gradient(theta, m1=1.2, m2=0.3, s=2.0)
    inside = 1.2 * rad + 0.3 <= math.pi
    torch.testing.assert_close(exact[inside], -2.0 * 1.2 * torch.sin(1.2 * rad[inside] + 0.3))
    torch.testing.assert_close(exact[~inside], -2.0 * torch.sin(rad[~inside]))  # cos θ − δ
    st = target_gradient(theta, m1=1.2, m2=0.3, s=2.0, gradient="straight_through")
    torch.testing.assert_close(st, -2.0 * torch.sin(rad))


@pytest.mark.parametrize("kwargs, match", [
    ({"s": True}, "s must be a finite number > 0 \\(not a bool\\), got True"),
    ({"s": np.bool_(True)}, "s must be"),
    ({"m2": True}, "m2 must be a finite number \\(not a bool\\)"),
    ({"m1": False}, "m1 must be"),
    ({"s": "64"}, "s must be"),
])
def test_booleans_are_not_numbers(kwargs, match):
    with pytest.raises(ValueError, match=match):  # s=True used to run with s = 1
        margin_logits(torch.zeros(2, 5), torch.tensor([0, 1]), **kwargs)
    with pytest.raises(ValueError, match=match):
        MarginLoss(**kwargs)


def test_numpy_scalars_give_the_values_and_gradients_of_python_floats():
    cos, labels = random_problem(n=16, c=6, seed=7, dtype=torch.float32)
    runs = []
    for s, m1, m2, m3 in ((48.0, 0.9, 0.4, 0.15),
                          (np.float32(48.0), np.float64(0.9), np.float64(0.4), np.float64(0.15)),
                          (np.int64(48), np.float64(0.9), np.float64(0.4), np.float64(0.15))):
        x = cos.clone().requires_grad_()
        out = margin_logits(x, labels, s=s, m1=m1, m2=m2, m3=m3)
        out.square().sum().backward()
        runs.append((out.detach(), x.grad))
        assert MarginLoss(s=s, m1=m1, m2=m2, m3=m3).s == 48.0
    for out, grad in runs[1:]:
        assert torch.equal(out, runs[0][0]) and torch.equal(grad, runs[0][1])
    assert margins.overflow_angle(np.float32(1.0), np.float64(0.5)) == margins.overflow_angle(
        1.0, 0.5)


def test_a_scale_that_overflows_float16_is_refused_naming_s_and_the_dtype():
    cos = torch.tensor([[0.9, -0.2], [0.1, 0.8]], dtype=torch.float16)
    labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"s = 100000 is too large for torch\.float16: the "
                                         r"logits could reach 1\.123e\+05"):
        MarginLoss("arcface", s=1e5)(cos, labels)  # used to return a NaN loss
    with pytest.raises(ValueError, match=r"s = 100000 .*float16"):
        margin_logits(cos, labels, s=1e5, m2=0.5)
    # logits fit (40000 · 1.12 < 65504) but one row's loss, up to 2·44900, cannot
    with pytest.raises(ValueError, match=r"s = 40000 .*float16: the loss could reach"):
        MarginLoss("arcface", s=40000.0)(cos, labels)
    # every row fits (33952 each), their float16 sum in the mean does not
    worst = torch.tensor([[-1.0, 1.0], [1.0, -1.0]], dtype=torch.float16)
    with pytest.raises(ValueError, match=r"s = 16000 .*float16: every row's loss fits"):
        MarginLoss("arcface", s=16000.0)(worst, labels)
    assert MarginLoss("arcface", s=16000.0)(worst[:1], labels[:1]).item() == 33952.0
    # the same scales are fine in float32, and s = 64 in float16 is unchanged
    assert torch.isfinite(MarginLoss("arcface", s=1e5)(cos.float(), labels))
    loss = MarginLoss("arcface", s=64.0)(cos, labels)
    logits = margin_logits(cos, labels, s=64.0, m2=0.5)
    assert loss.dtype == torch.float16 and torch.equal(
        loss, torch.nn.functional.cross_entropy(logits, labels))
