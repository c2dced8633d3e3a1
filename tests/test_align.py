"""Similarity alignment: recovers known transforms, and warping moves pixels where it says."""

from __future__ import annotations

import math

import numpy as np
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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_aligns_as_float32_does_rounded_once(dtype):
    # a 112 px face in a 200 px image: the grid in float16 used to give NaN or ±3e38
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(2, 3, 200, 200, generator=gen).to(dtype)
    landmarks = align.template(112).float().expand(2, 5, 2) + 200 / 3
    out = align.align_faces(images, landmarks)
    expected = align.align_faces(images.float(), landmarks).to(dtype)
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    assert torch.equal(out, expected)  # bit for bit, run after run
    assert torch.equal(out, align.align_faces(images, landmarks))


def test_float32_and_float64_warps_are_unchanged():
    gen = torch.Generator().manual_seed(5)
    m = random_similarity(gen, 2)
    for dtype in (torch.float32, torch.float64):
        images = torch.rand(2, 3, 40, 50, generator=gen, dtype=dtype)
        out = align.warp_affine(images, m, (30, 20))
        # the computation before half precision was handled, inlined
        full = torch.cat([m, m.new_tensor([0.0, 0.0, 1.0]).expand(2, 1, 3)], 1)
        inv = torch.cat([torch.linalg.inv(full)[:, :2], full[:, 2:]], 1)
        to_n = m.new_tensor([[2 / 49, 0, -1], [0, 2 / 39, -1], [0, 0, 1]])
        from_n = m.new_tensor([[19 / 2, 0, 19 / 2], [0, 29 / 2, 29 / 2], [0, 0, 1]])
        theta = (to_n @ inv @ from_n)[:, :2].to(dtype)
        grid = torch.nn.functional.affine_grid(theta, [2, 3, 30, 20], align_corners=True)
        ref = torch.nn.functional.grid_sample(images, grid, align_corners=True)
        assert out.dtype == dtype and torch.equal(out, ref)


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 0, 0), (1, 3, 1, 40), (1, 0, 8, 8)])
def test_images_too_small_to_sample_are_refused_with_a_value_error(shape):
    landmarks = align.template(112).float()[None] / 10
    with pytest.raises(ValueError, match=r"images must have C >= 1 channels and H, W >= 2"):
        align.align_faces(torch.rand(shape), landmarks)  # was ZeroDivisionError / RuntimeError
    with pytest.raises(ValueError, match=r"H, W >= 2"):
        align.warp_affine(torch.rand(shape), torch.eye(2, 3)[None], (8, 8))


def test_an_empty_batch_aligns_to_an_empty_batch():
    out = align.align_faces(torch.rand(0, 3, 50, 50, dtype=torch.float16),
                            torch.zeros(0, 5, 2), 64)
    assert out.shape == (0, 3, 64, 64) and out.dtype == torch.float16
    assert align.warp_affine(torch.rand(0, 1, 9, 9), torch.zeros(0, 2, 3), (4, 5)).shape == \
        (0, 1, 4, 5)


def test_sizes_take_numpy_integers_and_refuse_booleans():
    assert torch.equal(align.template(np.int64(56)), align.template(56))
    out = align.align_faces(torch.rand(1, 3, 60, 60), align.template(56).float()[None],
                            np.int32(56))
    assert out.shape == (1, 3, 56, 56)
    for size in (True, 7, 56.0):
        with pytest.raises(ValueError, match="size must be an integer >= 8"):
            align.template(size)
