"""RetinaFace pieces against independent references: priors by loops, coding by hand, matching
by brute force, OHEM by sorting, the loss on a hand-made case, WIDER AP on worked examples,
the network's port layout, post-processing on known outputs, resumable training."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from arclab.detection.coding import decode_boxes, decode_landmarks, encode_boxes
from arclab.detection.loss import RECIPES, multitask_loss
from arclab.detection.matching import hard_negatives, match, point_form
from arclab.detection.metrics import (
    SUBSETS,
    ap_iou_sweep,
    ap_resamples,
    average_precision,
    match_detections,
    precision_recall,
    voc_ap,
)
from arclab.detection.model import RetinaFace, load_port_weights, preprocess
from arclab.detection.postprocess import detect
from arclab.detection.priors import PRIOR_CONFIGS, priors, priors_per_level


def _loop_priors(h, w, min_sizes, steps):
    out = []
    for sizes, step in zip(min_sizes, steps):
        for i, j in itertools.product(range(math.ceil(h / step)), range(math.ceil(w / step))):
            for s in sizes:
                out.append([(j + 0.5) * step / w, (i + 0.5) * step / h, s / w, s / h])
    return torch.tensor(out)


@pytest.mark.parametrize("size, config", [((640, 640), "port"), ((480, 640), "port"),
                                          ((100, 70), "paper")])
def test_priors_equal_the_loop_definition(size, config):
    p = priors(size, config)
    ref = _loop_priors(*size, **PRIOR_CONFIGS[config])
    assert p.shape == ref.shape and torch.allclose(p, ref, atol=1e-6)
    assert sum(priors_per_level(size, config)) == len(p)
    if size == (640, 640):
        assert len(p) == 16_800


def test_box_and_landmark_coding_by_hand():
    prior = torch.tensor([[0.5, 0.4, 0.2, 0.1]])
    box = torch.tensor([[0.42, 0.33, 0.62, 0.53]])  # centre (0.52, 0.43), size (0.2, 0.2)
    t = encode_boxes(box, prior)
    expected = [0.02 / (0.1 * 0.2), 0.03 / (0.1 * 0.1), 0.0, math.log(2) / 0.2]
    assert torch.allclose(t[0], torch.tensor(expected), atol=1e-5)
    assert torch.allclose(decode_boxes(t, prior), box, atol=1e-6)
    pre = torch.arange(10.0)[None] / 10
    points = decode_landmarks(pre, prior).view(5, 2)
    assert torch.allclose(points[2], torch.tensor([0.5 + 0.4 * 0.1 * 0.2, 0.4 + 0.5 * 0.1 * 0.1]))


def _iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_matching_against_brute_force_iou_with_forced_best_priors():
    gen = torch.Generator().manual_seed(0)
    anchors = priors((64, 64), "port")
    corners = point_form(anchors)
    xy = torch.rand(4, 2, generator=gen) * 0.7
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(4, 2, generator=gen) * 0.25], dim=1)
    lms = torch.rand(4, 5, 2, generator=gen)
    valid = torch.tensor([True, False, True, True])
    m = match(boxes, lms, valid, anchors, pos_iou=0.5, neg_iou=0.3)
    iou = np.array([[_iou(b.tolist(), c.tolist()) for c in corners] for b in boxes])
    best, arg = iou.max(axis=0), iou.argmax(axis=0)
    forced = {int(iou[g].argmax()): g for g in range(4) if iou[g].max() >= 0.2}
    for p in range(len(anchors)):
        if p in forced:
            assert m["labels"][p] == 1 and m["matched"][p] == forced[p]
        elif best[p] > 0.5:
            assert m["labels"][p] == 1 and m["matched"][p] == arg[p]
        elif best[p] < 0.3:
            assert m["labels"][p] == 0 and m["matched"][p] == -1
        else:
            assert m["labels"][p] == -1
    pos = m["labels"] == 1
    assert torch.equal(m["landmark_mask"], pos & valid[m["matched"].clamp(min=0)])
    assert torch.allclose(decode_boxes(m["box_targets"][pos], anchors[pos]),
                          boxes[m["matched"][pos]], atol=1e-5)
    empty = match(torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0, dtype=torch.bool),
                  anchors, pos_iou=0.5, neg_iou=0.3)
    assert (empty["labels"] == 0).all()


def test_hard_negatives_are_the_top_losses_per_image():
    loss = torch.tensor([[0.1, 0.9, 0.5, 0.7, 0.3, 0.8], [0.2, 0.1, 0.4, 0.3, 0.9, 0.6]])
    labels = torch.tensor([[1, 0, 0, 0, -1, 0], [0, 0, 0, 0, 0, 0]])
    keep = hard_negatives(loss, labels, 2)
    # image 0: 1 positive -> the 2 negatives of highest loss (0.9, 0.8); the ignored prior
    # (-1) never counts; image 1: no positive -> ratio x 1 = 2 negatives (0.9, 0.6)
    assert keep.tolist() == [[False, True, False, False, False, True],
                             [False, False, False, False, True, True]]


def test_multitask_loss_on_a_hand_made_case_and_missing_landmarks():
    anchors = torch.tensor([[0.25, 0.25, 0.2, 0.2], [0.75, 0.75, 0.2, 0.2],
                            [0.3, 0.25, 0.2, 0.2], [0.75, 0.25, 0.1, 0.1]])
    face = torch.tensor([[0.15, 0.15, 0.35, 0.35]])  # = prior 0; prior 2 has IoU 0.6
    lms = torch.rand(1, 5, 2, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.15
    cls = torch.tensor([[[0.0, 1.0], [2.0, 0.5], [0.3, 0.1], [1.0, 1.5]]])
    box = torch.full((1, 4, 4), 0.2)
    pts = torch.full((1, 4, 10), 0.1)
    target = {"boxes": face, "landmarks": lms, "landmark_valid": torch.tensor([True])}
    out = multitask_loss(cls, box, pts, [target], anchors, recipe="paper")
    # paper: priors 0 and 2 positive (IoU 1 and 0.6 > 0.5), priors 1, 3 negative (IoU 0);
    # OHEM 3:1 keeps both negatives
    ce = torch.nn.functional.cross_entropy(cls[0], torch.tensor([1, 0, 1, 0]), reduction="none")
    assert out["positives"] == 2
    assert out["cls"].item() == pytest.approx(ce.sum().item() / 2, rel=1e-6)
    tb = encode_boxes(face.expand(2, 4), anchors[[0, 2]])
    sl1 = torch.nn.functional.smooth_l1_loss(box[0, [0, 2]], tb, reduction="sum") / 2
    assert out["box"].item() == pytest.approx(sl1.item(), rel=1e-6)
    r = RECIPES["paper"]
    assert out["total"].item() == pytest.approx(
        r["cls"] * out["cls"].item() + r["box"] * out["box"].item()
        + r["pts"] * out["pts"].item(), rel=1e-6)
    # a second face without landmarks: the landmark term still averages over the one face's
    # positives (2), not over all positives
    other = torch.tensor([[0.7, 0.7, 0.8, 0.8]])  # prior 3 ... and prior 1's best face
    two = {"boxes": torch.cat([face, other]), "landmarks": torch.cat([lms, lms]),
           "landmark_valid": torch.tensor([True, False])}
    both = multitask_loss(cls, box, pts, [two], anchors, recipe="paper")
    assert both["landmark_positives"] == 2 and both["positives"] == 3
    assert both["pts"].item() == pytest.approx(out["pts"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="recipe 'port' has no pixel term"):
        multitask_loss(cls, box, pts, [target], anchors, recipe="port",
                       pixel_loss=torch.tensor(1.0))


def test_wider_ap_on_worked_examples():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
    diff = [np.array([0, 2])]  # an easy face and a hard face
    dets = [np.array([[50, 50, 60, 60, 0.95],     # false positive, highest score
                      [0, 0, 10, 10, 0.9],        # the easy face
                      [20, 20, 30, 30, 0.8]])]    # the hard face
    ap = average_precision(dets, gt, diff)
    # hard (both faces): FP, TP, TP -> recall 0, .5, 1; precision 0, .5, 2/3 -> AP 2/3;
    # easy: FP, TP, ignored -> recall 0, 1; precision 0, .5 -> AP 1/2
    assert ap["hard"] == pytest.approx(2 / 3) and ap["easy"] == pytest.approx(0.5)
    recall, precision = precision_recall(dets, gt, diff, subset="hard")
    assert np.allclose(recall, [0, 0.5, 1]) and np.allclose(precision, [0, 0.5, 2 / 3])
    assert voc_ap(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 2 / 3])) == pytest.approx(2 / 3)
    perfect = [np.array([[0, 0, 10, 10, 0.9], [20, 20, 30, 30, 0.8]])]
    assert average_precision(perfect, gt, diff) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    shifted = [np.array([[1, 1, 11, 11, 0.9], [20, 20, 30, 30, 0.8]])]  # IoU 0.68 for one
    assert ap_iou_sweep(shifted, gt) < average_precision(shifted, gt, diff)["hard"] == 1.0
    assert match_detections(shifted[0][:, :4], gt[0]) == [(0, 0), (1, 1)]


def test_ap_resamples_equal_the_ap_of_the_copied_images():
    rng = np.random.default_rng(0)
    gt, diff, dets = [], [], []
    for _ in range(5):  # random scenes: faces, near-misses, duplicates and false positives
        g = rng.uniform(0, 80, (rng.integers(0, 4), 2))
        g = np.c_[g, g + rng.uniform(8, 30, g.shape)]
        d = np.r_[g + rng.normal(0, 2, g.shape), rng.uniform(0, 100, (3, 4))]
        d[-3:, 2:] = d[-3:, :2] + 10
        gt.append(g)
        diff.append(rng.integers(0, 3, len(g)))
        dets.append(np.c_[d, rng.choice([0.3, 0.5, 0.7, 0.9], len(d))])  # tied scores too
    counts = np.array([[1, 1, 1, 1, 1], [2, 0, 1, 3, 0], [0, 0, 0, 0, 0], [0, 1, 2, 0, 1]])
    for subset in ("easy", "medium", "hard"):
        for iou in (0.5, 0.7):
            boot = ap_resamples(dets, gt, diff, counts, subset=subset, iou=iou)
            for r, cr in enumerate(counts):
                idx = np.repeat(np.arange(5), cr)
                if sum(np.isin(diff[i], SUBSETS[subset]).sum() for i in idx):
                    copy = [[x[i] for i in idx] for x in (dets, gt, diff)]
                    want = average_precision(*copy, iou=iou, subsets=(subset,))[subset]
                    assert boot[r] == pytest.approx(want), (subset, iou, r)
                else:
                    assert np.isnan(boot[r])
    with pytest.raises(ValueError, match=r"counts must be \(R, 5\)"):
        ap_resamples(dets, gt, diff, counts[:, :4])


def test_compare_rows_pairs_seeds_and_scene_resamples_and_drops_empty_resamples():
    from arclab.detection.ablation import compare_rows
    from arclab.evaluation.paired import compare_paired

    rng = np.random.default_rng(1)
    boot = {r: rng.uniform(0.2, 0.6, (2, 6)) for r in ("a", "b")}
    for r in boot:
        boot[r][:, 2] = np.nan  # a resample without faces of the subset, NaN in every run
    res = {r: {s: {"hard": 0.4 + 0.1 * (r == "a") + 0.01 * s, "boot": {"hard": boot[r][s]}}
               for s in (0, 1)} for r in boot}
    res["a"][2] = res["a"][0]  # a seed only one row ran is left out
    got = compare_rows(res, "a", "b", "hard", names={"a": "A"})
    keep = [0, 1, 3, 4, 5]
    want = compare_paired([50.0, 51.0], [40.0, 41.0], 100 * boot["a"][:, keep],
                          100 * boot["b"][:, keep], name_a="A", name_b="b", unit="AP")
    assert got == want and got.n_seeds == 2 and got.n_boot == 5
    res["b"][1] = {**res["b"][1], "hard": float("nan")}  # a subset without faces: undefined
    assert compare_rows(res, "a", "b", "hard") is None
    with pytest.raises(ValueError, match=r"pass counts to run_rows"):
        compare_rows({"a": {0: {"hard": 0.1}}, "b": {0: {"hard": 0.2}}}, "a", "b", "hard")
    with pytest.raises(ValueError, match="must be in results"):
        compare_rows(res, "a", "c", "hard")


def test_classify_equals_the_greedy_loop_on_random_scenes():
    from torchvision.ops import box_iou

    from arclab.detection.metrics import _classify

    def loop(dets, gt, scored, iou):  # the WIDER evaluation's loop, detection by detection
        out = np.zeros(len(dets), dtype=np.int64)
        if len(gt) == 0 or len(dets) == 0:
            return out
        overlaps = box_iou(torch.as_tensor(dets[:, :4]), torch.as_tensor(gt)).numpy()
        found = np.zeros(len(gt), dtype=bool)
        for k in range(len(dets)):
            j = int(np.argmax(overlaps[k]))
            if overlaps[k, j] >= iou:
                if not scored[j]:
                    out[k] = -1
                elif not found[j]:
                    found[j], out[k] = True, 1
        return out

    rng = np.random.default_rng(0)
    for _ in range(300):
        g, d = int(rng.integers(0, 6)), int(rng.integers(0, 25))
        xy = rng.uniform(0, 50, (g, 2))
        gt = np.c_[xy, xy + rng.uniform(5, 20, (g, 2))]
        near = gt[rng.integers(0, g, d)] if g else rng.uniform(0, 50, (d, 4))
        dets = np.c_[near + rng.normal(0, rng.choice([0.5, 3.0, 8.0]), (d, 4)),
                     rng.uniform(0, 1, d)].reshape(-1, 5)
        scored, iou = rng.random(g) < 0.7, float(rng.choice([0.5, 0.7, 0.95]))
        assert (_classify(dets, gt, scored, iou) == loop(dets, gt, scored, iou)).all()


def test_roundoff_perturbs_the_initial_weights_by_ulps_and_keeps_old_cache_keys(tmp_path):
    import hashlib
    import json
    from dataclasses import asdict, replace

    from arclab.data.params import SynthConfig
    from arclab.detection.dataset import scene_set
    from arclab.detection.fit import ROUNDOFF, DetectorConfig, build_detector, config_key

    data = scene_set(SynthConfig(seed=1), 4, size=64, face_px=(10.0, 40.0),
                     directory=tmp_path / "scenes", progress=False)
    cfg = DetectorConfig(steps=4, batch_size=2)
    old = {k: v for k, v in asdict(cfg).items() if k != "roundoff"}  # the key before roundoff
    h = hashlib.sha256(json.dumps(old, sort_keys=True).encode())
    h.update(np.ascontiguousarray(data["images"][:, ::7, ::7]).tobytes())
    for boxes in data["boxes"]:
        h.update(np.ascontiguousarray(boxes).tobytes())
    assert config_key(cfg, data) == h.hexdigest()[:20]
    moved = DetectorConfig(steps=4, batch_size=2, roundoff=1)
    assert len({config_key(c, data) for c in (cfg, moved, replace(moved, roundoff=2))}) == 3
    w0, w1, w1b = (torch.cat([p.flatten() for p in build_detector(c).parameters()])
                   for c in (cfg, moved, moved))
    assert torch.equal(w1, w1b) and not torch.equal(w0, w1)
    nonzero = w0 != 0
    ratio = (w1[nonzero] / w0[nonzero] - 1).abs()
    assert 0 < ratio.max() < 8 * ROUNDOFF and torch.equal(w1[~nonzero], w0[~nonzero])
    with pytest.raises(ValueError, match="roundoff must be an integer >= 0"):
        DetectorConfig(roundoff=-1)


def test_roundoff_rows_and_spread():
    from arclab.detection.ablation import roundoff_rows, runs_json, spread

    rows = roundoff_rows({"context": "ssh"}, 2)
    assert [r["roundoff"] for r in rows.values()] == [0, 1, 2]
    got = spread([{"hard": 0.1, "map": 0.02}, {"hard": 0.3, "map": 0.04}], ("hard", "map"))
    assert got["hard"] == pytest.approx((20.0, 100 * np.std([0.1, 0.3], ddof=1), 20.0))
    assert got["map"] == pytest.approx((3.0, 100 * np.std([0.02, 0.04], ddof=1), 2.0))
    saved = runs_json({"a": {3: {"map": float("nan"), "boot": {"map": np.array([0.1, np.nan])},
                                 "losses": [1.0]}}}, ("map",))
    assert saved == {"a": {"3": {"map": None, "boot": {"map": [0.1, None]}}}}
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        roundoff_rows({}, 0)
    with pytest.raises(ValueError, match="runs must be two or more"):
        spread([{"easy": 0.1, "hard": 0.1, "map": 0.1}])


class _Fixed(nn.Module):
    """Outputs chosen per-prior values, whatever the image (for post-processing tests)."""

    def __init__(self, out):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        self.out = out

    def forward(self, x):
        return {k: v.expand(x.shape[0], *v.shape[1:]) for k, v in self.out.items()}


def test_detect_decodes_thresholds_and_suppresses_duplicates():
    size = (64, 96)
    anchors = priors(size)
    n = len(anchors)
    cls = torch.zeros(1, n, 2)
    cls[0, :, 0] = 5.0  # background everywhere ...
    cls[0, 10, :] = torch.tensor([0.0, 4.0])  # ... but a face at prior 10
    cls[0, 11, :] = torch.tensor([0.0, 3.0])  # the same cell's larger anchor: overlaps it
    cls[0, 200, :] = torch.tensor([0.0, 2.0])  # a separate face
    box = torch.zeros(1, n, 4)
    box[0, 11, 2:] = math.log(18 / 32) / 0.2  # prior 11 (32 px) decodes to 18 px: IoU 0.79
    lms = torch.zeros(1, n, 10)
    model = _Fixed({"cls": cls, "box": box, "landmarks": lms})
    out = detect(model, torch.rand(2, 3, *size), score_threshold=0.5, nms_threshold=0.4)
    scale = torch.tensor([96, 64, 96, 64])
    for r in out:
        assert len(r["boxes"]) == 2  # prior 11's box lies on prior 10's: suppressed
        expected = point_form(anchors[[10, 200]]) * scale
        assert torch.allclose(r["boxes"], expected, atol=1e-4)
        assert torch.allclose(r["scores"], torch.softmax(cls[0, [10, 200]], -1)[:, 1])
        assert torch.allclose(r["landmarks"][0], anchors[10, :2].expand(5, 2) * scale[:2])
    loose = detect(model, torch.rand(1, 3, *size), score_threshold=0.5, nms_threshold=0.9)
    assert len(loose[0]["boxes"]) == 3  # IoU 0.79 survives NMS at 0.9
    assert torch.allclose(loose[0]["boxes"][1] - loose[0]["boxes"][0],
                          torch.tensor([-1.0, -1.0, 1.0, 1.0]), atol=1e-4)
    strict = detect(model, torch.rand(1, 3, *size), score_threshold=0.9)
    assert len(strict[0]["boxes"]) == 1  # softmax(0, 3) = 0.95 > 0.9 > softmax(0, 2) = 0.88
    listed = detect(model, [torch.rand(3, *size), torch.rand(3, *size)], score_threshold=0.5)
    assert all(torch.allclose(a["boxes"], b["boxes"]) for a, b in zip(listed, out))


def test_port_layout_counts_dcn_start_and_weight_loading(tmp_path):
    model = RetinaFace("mobilenet0.25")
    state = model.state_dict()
    # names and shapes of the port (models/net.py, models/retinaface.py), a sample
    expected = {"body.stage1.0.0.weight": (8, 3, 3, 3), "body.stage3.1.3.weight": (256, 256, 1, 1),
                "fpn.output1.0.weight": (64, 64, 1, 1), "fpn.merge2.0.weight": (64, 64, 3, 3),
                "ssh1.conv3X3.0.weight": (32, 64, 3, 3), "ssh2.conv5X5_1.0.weight": (16, 64, 3, 3),
                "ssh3.conv7x7_3.1.running_var": (16,), "ClassHead.0.conv1x1.weight": (4, 64, 1, 1),
                "BboxHead.2.conv1x1.bias": (8,), "LandmarkHead.1.conv1x1.weight": (20, 64, 1, 1)}
    assert {k: tuple(state[k].shape) for k in expected} == expected
    assert sum(p.numel() for p in model.parameters()) == 426_608
    out = model(torch.zeros(1, 3, 640, 640))
    assert out["cls"].shape == (1, 16_800, 2) and out["landmarks"].shape == (1, 16_800, 10)
    r50 = RetinaFace("resnet50").state_dict()
    assert tuple(r50["body.layer2.0.conv1.weight"].shape) == (128, 256, 1, 1)
    assert tuple(r50["fpn.output1.0.weight"].shape) == (256, 512, 1, 1)
    # the deformable context with zero offsets is the plain context
    torch.manual_seed(0)
    plain, dcn = RetinaFace(context="ssh").eval(), RetinaFace(context="ssh_dcn").eval()
    dcn.load_state_dict(plain.state_dict(), strict=False)
    x = preprocess(torch.rand(1, 3, 64, 64))
    assert torch.allclose(plain(x)["box"], dcn(x)["box"], atol=1e-4)
    # weights saved from DataParallel load; a wrong key is named
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "w.pth")
    fresh = load_port_weights(RetinaFace(), tmp_path / "w.pth")
    assert torch.equal(fresh.state_dict()["ClassHead.0.conv1x1.weight"],
                       state["ClassHead.0.conv1x1.weight"])
    bad = {**state, "extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected \['extra.weight'\]"):
        load_port_weights(RetinaFace(), bad)


def test_detector_training_resumes_onto_the_same_curve_and_refuses_other_configs(tmp_path):
    from arclab.data.params import SynthConfig
    from arclab.detection.dataset import scene_set
    from arclab.detection.fit import DetectorConfig, evaluate_detector, train_detector

    data = scene_set(SynthConfig(seed=1), 6, size=64, face_px=(10.0, 40.0),
                     directory=tmp_path / "scenes", progress=False)
    cfg = DetectorConfig(steps=4, batch_size=2, warmup_steps=1, lr=0.005)
    whole = train_detector(cfg, data, tmp_path / "whole", device="cpu", progress=False)
    part = train_detector(cfg, data, tmp_path / "part", device="cpu", progress=False,
                          max_steps=2)
    rest = train_detector(cfg, data, tmp_path / "part", device="cpu", progress=False)
    assert part["step"] == 2 and rest["step"] == whole["step"] == 4
    assert rest["losses"] == whole["losses"] and len(set(whole["losses"])) == 4
    assert set(whole["terms"]) >= {"cls", "box", "pts"}
    with pytest.raises(ValueError, match="another config or scene set"):
        train_detector(DetectorConfig(steps=4, batch_size=2, lr=0.01), data, tmp_path / "whole",
                       device="cpu", progress=False)
    with pytest.raises(ValueError, match="recipe must be one of"):
        DetectorConfig(recipe="yolo")
    scores = evaluate_detector(whole["model"], data, device="cpu")
    assert set(scores) >= {"easy", "medium", "hard", "map", "nme"}
    assert all(0 <= scores[k] <= 1 for k in ("medium", "hard", "map"))


def test_pixel_loss_is_zero_at_the_true_face_and_its_gradient_recovers_it():
    from arclab.detection.dense import DENSE_PARAMS, pixel_loss, render_dense

    true = torch.zeros(1, len(DENSE_PARAMS))
    true[0, 0], true[0, 3] = 20 / 30, 0.5  # yaw 20 degrees, skin tone 0.64
    face, _ = render_dense(true, 24)
    image = torch.full((1, 3, 48, 48), 0.5)
    image[0, :, 12:36, 12:36] = face[0]
    box, index = torch.tensor([[12.0, 12.0, 36.0, 36.0]]), torch.zeros(1, dtype=torch.long)
    losses = {}
    for yaw in (-20, 0, 10, 20, 30):
        guess = true.clone()
        guess[0, 0] = yaw / 30
        losses[yaw] = pixel_loss(guess, image, box, index).item()
    assert losses[20] == pytest.approx(0.0, abs=1e-6)
    assert min(losses, key=losses.get) == 20 and all(v > 5e-3 for k, v in losses.items()
                                                     if k != 20)
    # from yaw 10 and the mean skin tone, gradient descent through the renderer finds both
    raw = torch.zeros(1, len(DENSE_PARAMS))
    raw[0, 0] = 10 / 30
    raw.requires_grad_(True)
    opt = torch.optim.Adam([raw], lr=0.03)
    for _ in range(60):
        loss = pixel_loss(raw, image, box, index)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(raw[0, 0].item() * 30 - 20) < 3 and abs(raw[0, 3].item() - 0.5) < 0.05
    empty = pixel_loss(torch.zeros(0, len(DENSE_PARAMS), requires_grad=True), image,
                       torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0


def test_bad_detection_inputs_are_named_and_empty_scenes_are_valid():
    anchors = priors((64, 64))
    with pytest.raises(ValueError, match=r"faces \[1\] have a non-positive width or height"):
        match(torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.3, 0.3, 0.3, 0.5]]), torch.zeros(2, 5, 2),
              torch.ones(2, dtype=torch.bool), anchors, pos_iou=0.5, neg_iou=0.3)
    model = RetinaFace()
    with pytest.raises(ValueError, match="images must be float tensors"):
        detect(model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="images must not be empty"):
        detect(model, [torch.zeros(3, 0, 32)])
    with pytest.raises(ValueError, match=r"images must be \(B, 3, H, W\)"):
        detect(model, torch.zeros(1, 1, 32, 32))
    # a batch whose second image has no face trains: it contributes hard negatives only
    n = len(anchors)
    cls = torch.zeros(2, n, 2, requires_grad=True)
    empty = {"boxes": torch.zeros(0, 4), "landmarks": torch.zeros(0, 5, 2),
             "landmark_valid": torch.zeros(0, dtype=torch.bool)}
    face = {"boxes": torch.tensor([[0.2, 0.2, 0.5, 0.5]]), "landmarks": torch.full((1, 5, 2), .3),
            "landmark_valid": torch.ones(1, dtype=torch.bool)}
    out = multitask_loss(cls, torch.zeros(2, n, 4), torch.zeros(2, n, 10), [face, empty],
                         anchors, recipe="port")
    out["total"].backward()
    assert torch.isfinite(out["total"]) and (cls.grad[1] != 0).sum() == 2 * 7  # 7 negatives
