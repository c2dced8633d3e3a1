"""SynthFaces: determinism, landmarks on the rendered features, protocols, noise, cache."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from arclab.data import cache, splits
from arclab.data.align import template, umeyama
from arclab.data.params import SynthConfig, identity_params, nuisance_params
from arclab.data.render import colour, kernel_post, render
from arclab.data.render import post as render_post
from arclab.data.synth import plane_landmarks, render_faces

CLEAN = SynthConfig(background=False, occlusion_rate=0.0, blur_px=0.0, noise=0.0,
                    jpeg_rate=0.0)


def luminance(img: torch.Tensor, x: float, y: float) -> float:
    xi, yi = int(round(x)), int(round(y))
    return float(img[:, yi, xi].mean())


def test_same_seed_identity_index_gives_identical_bytes_whatever_the_batch():
    cfg = SynthConfig(seed=3)
    a = render_faces(cfg, [5, 7, 9], [0, 1, 2], size=48)["images"]
    b = render_faces(cfg, [9, 5], [2, 0], size=48)["images"]
    assert torch.equal(a[2], b[0]) and torch.equal(a[0], b[1])
    c = render_faces(replace(cfg, seed=4), [5], [0], size=48)["images"]
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], render_faces(cfg, [5], [1], size=48)["images"][0])


def test_pixels_do_not_depend_on_the_batch_or_its_render_chunks():
    # every image occluded and JPEG-compressed, blur and noise as drawn; 60 images at 112 px
    # span more than one of the renderer's chunks
    cfg = SynthConfig(seed=1, occlusion_rate=1.0, jpeg_rate=1.0)
    ids, idx = list(range(60)), [i % 3 for i in range(60)]
    full = render_faces(cfg, ids, idx, size=112)
    assert set(full["nuisance"]["occlusion"].tolist()) == {1.0, 2.0, 3.0}
    assert len(set(full["nuisance"]["blur"].tolist())) > 10
    for i in (0, 17, 41, 59):
        one = render_faces(cfg, [ids[i]], [idx[i]], size=112)["images"][0]
        assert torch.equal(full["images"][i], one), i


def test_blurred_pixels_do_not_depend_on_the_reach_of_the_others_in_the_batch():
    """Blur taps are normalised by a float32 sum, and sums of 8 or more values round
    differently from shorter ones: an image's taps must be computed for its own reach, not
    for the longest reach in its batch (the kernel engine until 2026-12-03, visible only where
    the reach exceeds 6 px, i.e. blur sigma > 2 px)."""
    cfg = SynthConfig(seed=2, blur_px=3.5, jpeg_rate=0.0)
    ids, idx = list(range(40)), [0] * 40
    full = render_faces(cfg, ids, idx, size=112)
    reach = torch.ceil(3 * torch.round(full["nuisance"]["blur"] * 8) / 8)
    assert reach.max() >= 8
    checked = 0
    for i in (reach == 5).nonzero().squeeze(1).tolist()[:3] + \
            (reach == 6).nonzero().squeeze(1).tolist()[:3]:
        one = render_faces(cfg, [ids[i]], [idx[i]], size=112)["images"][0]
        assert torch.equal(full["images"][i], one), i
        checked += 1
    assert checked >= 4
    sigma = torch.tensor([1.5, 2.6])  # and the taps themselves: reach 5 beside reach 8
    both = kernel_post.blur_weights(sigma, torch.tensor([5, 8]))
    alone = kernel_post.blur_weights(sigma[:1], torch.tensor([5]))
    assert torch.equal(both[0, :6], alone[0]) and not both[0, 6:].any()


@pytest.mark.parametrize("aligned", [True, False])
def test_feature_windows_give_the_pixels_of_painting_the_whole_frame(aligned):
    """Forehead lines, eyes, nose, mouth, marks and glasses are painted only inside a window
    around each; painting the whole frame instead (``dense``) must give the same bytes, for
    every occluder, for heads turned in yaw, pitch and roll and (unaligned) for faces cut by
    the frame edge."""
    cfg = SynthConfig(seed=5, occlusion_rate=1.0, jpeg_rate=0.0)
    ids, idx = list(range(40)), [i % 5 for i in range(40)]
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, idx)
    nuis["yaw"] = torch.linspace(-75, 75, 40)
    turn = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    nuis["pitch"], nuis["roll"] = torch.linspace(-40, 40, 40)[turn], torch.linspace(40, -40, 40)
    size = 64
    if aligned:
        f2p = umeyama(plane_landmarks(ident, nuis).double(),  # as render_faces aligns
                      template(size).expand(40, 5, 2).double()).float()
    else:  # big faces pushed towards the corners: features cross the frame edge
        f2p = torch.zeros(40, 2, 3)
        f2p[:, 0, 0] = f2p[:, 1, 1] = size * 0.45
        f2p[:, :, 2] = torch.rand(40, 2, generator=torch.Generator().manual_seed(0)) * size
    assert set(nuis["occlusion"].tolist()) == {1.0, 2.0, 3.0}
    # a batch's window holds every image's feature; one image at a time is the tight case
    for sel in [slice(0, 40)] + [slice(i, i + 1) for i in range(0, 40, 3)]:
        one = ({k: v[sel] for k, v in ident.items()}, {k: v[sel] for k, v in nuis.items()},
               f2p[sel], size)
        windowed = render(*one, return_alpha=True, engine="torch")
        dense = render(*one, return_alpha=True, dense=True)
        for a, b in zip(windowed, dense):
            assert torch.equal(a, b), sel
        # the kernel paints each image in its own windows: a window too small would cut a
        # feature, far beyond round-off (a feature changes pixels by 0.1-0.9)
        kernel = render(*one, return_alpha=True, post=False, engine="kernel")
        reference = render(*one, return_alpha=True, post=False, dense=True)
        for a, b in zip(kernel, reference):
            assert (a - b).abs().max() < 1e-4, sel


def test_sizes_drawn_below_zero_render_as_hairlines():
    """Far in the tails, and often with identity_spread > 1, a size is drawn <= 0; an ellipse
    with a negative radius would cover everything outside itself (and had no pixel window)."""
    cfg = SynthConfig(seed=3, identity_spread=4.0, expression=2.0, occlusion_rate=1.0)
    ids = list(range(40))
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, [0] * 40)
    assert (ident["brow_t"] <= 0).sum() >= 3 and (ident["eye_aspect"] <= 0).sum() >= 3
    f2p = torch.zeros(40, 2, 3)
    f2p[:, 0, 0] = f2p[:, 1, 1] = 20.0
    f2p[:, :, 2] = 32.0
    windowed = render(ident, nuis, f2p, 64, return_alpha=True, engine="torch")
    dense = render(ident, nuis, f2p, 64, return_alpha=True, dense=True)
    assert all(torch.equal(a, b) for a, b in zip(windowed, dense))
    assert bool(windowed[0].isfinite().all())
    kernel = render(ident, nuis, f2p, 64, return_alpha=True, post=False, engine="kernel")
    reference = render(ident, nuis, f2p, 64, return_alpha=True, post=False, engine="torch")
    assert all((a - b).abs().max() < 1e-4 for a, b in zip(kernel, reference))
    hairline = {k: torch.where(v > 0, v, 1e-3) if k in ("brow_t", "eye_aspect", "lip_t",
                                                        "nose_w") else v
                for k, v in ident.items()}
    assert torch.equal(render(hairline, nuis, f2p, 64, engine="torch")[0], windowed[0])


def test_glasses_stay_around_the_eyes_when_the_back_of_the_head_is_in_view():
    """At a large yaw the back of the head is visible, where the head-surface coordinates
    repeat the front's; render version 3 drew glasses rims there (dots on the hair, about
    one face unit from the eyes). Every pixel the glasses change must lie near an eye."""
    cfg = SynthConfig(seed=5, background=False, noise=0.0, blur_px=0.0, jpeg_rate=0.0)
    n, size = 24, 96
    ids, yaw = list(range(n)), torch.tensor([-80.0, -70, -60, 0, 60, 70, 80, 30] * 3)
    ident, k = identity_params(cfg, ids), size * 0.3  # whole heads, 0.3·size px per unit
    f2p = torch.zeros(n, 2, 3)
    f2p[:, 0, 0], f2p[:, 1, 1], f2p[:, :, 2] = k, k, size / 2
    with_glasses, lm = render(ident, nuisance_params(cfg, ids, [0] * n, yaw=yaw,
                                                     occlusion=1.0), f2p, size)
    without, _ = render(ident, nuisance_params(cfg, ids, [0] * n, yaw=yaw, occlusion=0.0),
                        f2p, size)
    changed = (with_glasses - without).abs().amax(1) > 0
    for i in range(n):
        ys, xs = changed[i].nonzero(as_tuple=True)
        assert len(ys) > 10, i  # the glasses are drawn
        to_eye = torch.cdist(torch.stack([xs, ys], 1).float(), lm[i, :2]).amin(1) / k
        assert to_eye.max() < 0.4, (i, float(yaw[i]), float(to_eye.max()))


def test_thread_count_does_not_move_pixels():
    """Render version 5's torch upsampling (the background) rounded differently with 1 and 2
    threads; the kernel engine (version 6) renders each image in one thread, so the thread
    count changes no byte. The torch engine still differs by round-off only."""
    cfg = SynthConfig(seed=2)
    ids, idx = list(range(48)), [i % 4 for i in range(48)]
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, idx)
    f2p = umeyama(plane_landmarks(ident, nuis).double(), template(112).expand(48, 5, 2)).float()
    before = torch.get_num_threads()
    try:
        out = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out[threads] = render_faces(cfg, ids, idx, size=112)["images"]
            out[threads, "torch"] = render(ident, nuis, f2p, 112, engine="torch")[0]
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[1], out[2])
    assert (out[1, "torch"] - out[2, "torch"]).abs().max() < 1e-6


def test_blur_is_a_gaussian_with_replicated_edges():
    """Shifted sums against a float64 2-D convolution with the normalised Gaussian kernel."""
    img = torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.25, 0.5, 0.9, 1.3])
    for radius in (1, 2, 4):
        taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (taps / sigma.double()[:, None]) ** 2)
        k = k / k.sum(1, keepdim=True)
        kernel = (k[:, :, None] * k[:, None, :]).repeat_interleave(3, 0)[:, None]
        padded = torch.nn.functional.pad(img.double().reshape(1, 12, 20, 24), (radius,) * 4,
                                         mode="replicate")
        want = torch.nn.functional.conv2d(padded, kernel, groups=12).view(4, 3, 20, 24)
        got = render_post._gaussian_blur(img, sigma, radius)
        assert (got.double() - want).abs().max() < 1e-6, radius
        compiled = img.clone()  # the kernel engine's blur, in place
        kernel_post.blur(compiled, sigma, torch.full((4,), radius))
        assert (compiled.double() - want).abs().max() < 1e-6, radius
    # per-image reach in one call; reach 0 leaves the image as it is
    mixed = img.clone()
    kernel_post.blur(mixed, sigma, torch.tensor([0, 2, 1, 4]))
    assert torch.equal(mixed[0], img[0])
    for i, radius in ((1, 2), (2, 1), (3, 4)):
        one = render_post._gaussian_blur(img[i:i + 1], sigma[i:i + 1], radius)[0]
        assert (mixed[i] - one).abs().max() < 1e-6, i


def test_post_skips_only_the_blur_that_float32_cannot_show():
    img = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    nuis = {"blur": torch.tensor([0.0, 0.125, 0.25]), "jpeg": torch.zeros(3),
            "jpeg_quality": torch.full((3,), 50.0), "noise": torch.zeros(3),
            "bg_seed": torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)}
    out = render_post.post_process(img.clone(), nuis, 1.0)
    # sigma = 1/8 px: the off-centre taps weigh e^-32, so blurring would change nothing
    one_eighth = render_post._gaussian_blur(img[1:2], torch.tensor([0.125]), 1)[0]
    assert torch.equal(out[0], img[0]) and torch.equal(out[1], img[1])
    assert (one_eighth - img[1]).abs().max() < 1e-6
    quarter = render_post._gaussian_blur(img[2:3], torch.tensor([0.25]), 1)[0]
    assert torch.equal(out[2], quarter) and (quarter - img[2]).abs().max() > 3e-4
    compiled = img.clone()  # the kernel engine's blur (no noise or JPEG here), in place
    kernel_post.blur(compiled, *render_post._blur_levels(nuis, 1.0))
    assert torch.equal(compiled[:2], img[:2]) and (compiled[2] - quarter).abs().max() < 1e-6


def test_noise_is_standard_normal_and_independent_between_images():
    seeds = torch.arange(200, dtype=torch.float64) * 7919 + 11
    noise = torch.stack(render_post._noise(seeds, (3, 112, 112))).flatten(1).double()
    assert noise.mean(1).abs().max() < 0.03 and (noise.std(1) - 1).abs().max() < 0.03
    corr = torch.corrcoef(noise)[~torch.eye(200, dtype=torch.bool)]
    assert corr.abs().max() < 0.03  # windows of one bank, never the same pixel twice
    again = render_post._noise(seeds[[5, 3]], (3, 112, 112))
    assert torch.equal(again[0].flatten().double(), noise[5])
    # in a render: the noisy image minus the clean one is sigma times the image's noise
    cfg = replace(CLEAN, noise=0.05)
    noisy = render_faces(cfg, [0, 1], [0, 0], size=48)
    clean = render_faces(cfg, [0, 1], [0, 0], size=48, noise=0.0)["images"]
    sigma = noisy["nuisance"]["noise"]
    want = torch.stack(render_post._noise(noisy["nuisance"]["bg_seed"], (3, 48, 48)))
    inside = (clean > 0.2) & (clean < 0.8)  # far from the clamp at 0 and 1
    got = (noisy["images"] - clean) / sigma[:, None, None, None]
    assert (got - want)[inside].abs().max() < 1e-4 and bool((sigma > 0).all())


def test_background_uniforms_are_per_seed_and_uncorrelated():
    seeds = torch.arange(4000, dtype=torch.float64)
    u = colour._uniform(seeds, 32, 1)
    assert torch.equal(colour._uniform(seeds[[7, 2]], 32, 1), u[[7, 2]])
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.003
    assert float(u.min()) >= 0 and float(u.max()) < 1
    # neighbouring seeds and columns must not share values (seed·g + k·g would)
    shifted = torch.corrcoef(torch.stack([u[:-1, 1:].flatten(), u[1:, :-1].flatten()]))[0, 1]
    assert abs(float(shifted)) < 0.02
    assert not torch.equal(colour._uniform(seeds[:5], 32, 2), u[:5])


def test_aligned_crops_are_least_squares_aligned_to_the_template():
    out = render_faces(SynthConfig(), list(range(8)), [0] * 8, size=112)
    lm = out["landmarks"].double()
    refit = umeyama(lm, template(112).expand(8, 5, 2))  # already optimal: the identity
    torch.testing.assert_close(refit, torch.eye(2, 3, dtype=torch.float64).expand(8, 2, 3),
                               atol=1e-4, rtol=0)
    frontal = render_faces(SynthConfig(), list(range(8)), [0] * 8, size=112, yaw=0.0,
                           pitch=0.0, roll=0.0, smile=0.0)
    assert (frontal["landmarks"] - template(112)).norm(dim=2).mean() < 4.0  # pixels


@pytest.mark.parametrize("yaw", [0.0, 25.0, -30.0])
def test_landmarks_land_on_the_rendered_features(yaw):
    ids = list(range(6))
    out = render_faces(CLEAN, ids, [0] * 6, size=320, aligned=False, yaw=yaw, pitch=0.0,
                       roll=5.0, eye_open=1.0, mouth_open=0.0, smile=0.0)
    for img, lm in zip(out["images"], out["landmarks"]):
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = lm.tolist()
        cheek = luminance(img, (lx + mlx) / 2, (ly + mly) / 2)
        assert luminance(img, lx, ly) < 0.5 * cheek, "left eye landmark is not on the pupil"
        assert luminance(img, rx, ry) < 0.5 * cheek, "right eye landmark is not on the pupil"
        mid_y = (mly + mry) / 2
        inside = img[:, int(round(mid_y)), int(round(mlx + 0.25 * (mrx - mlx)))]
        skin = img[:, int(round((ly + mly) / 2)), int(round((lx + mlx) / 2))]
        assert inside[0] / inside[1] > skin[0] / skin[1] + 0.05, "mouth corners miss the lips"
        assert abs(nx - (lx + rx) / 2) < abs(rx - lx), "nose tip is between the eyes"
        assert ly < ny < mid_y


def test_boxes_hold_the_landmarks_and_scale_with_the_face():
    out = render_faces(SynthConfig(), list(range(10)), [1] * 10, size=128, aligned=False)
    lm, box = out["landmarks"], out["boxes"]
    assert (lm[..., 0] >= box[:, None, 0]).all() and (lm[..., 0] <= box[:, None, 2]).all()
    assert (lm[..., 1] >= box[:, None, 1]).all() and (lm[..., 1] <= box[:, None, 3]).all()
    width = box[:, 2] - box[:, 0]
    k = 128 * 0.33 * out["nuisance"]["scale"]
    assert torch.corrcoef(torch.stack([width, k]))[0, 1] > 0.5


def test_renderer_is_differentiable_in_identity_parameters():
    cfg = CLEAN
    ident = identity_params(cfg, [0, 1])
    nuis = nuisance_params(cfg, [0, 1], [0, 0])
    ident["eye_r"] = ident["eye_r"].clone().requires_grad_()
    f2p = torch.tensor([[40.0, 0, 32], [0, 40.0, 32]]).expand(2, 2, 3).contiguous()
    img, _ = render(ident, nuis, f2p, 64, background=False, post=False)
    img.sum().backward()
    grad = ident["eye_r"].grad
    assert torch.isfinite(grad).all() and (grad != 0).all()
    with torch.no_grad():  # the sign agrees with a finite difference
        bumped = dict(ident, eye_r=ident["eye_r"] + 1e-3)
        diff = (render(bumped, nuis, f2p, 64, background=False, post=False)[0].sum((1, 2, 3))
                - img.detach().sum((1, 2, 3))) / 1e-3
    assert (torch.sign(diff) == torch.sign(grad)).all()


def test_pixels_match_render_version():
    # the cache is keyed by RENDER_VERSION, so pixels may only change together with it: the
    # renders of tests/data/make_render_reference.py must match the stored ones of this
    # version. Round-off may move a value by one grey level between thread counts or CPUs
    # (see cache's docstring), in about one value in a million; a meant change of the
    # renderer moves far more
    import importlib.util

    from arclab.data.cache import RENDER_VERSION

    path = Path(__file__).parent / "data" / f"render_v{RENDER_VERSION}.npz"
    assert path.exists(), f"no reference pixels for render version {RENDER_VERSION}: run " \
        "tests/data/make_render_reference.py after checking that the change is meant"
    spec = importlib.util.spec_from_file_location("make_render_reference",
                                                  path.with_name("make_render_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stored = np.load(path)
    for name, images in module.render_reference().items():
        diff = np.abs(images.astype(np.int16) - stored[name].astype(np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, \
            f"{name}: {(diff > 0).mean():.2%} of values moved, up to {diff.max()} levels"


def test_autograd_renders_the_same_pixels_as_inference():
    # the renderer works in place on its own intermediates; under autograd those in-place ops
    # must neither change a pixel nor break the backward pass (every nuisance kind drawn:
    # all occluders, JPEG, blur, noise; scenes with alpha)
    cfg = SynthConfig(seed=3, occlusion_rate=1.0, jpeg_rate=0.5, blur_px=2.0)
    ids, idx = np.arange(24) % 6, np.arange(24)
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, idx)
    f2p = umeyama(plane_landmarks(ident, nuis).double(), template(48).expand(24, 5, 2)).float()
    with torch.no_grad():
        img, _, alpha = render(ident, nuis, f2p, 48, return_alpha=True, engine="torch")
    grad_ident = dict(ident, face_w=ident["face_w"].clone().requires_grad_())
    grad_nuis = dict(nuis, yaw=nuis["yaw"].clone().requires_grad_())
    img_g, _, alpha_g = render(grad_ident, grad_nuis, f2p, 48, return_alpha=True)
    assert img_g.requires_grad
    assert torch.equal(img_g.detach(), img) and torch.equal(alpha_g.detach(), alpha)
    (img_g.sum() + alpha_g.sum()).backward()
    for g in (grad_ident["face_w"].grad, grad_nuis["yaw"].grad):
        assert torch.isfinite(g).all() and (g != 0).any()


def _turned_batch(cfg: SynthConfig, n: int, size: int, aligned: bool):
    """n identities with yaw, pitch and roll spread over their ranges, aligned crops or faces
    pushed towards the frame's edges."""
    ids, idx = list(range(n)), [i % 5 for i in range(n)]
    ident, nuis = identity_params(cfg, ids), nuisance_params(cfg, ids, idx)
    nuis["yaw"] = torch.linspace(-80, 80, n)
    nuis["pitch"] = torch.linspace(-40, 40, n)[torch.randperm(n, generator=torch.Generator()
                                                               .manual_seed(1))]
    if aligned:
        f2p = umeyama(plane_landmarks(ident, nuis).double(),
                      template(size).expand(n, 5, 2).double()).float()
    else:
        f2p = torch.zeros(n, 2, 3)
        f2p[:, 0, 0] = f2p[:, 1, 1] = size * 0.4
        f2p[:, :, 2] = torch.rand(n, 2, generator=torch.Generator().manual_seed(0)) * size
    return ident, nuis, f2p


@pytest.mark.parametrize("size,aligned", [(16, True), (45, False), (112, True), (150, False)])
def test_kernel_engine_matches_the_torch_engine(size, aligned):
    """The compiled kernel and the torch ops compute the same scene (float64 per pixel vs
    float32 passes): equal to round-off, with and without background, every occluder, blur and
    noise as drawn; JPEG's quantisation can turn round-off into a level, rarely."""
    cfg = SynthConfig(seed=7, occlusion_rate=1.0, jpeg_rate=0.0)
    ident, nuis, f2p = _turned_batch(cfg, 30, size, aligned)
    assert set(nuis["occlusion"].tolist()) == {1.0, 2.0, 3.0}
    for background in (True, False):
        for post in (False, True):
            want = render(ident, nuis, f2p, size, background=background, post=post,
                          return_alpha=True, engine="torch")
            got = render(ident, nuis, f2p, size, background=background, post=post,
                         return_alpha=True, engine="kernel")
            assert torch.equal(got[1], want[1])  # landmarks
            for a, b in zip(got, want):
                assert a.shape == b.shape and a.dtype == b.dtype
                assert (a - b).abs().max() < 1e-4, (background, post)
    nuis["jpeg"] = torch.ones(30)
    levels = [(render(ident, nuis, f2p, size, engine=e)[0] * 255).round() for e in
              ("torch", "kernel")]
    moved = (levels[0] - levels[1]).abs()
    assert (moved > 0).float().mean() < 2e-3 and moved.mean() < 2e-3


def test_engine_is_chosen_by_whether_gradients_are_needed():
    cfg = CLEAN
    ident, nuis = identity_params(cfg, [0, 1]), nuisance_params(cfg, [0, 1], [0, 0])
    f2p = torch.tensor([[20.0, 0, 16], [0, 20.0, 16]]).expand(2, 2, 3).contiguous()
    with pytest.raises(ValueError, match="engine must be one of"):
        render(ident, nuis, f2p, 32, engine="numba")
    grad = dict(ident, face_w=ident["face_w"].clone().requires_grad_())
    with pytest.raises(ValueError, match="engine='kernel' renders without gradients"):
        render(grad, nuis, f2p, 32, engine="kernel")
    with pytest.raises(ValueError, match="engine='kernel'"):
        render(ident, nuis, f2p, 32, engine="kernel", dense=True)
    assert render(grad, nuis, f2p, 32)[0].requires_grad  # auto: torch, differentiable
    with torch.no_grad():  # auto: the kernel, which differs from torch by round-off only
        fast = render(grad, nuis, f2p, 32)[0]
        slow = render(grad, nuis, f2p, 32, engine="torch")[0]
    assert not torch.equal(fast, slow) and (fast - slow).abs().max() < 2e-5
    for engine in ("torch", "kernel"):  # an empty batch is an empty result, not an error
        empty = render_faces(cfg, [], [], size=32, engine=engine)
        assert empty["images"].shape == (0, 3, 32, 32) and empty["boxes"].shape == (0, 4)


class _OneFace(torch.utils.data.Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return render_faces(SynthConfig(seed=4), [i], [i], size=32)["images"][0]


def test_kernel_renders_in_forked_dataloader_workers():
    """The kernel's threads live only inside a call, so a process that rendered can fork
    DataLoader workers that render too (a thread pool kept across calls would hang there)."""
    parent = render_faces(SynthConfig(seed=4), range(6), range(6), size=32)["images"]
    loader = torch.utils.data.DataLoader(_OneFace(), batch_size=3, num_workers=2,
                                         multiprocessing_context="fork")
    assert torch.equal(torch.cat(list(loader)), parent)


def test_nuisance_overrides_and_identity_spread():
    n = nuisance_params(SynthConfig(), [0, 1, 2], [0, 0, 0], yaw=70.0,
                        age=np.array([0.1, 0.5, 0.9], np.float32))
    assert n["yaw"].tolist() == [70.0] * 3 and n["age"].tolist() == pytest.approx([.1, .5, .9])
    same = identity_params(SynthConfig(identity_spread=0.0), [0, 1])
    assert all(torch.equal(v[0], v[1]) for v in same.values())
    with pytest.raises(ValueError, match="unknown nuisance override 'yawn'"):
        nuisance_params(SynthConfig(), [0], [0], yawn=1.0)


@pytest.mark.parametrize("call, match", [
    (lambda: render_faces(SynthConfig(), [0], [0], size=8), "size must be"),
    (lambda: render_faces(SynthConfig(), [-1], [0]), "identities must be"),
    (lambda: render_faces(SynthConfig(), [0, 1], [0]), "indices must have the length"),
    (lambda: SynthConfig(noise=-0.1), "noise must be"),
    (lambda: SynthConfig(occlusion_rate=1.5), "occlusion_rate must be in"),
    (lambda: splits.training_set(SynthConfig(), 0, 5), "n_identities must be"),
    (lambda: splits.training_set(SynthConfig(), 5, -2), "n_per_identity must be"),
    (lambda: splits.make_protocol("ijb", SynthConfig()), "protocol must be one of"),
    (lambda: splits.inject_label_noise([0, 1], closed_rate=0.7, open_rate=0.5),
     "closed_rate \\+ open_rate"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_protocol_counts_and_disjoint_identities():
    cfg = SynthConfig()
    lfw = splits.lfw_pairs(cfg, n_identities=50, pairs_per_fold=40, n_folds=10)
    assert len(lfw["issame"]) == 400 and lfw["issame"].sum() == 200
    assert np.bincount(lfw["fold"]).tolist() == [40] * 10
    same = lfw["left"]["identity"] == lfw["right"]["identity"]
    assert np.array_equal(same, lfw["issame"])
    assert (lfw["left"]["identity"] >= splits.EVAL_OFFSET).all()
    cfp = splits.cfp_fp_pairs(cfg, n_identities=50, n_pairs=100)
    assert (np.abs(cfp["left"]["overrides"]["yaw"]) <= 5).all()
    assert (np.abs(cfp["right"]["overrides"]["yaw"]) >= 55).all()
    age = splits.agedb_pairs(cfg, n_identities=50, n_pairs=100, min_gap=0.5)
    gap = np.abs(age["left"]["overrides"]["age"] - age["right"]["overrides"]["age"])
    assert (gap >= 0.5 - 1e-6).all()
    # "fold" is the evaluator's contiguous split (np.array_split), for every protocol
    odd = splits.cfp_fp_pairs(cfg, n_identities=50, n_pairs=103)
    for pairs in (lfw, cfp, age, odd):
        blocks = np.array_split(np.arange(len(pairs["issame"])), 10)
        assert [np.flatnonzero(pairs["fold"] == k).tolist() for k in range(10)] == \
            [b.tolist() for b in blocks]
    allp = splits.all_pairs_set(cfg, 7, 5)
    ids = allp["items"]["identity"]
    pos = sum(int(a == b) for i, a in enumerate(ids) for b in ids[i + 1:])
    assert allp["n_positive_pairs"] == pos == 70
    assert allp["n_negative_pairs"] == 35 * 34 // 2 - 70
    video = splits.video_tracks(cfg, 3, 12)
    yaw = video["items"]["overrides"]["yaw"].reshape(3, 12)
    assert (np.abs(np.diff(yaw, axis=1)) < 6).all()  # smooth pose


def test_label_noise_rates_and_masks_are_exact():
    labels = np.repeat(np.arange(20), 10)
    out = splits.inject_label_noise(labels, closed_rate=0.15, open_rate=0.05, seed=3)
    assert (out["noise"] == 1).sum() == 30 and (out["noise"] == 2).sum() == 10
    flipped = out["noise"] == 1
    assert (out["label"][flipped] != labels[flipped]).all()
    assert (out["label"][~flipped] == labels[~flipped]).all()
    assert (out["identity"][out["noise"] == 2] >= splits.OUTLIER_OFFSET).all()
    assert (out["identity"][out["noise"] != 2] == labels[out["noise"] != 2]).all()
    assert 0 <= out["label"].min() and out["label"].max() < 20


def test_cache_round_trip_and_key(tmp_path):
    items = splits.training_set(SynthConfig(), 3, 2)["items"]
    first = cache.cached_render(SynthConfig(), items, size=32, directory=tmp_path,
                                progress=False)
    again = cache.cached_render(SynthConfig(), items, size=32, directory=tmp_path,
                                progress=False)
    assert not first["cached"] and again["cached"]
    assert np.array_equal(first["images"], again["images"])
    direct = render_faces(SynthConfig(), items["identity"], items["index"], size=32)["images"]
    expected = (direct * 255 + 0.5).clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert np.array_equal(np.asarray(again["images"]), expected)
    other = cache.cached_render(SynthConfig(seed=1), items, size=32, directory=tmp_path,
                                progress=False)
    assert not other["cached"] and other["path"] != first["path"]


def test_face_dataset_flip_and_range():
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    ds = cache.FaceDataset(images, [0, 1, 2, 3], flip=False)
    x, y = ds[2]
    assert y == 2 and x.shape == (3, 8, 8) and x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(x, torch.from_numpy(images[2]).permute(2, 0, 1) / 127.5 - 1)
    flips = cache.FaceDataset(images, [0, 1, 2, 3], flip=True)
    torch.manual_seed(0)
    seen = {bool(torch.equal(flips[1][0], ds[1][0].flip(2))) for _ in range(20)}
    assert seen == {True, False}
    with pytest.raises(ValueError, match="labels must have shape"):
        cache.FaceDataset(images, [0, 1])


def test_detection_scene_labels():
    from arclab.data.scenes import _difficulty, render_scene

    cfg = SynthConfig(seed=2)
    a = render_scene(cfg, 5, height=160, width=200, n_faces=(2, 4), face_px=(12.0, 60.0))
    b = render_scene(cfg, 5, height=160, width=200, n_faces=(2, 4), face_px=(12.0, 60.0))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
    assert a["image"].shape == (3, 160, 200) and len(a["boxes"]) >= 1
    lm, box = a["landmarks"], a["boxes"]
    assert (lm[..., 0] >= box[:, None, 0] - 1e-4).all() and (lm[..., 0] <= box[:, None, 2]
                                                              + 1e-4).all()
    assert len(a["difficulty"]) == len(a["boxes"]) == len(a["identities"])
    assert _difficulty(15, 0.0, False) == 2 and _difficulty(60, 0.2, False) == 0
    assert _difficulty(60, 0.2, True) == 1 and _difficulty(30, 1.5, False) == 2
    with pytest.raises(ValueError, match="n_faces"):
        render_scene(cfg, 0, n_faces=(3, 1))


def test_pixel_pca_recovers_a_planted_subspace():
    from arclab.evaluation.pixel_baseline import fit_pixel_pca, pixel_pca_embed

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((8 * 8 * 3, 3)))[0]  # 3 orthonormal directions
    coeff = rng.standard_normal((200, 3)) * np.array([40.0, 20.0, 10.0])
    flat = 128 + coeff @ basis.T
    images = np.clip(flat, 0, 255).round().astype(np.uint8).reshape(200, 3, 8, 8)
    images = images.transpose(0, 2, 3, 1)
    model = fit_pixel_pca(images, 3, size=8)
    comps = model["components"].double().numpy()
    overlap = np.linalg.svd(comps @ basis)[1]  # cosines of principal angles
    assert overlap.min() > 0.99
    emb = pixel_pca_embed(images, model)
    assert emb.shape == (200, 3) and abs(float(emb[:, 0].std()) - 40 / 255) < 0.02
    with pytest.raises(ValueError, match="dim must be"):
        fit_pixel_pca(images, 0)


@pytest.mark.parametrize("quality", [90, 50, 20])
def test_jpeg_matches_a_real_encoder(quality):
    import io

    from PIL import Image

    from arclab.data.render.jpeg import jpeg_compress

    img = render_faces(CLEAN, [0, 1], [0, 0], size=64)["images"]
    img = (img * 255).round() / 255  # what an 8-bit encoder sees
    ours = jpeg_compress(img, torch.full((2,), float(quality)))
    for i in range(2):
        arr = (img[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
        pil = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255
        ours_err = np.abs(ours[i].permute(1, 2, 0).numpy() - pil).mean()
        jpeg_err = np.abs(arr / 255 - pil).mean()  # what compression changed
        assert ours_err < 0.6 * jpeg_err, (ours_err, jpeg_err)  # no-op would give 1.0
    with pytest.raises(ValueError, match="images must be"):
        jpeg_compress(torch.rand(2, 1, 8, 8), torch.tensor([50.0, 50.0]))


# --- the render cache verifies what it serves ----------------------------------------------


@pytest.fixture(scope="module")
def cache_entry(tmp_path_factory):
    """A valid cache entry (6 aligned 32 px images) and the bytes a fresh render gives."""
    items = splits.training_set(SynthConfig(), 3, 2)["items"]
    folder = tmp_path_factory.mktemp("cache")
    out = cache.cached_render(SynthConfig(), items, size=32, directory=folder, progress=False)
    fresh = cache.render_items(SynthConfig(), items, size=32, progress=False)
    return {"items": items, "folder": folder, "key": out["path"].name.split(".")[0],
            "fresh": fresh}


def _copy_entry(entry, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(entry["folder"], folder)
    return folder


def _flip_a_pixel_byte(folder, key):
    path = folder / f"{key}.images.npy"
    data = bytearray(path.read_bytes())
    data[-7] ^= 0x10  # one pixel's value moves by 16 levels: header, dtype and size intact
    path.write_bytes(bytes(data))
    return path


def _float32_images(folder, key):
    path = folder / f"{key}.images.npy"
    np.save(path, np.load(path).astype(np.float32))
    return path


def _fortran_order(folder, key):
    path = folder / f"{key}.images.npy"
    np.save(path, np.asfortranarray(np.load(path)))  # same values, other byte order
    return path


def _landmarks_of_the_wrong_shape(folder, key):
    path = folder / f"{key}.landmarks.npy"
    np.save(path, np.load(path)[:, :4])
    return path


def _truncate(name):
    def damage(folder, key):
        path = folder / f"{key}.{name}.npy"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    return damage


def _trailing_bytes(folder, key):
    path = folder / f"{key}.boxes.npy"
    path.write_bytes(path.read_bytes() + b"\0\0\0\0")
    return path


def _garbled_record(folder, key):
    path = folder / f"{key}.json"
    path.write_text('{"arrays": ')
    return path


@pytest.mark.parametrize("damage, reason", [
    (_flip_a_pixel_byte, "checksum does not match"),
    (_float32_images, r"holds float32 \(6, 32, 32, 3\), expected uint8"),
    (_fortran_order, "in Fortran order"),
    (_landmarks_of_the_wrong_shape, r"holds float32 \(6, 4, 2\), expected float32 \(6, 5, 2\)"),
    (_truncate("images"), "cannot be read"),
    (_truncate("landmarks"), "cannot be read"),
    (_trailing_bytes, "bytes, expected"),
    (_garbled_record, "checksum record cannot be read"),
])
def test_cache_re_renders_a_damaged_entry_and_names_the_file(cache_entry, tmp_path, damage,
                                                             reason):
    folder = _copy_entry(cache_entry, tmp_path)
    path = damage(folder, cache_entry["key"])
    with pytest.warns(cache.CacheWarning, match=f"{path}: .*{reason}"):
        out = cache.cached_render(SynthConfig(), cache_entry["items"], size=32,
                                  directory=folder, progress=False)
    assert not out["cached"]
    for name in ("images", "landmarks", "boxes"):  # the fresh render, not the damaged bytes
        assert np.array_equal(out[name], cache_entry["fresh"][name]), name
        assert out[name].dtype == cache_entry["fresh"][name].dtype
    import warnings

    with warnings.catch_warnings():  # repaired: served from disk again, silently
        warnings.simplefilter("error")
        again = cache.cached_render(SynthConfig(), cache_entry["items"], size=32,
                                    directory=folder, progress=False)
    assert again["cached"] and np.array_equal(again["images"], cache_entry["fresh"]["images"])


def test_cache_serves_a_valid_entry_unchanged_as_a_read_only_memmap(cache_entry, tmp_path):
    import warnings

    folder = _copy_entry(cache_entry, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = cache.cached_render(SynthConfig(), cache_entry["items"], size=32,
                                  directory=folder, progress=False)
    assert out["cached"] and isinstance(out["images"], np.memmap)
    assert not out["images"].flags.writeable
    assert out["images"].tobytes() == cache_entry["fresh"]["images"].tobytes()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # nothing rewritten
    record = json.loads((folder / f"{cache_entry['key']}.json").read_text())
    assert record["arrays"]["images"]["crc32"] == zlib.crc32(
        cache_entry["fresh"]["images"].tobytes())


def test_cache_entries_without_a_checksum_record_are_re_rendered_once(cache_entry, tmp_path):
    import warnings

    folder = _copy_entry(cache_entry, tmp_path)
    key = cache_entry["key"]
    (folder / f"{key}.json").unlink()  # as the code before checksums wrote an entry
    images = folder / f"{key}.images.npy"
    np.save(images, np.zeros((6, 32, 32, 3), np.uint8))  # damage it cannot have detected
    with pytest.warns(cache.CacheWarning, match=f"{images}: .*no checksum record"):
        first = cache.cached_render(SynthConfig(), cache_entry["items"], size=32,
                                    directory=folder, progress=False)
    assert not first["cached"] and np.array_equal(first["images"],
                                                  cache_entry["fresh"]["images"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = cache.cached_render(SynthConfig(), cache_entry["items"], size=32,
                                     directory=folder, progress=False)
    assert second["cached"] and (folder / f"{key}.json").is_file()


def test_cache_takes_numpy_sizes_and_refuses_booleans(cache_entry):
    out = cache.cached_render(SynthConfig(), cache_entry["items"], size=np.int64(32),
                              directory=cache_entry["folder"], progress=False)
    assert out["cached"] and out["path"].name.startswith(cache_entry["key"])  # same key
    with pytest.raises(ValueError, match="size must be an integer >= 16, got True"):
        cache.cached_render(SynthConfig(), cache_entry["items"], size=True,
                            directory=cache_entry["folder"], progress=False)


@pytest.mark.parametrize("labels, kwargs, match", [
    ([0, 0.7, 1, 2], {}, r"labels must be integers \(int64\), got 0.7 at index 1"),
    ([0, 1, -3, 2], {}, r"labels must be >= 0, got -3 at index 2"),
    ([0, 1, 2, 3], {"num_classes": 3}, r"in \[0, 3\) \(num_classes\), got 3 at index 3"),
    ([0, 1, float("nan"), 2], {}, "got nan at index 2"),
    ([True, False, True, True], {}, "labels must be integers, got dtype bool"),
    (["a", "b", "c", "d"], {}, "labels must be integers, got dtype <U1"),
    ([0, 1, 2, 3], {"num_classes": True}, "num_classes must be an integer >= 1"),
])
def test_face_dataset_refuses_labels_that_are_not_class_indices(labels, kwargs, match):
    images = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=match):
        cache.FaceDataset(images, labels, **kwargs)


def test_face_dataset_takes_integer_arrays_tensors_and_whole_floats():
    images = np.zeros((3, 8, 8, 3), np.uint8)
    for labels in ([2, 0, 1], np.array([2, 0, 1], np.uint8), torch.tensor([2, 0, 1]),
                   [2.0, 0.0, 1.0], np.array([2, 0, 1], np.int32)):
        ds = cache.FaceDataset(images, labels, num_classes=np.int64(3))
        assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [2, 0, 1]
        assert [ds[i][1] for i in range(3)] == [2, 0, 1]
