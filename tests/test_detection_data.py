"""Scene sets for detection: cached pixels and labels, clipping, hidden small-face landmarks,
mirrored targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arclab.data.params import SynthConfig
from arclab.data.scenes import render_scene
from arclab.detection.dataset import flip_targets, scene_set, scene_targets


def test_scene_set_is_the_clipped_scenes_and_reads_back_from_cache(tmp_path):
    cfg = SynthConfig(seed=3)
    data = scene_set(cfg, 3, first=5, size=96, face_px=(8.0, 60.0), landmark_min_px=20.0,
                     directory=tmp_path, progress=False)
    assert not data["cached"] and data["images"].shape == (3, 96, 96, 3)
    for i in range(3):
        raw = render_scene(cfg, 5 + i, height=96, width=96, n_faces=(2, 8),
                           face_px=(8.0, 60.0))
        b = raw["boxes"].clamp(0, 96)
        keep = ((b[:, 2] - b[:, 0]) >= 4) & ((b[:, 3] - b[:, 1]) >= 4)
        assert np.allclose(data["boxes"][i], b[keep].numpy())
        assert np.allclose(data["landmarks"][i], raw["landmarks"][keep].numpy())
        assert np.array_equal(data["difficulty"][i], raw["difficulty"][keep].numpy())
        assert np.array_equal(data["landmark_visible"][i],
                              (b[keep, 2] - b[keep, 0]).numpy() >= 20.0)
        pixels = (raw["image"] * 255 + 0.5).clamp(0, 255).byte().permute(1, 2, 0).numpy()
        assert np.array_equal(data["images"][i], pixels)
    again = scene_set(cfg, 3, first=5, size=96, face_px=(8.0, 60.0), landmark_min_px=20.0,
                      directory=tmp_path, progress=False)
    assert again["cached"] and np.array_equal(again["images"], data["images"])
    assert all(np.array_equal(a, b) for a, b in zip(again["boxes"], data["boxes"]))
    visible = np.concatenate(data["landmark_visible"])
    assert 0 < visible.sum() < len(visible)  # some faces are too small for landmarks
    t = scene_targets(data, 1)
    assert torch.allclose(t["boxes"] * 96, torch.from_numpy(data["boxes"][1]))
    assert t["landmark_valid"].dtype == torch.bool


def test_flip_targets_match_the_mirrored_image_geometry():
    t = {"boxes": torch.tensor([[0.1, 0.2, 0.4, 0.6]]),
         "landmarks": torch.tensor([[[0.15, 0.3], [0.35, 0.31], [0.25, 0.4], [0.18, 0.5],
                                     [0.33, 0.52]]]),
         "landmark_valid": torch.tensor([True])}
    f = flip_targets(t)
    assert torch.allclose(f["boxes"], torch.tensor([[0.6, 0.2, 0.9, 0.6]]))
    # the mirrored left eye is the old right eye at x -> 1 - x; the nose stays the nose
    assert torch.allclose(f["landmarks"][0, 0], torch.tensor([0.65, 0.31]))
    assert torch.allclose(f["landmarks"][0, 1], torch.tensor([0.85, 0.3]))
    assert torch.allclose(f["landmarks"][0, 2], torch.tensor([0.75, 0.4]))
    assert torch.allclose(f["landmarks"][0, 3], torch.tensor([0.67, 0.52]))
    # the left eye stays left of the right eye, as in the unflipped face
    assert f["landmarks"][0, 0, 0] < f["landmarks"][0, 1, 0]
    assert torch.allclose(flip_targets(f)["landmarks"], t["landmarks"])


@pytest.mark.parametrize("kwargs, message", [
    ({"n_scenes": 0}, "n_scenes must be a positive integer"),
    ({"n_scenes": 1, "first": -1}, "first must be an integer >= 0"),
    ({"n_scenes": 1, "size": 16}, "size must be an integer >= 32"),
])
def test_scene_set_refuses_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        scene_set(SynthConfig(), directory=tmp_path, progress=False, **kwargs)
