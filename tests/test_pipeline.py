"""Detect -> align -> embed on scenes whose faces are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from arclab.data.align import template, umeyama
from arclab.data.params import SynthConfig
from arclab.data.synth import render_faces
from arclab.detection.coding import encode_boxes, encode_landmarks
from arclab.detection.dataset import scene_set
from arclab.detection.matching import point_form
from arclab.detection.postprocess import detect
from arclab.detection.priors import priors
from arclab.experiments.pipeline import (
    best_detections,
    box_crops,
    box_landmarks,
    detect_align_embed,
    face_crops,
    fit_box_layout,
)
from arclab.models import embed_images


class _Oracle(nn.Module):
    """A detector whose outputs encode given faces at their best priors (and background
    elsewhere): what a perfect RetinaFace would output, through the real decoding."""

    def __init__(self, boxes: list[torch.Tensor], landmarks: list[torch.Tensor], size: int):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        anchors = priors((size, size))
        n = len(anchors)
        cls = torch.zeros(len(boxes), n, 2)
        cls[..., 0] = 8.0
        box, lm = torch.zeros(len(boxes), n, 4), torch.zeros(len(boxes), n, 10)
        for b, (bx, pts) in enumerate(zip(boxes, landmarks)):
            best = box_iou(bx / size, point_form(anchors)).argmax(dim=1)
            assert len(set(best.tolist())) == len(best), "two faces share a prior"
            cls[b, best] = torch.tensor([0.0, 8.0])
            box[b, best] = encode_boxes(bx / size, anchors[best])
            lm[b, best] = encode_landmarks(pts / size, anchors[best])
        self.out = {"cls": cls, "box": box, "landmarks": lm}
        self.seen = 0  # images answered so far: batches arrive in order

    def forward(self, x):
        start, self.seen = self.seen, self.seen + x.shape[0]
        return {k: v[start:self.seen] for k, v in self.out.items()}


def test_every_scene_face_is_found_and_its_aligned_crop_matches_the_ground_truth(tmp_path):
    size = 160
    data = scene_set(SynthConfig(seed=4), 2, size=size, face_px=(24.0, 80.0),
                     directory=tmp_path, progress=False)
    boxes = [torch.from_numpy(b) for b in data["boxes"]]
    lms = [torch.from_numpy(m) for m in data["landmarks"]]
    oracle = _Oracle(boxes, lms, size)
    images = torch.from_numpy(np.asarray(data["images"])).permute(0, 3, 1, 2).float() / 255
    found = detect(oracle, images, score_threshold=0.5, nms_threshold=0.99)
    for det, bx, pts in zip(found, boxes, lms):
        assert len(det["boxes"]) == len(bx) >= 2  # every face, nothing else
        iou = box_iou(det["boxes"], bx)
        assert (iou.max(dim=1).values > 0.999).all()
        order = iou.argmax(dim=1)
        assert torch.allclose(det["landmarks"], pts[order], atol=1e-3)
        # the similarity transform fitted to the detected landmarks moves every point within
        # a hundredth of a pixel of where the ground truth's transform moves it (112 crop)
        dst = template(112).expand(len(order), 5, 2)
        true = pts[order].double()
        m_det, m_gt = umeyama(det["landmarks"].double(), dst), umeyama(true, dst)
        gap = true @ (m_det - m_gt)[:, :, :2].transpose(1, 2) + (m_det - m_gt)[:, None, :, 2]
        assert gap.abs().max() < 0.01
        gt_crops = face_crops(np.asarray(data["images"][:1]).repeat(len(order), 0),
                              "ground_truth", size=32, landmarks=pts[order])
        det_crops = face_crops(np.asarray(data["images"][:1]).repeat(len(order), 0),
                               "detector", size=32, landmarks=det["landmarks"])
        assert np.abs(gt_crops.astype(int) - det_crops.astype(int)).max() <= 1
        break  # the crop check on the first scene's image is enough


def test_alignment_recovers_the_aligned_render_better_than_a_box_crop():
    cfg = SynthConfig(seed=2)
    ids, idx = list(range(8)), [3] * 8
    loose = render_faces(cfg, ids, idx, size=96, aligned=False)
    tight = render_faces(cfg, ids, idx, size=32, aligned=True, post=False)
    uint8 = (loose["images"] * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    aligned = face_crops(uint8, "ground_truth", size=32, landmarks=loose["landmarks"])
    boxed = face_crops(uint8, "box", size=32, boxes=loose["boxes"])
    target = (tight["images"] * 255).permute(0, 2, 3, 1).numpy()
    err_aligned = np.abs(aligned - target).mean()
    err_box = np.abs(boxed - target).mean()
    assert err_aligned < 0.6 * err_box


def test_box_layout_round_trip_and_whole_image_box_crop():
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + 10 + torch.rand(20, 2, generator=gen) * 40], 1)
    layout = torch.tensor([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    pts = box_landmarks(boxes, layout)
    assert torch.allclose(fit_box_layout(boxes, pts), layout, atol=1e-5)
    img = torch.rand(1, 3, 16, 16)
    assert torch.allclose(box_crops(img, torch.tensor([[0.0, 0.0, 16.0, 16.0]]), 16), img,
                          atol=1e-5)
    with pytest.raises(ValueError, match="kind must be one of"):
        face_crops(np.zeros((1, 8, 8, 3), np.uint8), "mtcnn", size=8)
    with pytest.raises(ValueError, match="needs landmarks"):
        face_crops(np.zeros((1, 8, 8, 3), np.uint8), "detector", size=8)


def test_detect_align_embed_is_the_embedding_of_the_detected_crop(tmp_path):
    size = 96
    loose = render_faces(SynthConfig(seed=5), [0, 1, 2], [0, 0, 0], size=size, aligned=False)
    uint8 = (loose["images"] * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    oracle = _Oracle([b[None] for b in loose["boxes"]], [m[None] for m in loose["landmarks"]],
                     size)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 8))
    out = detect_align_embed(oracle, net, uint8, size=32, batch_size=2)
    assert out["found"].all() and torch.allclose(out["landmarks"], loose["landmarks"],
                                                 atol=1e-3)
    expected = embed_images(net, face_crops(uint8, "ground_truth", size=32,
                                            landmarks=loose["landmarks"]))
    assert torch.allclose(out["features"], expected, atol=0.05)
    none = best_detections([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                             "landmarks": torch.zeros(0, 5, 2)}], (40, 60))
    assert not none["found"][0] and none["boxes"][0].tolist() == [0, 0, 60, 40]
    with pytest.raises(ValueError, match="images must be a uint8"):
        detect_align_embed(oracle, net, uint8.astype(np.float32), size=32)


def test_pair_indices_folds_are_balanced_so_10_fold_accuracy_matches_the_best_threshold():
    from arclab.evaluation import verification_accuracy_10fold

    ids = np.repeat(np.arange(60), 10)
    from arclab.experiments.pipeline import pair_indices

    left, right, same = pair_indices(ids, 1000, seed=3)
    assert (same == (ids[left] == ids[right])).all() and (left < right).all()
    for fold in np.array_split(same, 10):  # the evaluator's contiguous folds
        assert fold.sum() == len(fold) // 2
    # overlapping same/different scores: the 10-fold accuracy must be close to the best
    # single-threshold accuracy over all pairs (it cannot beat it by more than noise)
    rng = np.random.default_rng(0)
    cos = np.where(same, 0.5, 0.2) + 0.2 * rng.standard_normal(len(same))
    cos = np.clip(cos, -0.99, 0.99)
    e1 = np.stack([np.ones_like(cos), np.zeros_like(cos)], 1)
    e2 = np.stack([cos, np.sqrt(1 - cos**2)], 1)
    acc = verification_accuracy_10fold(e1, e2, same)["mean"]
    grid = np.arange(-1, 1, 0.001)
    best = max(((cos > t) == same).mean() for t in grid)
    assert best - 0.03 < acc <= best + 0.005
