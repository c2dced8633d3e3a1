"""Similarity alignment: recovers known transforms, and warping moves pixels where it says."""

from __future__ import annotations

import math

import pytest
import torch

from arclab.data import align


def random_similarity(gen, batch):
    angle = (torch.rand(batch, generator=gen, dtype=torch.float64) - 0.5) * 1.2
    scale = 0.5 + torch.rand(batch, generator=gen, dtype=torch.float64) * 1.5
    t = torch.rand(batch, 2, generator=gen, dtype=torch.float64) * 40
    rot = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle),
                       torch.cos(angle)], 1).view(batch, 2, 2)
    return torch.cat([scale[:, None, None] * rot, t[:, :, None]], 2)


def test_umeyama_recovers_a_known_similarity_exactly():
    gen = torch.Generator().manual_seed(0)
    m = random_similarity(gen, 16)
    src = torch.rand(16, 5, 2, generator=gen, dtype=torch.float64) * 100
    torch.testing.assert_close(align.umeyama(src, align.apply_similarity(m, src)), m)


def test_umeyama_is_least_squares_under_noise():
    gen = torch.Generator().manual_seed(1)
    m = random_similarity(gen, 1)[0]
    src = torch.rand(50, 2, generator=gen, dtype=torch.float64) * 100
    dst = align.apply_similarity(m, src) + torch.randn(50, 2, generator=gen,
                                                       dtype=torch.float64)
    fit = align.umeyama(src, dst)
    best = (align.apply_similarity(fit, src) - dst).pow(2).sum()
    for _ in range(20):  # no nearby similarity does better
        other = fit + 1e-3 * torch.randn(2, 3, generator=gen, dtype=torch.float64)
        a, b = other[0, 0], other[1, 0]
        other[0, 1], other[1, 1] = -b, a  # keep it a similarity
        assert (align.apply_similarity(other, src) - dst).pow(2).sum() >= best


def test_umeyama_never_reflects():
    src = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    mirrored = src * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    m = align.umeyama(src, mirrored)
    assert torch.linalg.det(m[:, :2]) > 0


def test_warp_moves_a_bright_dot_to_the_transformed_position_within_half_a_pixel():
    gen = torch.Generator().manual_seed(2)
    m = random_similarity(gen, 4)
    m[:, :, :2] *= 0.8
    m[:, :, 2] = 30.0
    points = torch.tensor([[30.3, 40.7], [60.2, 35.9], [45.5, 70.1]], dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(120.0), torch.arange(120.0), indexing="ij")
    img = sum(torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2)) for x, y in points)
    out = align.warp_affine(img.expand(4, 1, 120, 120).clone(), m, (140, 140))
    expected = align.apply_similarity(m, points.expand(4, 3, 2))
    checked = 0
    for b in range(4):
        for x, y in expected[b].tolist():
            x0, y0 = round(x), round(y)
            if not (6 <= x0 < 134 and 6 <= y0 < 134):
                continue
            checked += 1
            win = out[b, 0, y0 - 6:y0 + 7, x0 - 6:x0 + 7]
            ys, xs = torch.meshgrid(torch.arange(y0 - 6.0, y0 + 7), torch.arange(x0 - 6.0,
                                                                            x0 + 7),
                                    indexing="ij")
            cx, cy = (win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()
            assert math.hypot(cx - x, cy - y) < 0.5
    assert checked >= 8


def test_align_faces_puts_landmarks_on_the_template():
    gen = torch.Generator().manual_seed(3)
    m = random_similarity(gen, 2)
    landmarks = align.apply_similarity(m, align.template(112).expand(2, 5, 2))
    back = align.umeyama(landmarks, align.template(112).expand(2, 5, 2))
    torch.testing.assert_close(align.apply_similarity(back, landmarks),
                               align.template(112).expand(2, 5, 2))
    assert align.align_faces(torch.rand(2, 3, 150, 150), landmarks.float(), 64).shape == \
        (2, 3, 64, 64)


@pytest.mark.parametrize("src, dst, match", [
    (torch.zeros(5, 2), torch.zeros(4, 2), "same shape|shape"),
    (torch.zeros(1, 2), torch.zeros(1, 2), "P>=2"),
    (torch.zeros(5, 2), torch.rand(5, 2), "coincide"),
    (torch.full((5, 2), float("nan")), torch.rand(5, 2), "finite"),
])
def test_umeyama_bad_input(src, dst, match):
    with pytest.raises(ValueError, match=match):
        align.umeyama(src, dst)


def test_align_faces_bad_landmarks():
    with pytest.raises(ValueError, match="landmarks must have shape"):
        align.align_faces(torch.rand(2, 3, 50, 50), torch.rand(2, 4, 2))
    with pytest.raises(ValueError, match="size"):
        align.template(4)
