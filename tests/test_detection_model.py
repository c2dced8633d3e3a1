"""RetinaFace network (the port's state-dict layout, shapes, DCN start, weight loading) and
its post-processing (decode, threshold, NMS, top-k) against hand-worked and brute-force
results."""

from __future__ import annotations

import math
import re
import time

import pytest
import torch
from torch import nn

from arclab.detection.model import RetinaFace, load_port_weights, preprocess
from arclab.detection.postprocess import detect, detector_costs, time_detector
from arclab.detection.priors import priors, priors_per_level

# --- the port's state dict, written from biubug6/Pytorch_Retinaface models/net.py and
# models/retinaface.py (cfg_mnet: in_channel 32, out_channel 64, 2 anchors per cell). The body
# is IntermediateLayerGetter(MobileNetV1, {stage1, stage2, stage3}): avg and fc are dropped.
MOBILENET_BODY = {  # prefix: (block, cin, cout); conv_bn = 3x3 conv + BN, conv_dw = dw + pw
    "body.stage1.0": ("conv_bn", 3, 8), "body.stage1.1": ("conv_dw", 8, 16),
    "body.stage1.2": ("conv_dw", 16, 32), "body.stage1.3": ("conv_dw", 32, 32),
    "body.stage1.4": ("conv_dw", 32, 64), "body.stage1.5": ("conv_dw", 64, 64),
    "body.stage2.0": ("conv_dw", 64, 128),
    **{f"body.stage2.{i}": ("conv_dw", 128, 128) for i in range(1, 6)},
    "body.stage3.0": ("conv_dw", 128, 256), "body.stage3.1": ("conv_dw", 256, 256),
}
FPN_SSH = {  # prefix: (kernel, cin, cout), each a conv + BN
    "fpn.output1": (1, 64, 64), "fpn.output2": (1, 128, 64), "fpn.output3": (1, 256, 64),
    "fpn.merge1": (3, 64, 64), "fpn.merge2": (3, 64, 64),
    **{f"ssh{i}.{name}": (3, cin, cout) for i in (1, 2, 3) for name, cin, cout in (
        ("conv3X3", 64, 32), ("conv5X5_1", 64, 16), ("conv5X5_2", 16, 16),
        ("conv7X7_2", 16, 16), ("conv7x7_3", 16, 16))},
}
HEADS = {"ClassHead": 2, "BboxHead": 4, "LandmarkHead": 10}  # values per anchor


def _bn(prefix: str, c: int) -> dict:
    return {**{f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")},
            f"{prefix}.num_batches_tracked": ()}


def port_mobilenet_keys() -> dict[str, tuple]:
    keys: dict[str, tuple] = {}
    for prefix, (block, cin, cout) in MOBILENET_BODY.items():
        if block == "conv_bn":
            keys |= {f"{prefix}.0.weight": (cout, cin, 3, 3), **_bn(f"{prefix}.1", cout)}
        else:  # Conv2d(groups=cin), BN, LeakyReLU, 1x1 Conv2d, BN, LeakyReLU
            keys |= {f"{prefix}.0.weight": (cin, 1, 3, 3), **_bn(f"{prefix}.1", cin),
                     f"{prefix}.3.weight": (cout, cin, 1, 1), **_bn(f"{prefix}.4", cout)}
    for prefix, (k, cin, cout) in FPN_SSH.items():
        keys |= {f"{prefix}.0.weight": (cout, cin, k, k), **_bn(f"{prefix}.1", cout)}
    for head, width in HEADS.items():
        for level in range(3):
            keys |= {f"{head}.{level}.conv1x1.weight": (2 * width, 64, 1, 1),
                     f"{head}.{level}.conv1x1.bias": (2 * width,)}
    return keys


def test_mobilenet_state_dict_is_the_ports_key_for_key():
    model = RetinaFace("mobilenet0.25")
    expected = port_mobilenet_keys()
    # the port's own loader logs "Used keys:300" for mobilenet0.25_Final.pth
    # (Siyu-C/RobustForensics issue #3 quotes it)
    assert len(expected) == 300
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    learnable = sum(math.prod(s) for k, s in expected.items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert sum(p.numel() for p in model.parameters()) == learnable == 426_608


def test_resnet50_state_dict_sample_and_count():
    with torch.device("meta"):  # shapes only: no 27M random weights to draw
        state = RetinaFace("resnet50").state_dict()
    sample = {  # torchvision's ResNet-50 names under body., the port's 256-channel neck
        "body.conv1.weight": (64, 3, 7, 7), "body.bn1.num_batches_tracked": (),
        "body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "body.layer2.0.conv1.weight": (128, 256, 1, 1),
        "body.layer2.0.conv2.weight": (128, 128, 3, 3),
        "body.layer3.5.conv3.weight": (1024, 256, 1, 1),
        "body.layer4.2.bn3.running_var": (2048,),
        "fpn.output1.0.weight": (256, 512, 1, 1), "fpn.output2.0.weight": (256, 1024, 1, 1),
        "fpn.output3.0.weight": (256, 2048, 1, 1), "fpn.merge1.0.weight": (256, 256, 3, 3),
        "ssh1.conv3X3.0.weight": (128, 256, 3, 3), "ssh2.conv5X5_1.0.weight": (64, 256, 3, 3),
        "ssh3.conv7x7_3.1.bias": (64,), "ClassHead.0.conv1x1.weight": (4, 256, 1, 1),
        "BboxHead.1.conv1x1.bias": (8,), "LandmarkHead.2.conv1x1.weight": (20, 256, 1, 1),
    }
    assert {k: tuple(state[k].shape) for k in sample} == sample
    assert not any(k.startswith(("body.fc", "body.avgpool")) for k in state)
    # the port's loader logs "Missing keys:456" for its ResNet-50 model when a checkpoint
    # matches none of them (wang-xinyu/tensorrtx issue #1241): the model has 456 keys
    assert len(state) == 456


def test_output_shapes_follow_the_priors_for_both_backbones_and_any_size():
    model = RetinaFace().eval()
    with torch.no_grad():
        out = model(preprocess(torch.rand(1, 3, 640, 640)))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "cls": (1, 16_800, 2), "box": (1, 16_800, 4), "landmarks": (1, 16_800, 10)}
    with torch.no_grad():  # odd sizes: ceil(H / stride) cells, 2 anchors
        odd = model(torch.zeros(2, 3, 37, 53))["box"]
    assert odd.shape[1] == 2 * (5 * 7 + 3 * 4 + 2 * 2) == sum(priors_per_level((37, 53)))
    with torch.device("meta"):
        big = RetinaFace("resnet50", dense_dim=3)(torch.zeros(1, 3, 640, 640))
    assert {k: tuple(v.shape) for k, v in big.items()} == {
        "cls": (1, 16_800, 2), "box": (1, 16_800, 4), "landmarks": (1, 16_800, 10),
        "dense": (1, 16_800, 3)}
    with torch.no_grad():
        small = RetinaFace("resnet50").eval()(torch.zeros(1, 3, 48, 80))
    assert small["landmarks"].shape == (1, len(priors((48, 80))), 10)
    for bad in ({"backbone": "vgg"}, {"context": "dcn"}, {"out_channels": 0},
                {"anchors_per_cell": 0}, {"dense_dim": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RetinaFace(**bad)


def test_preprocess_is_the_ports_bgr_mean_subtraction():
    x = torch.rand(2, 3, 4, 5)
    y = preprocess(x)
    for c, (rgb, mean) in enumerate(zip((2, 1, 0), (104, 117, 123))):  # B, G, R
        assert torch.allclose(y[:, c], x[:, rgb] * 255 - mean)
    with pytest.raises(ValueError, match="float"):
        preprocess(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        preprocess(torch.zeros(3, 4, 4))


def test_deformable_context_with_zero_offsets_is_the_plain_context():
    torch.manual_seed(0)
    plain = RetinaFace(context="ssh").eval()
    dcn = RetinaFace(context="ssh_dcn").eval()
    result = dcn.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert sorted(result.missing_keys) == sorted(
        f"ssh{i}.{c}.offset.{p}" for i in (1, 2, 3)
        for c in ("conv3X3", "conv5X5_2", "conv7x7_3") for p in ("weight", "bias"))
    x = preprocess(torch.rand(2, 3, 64, 96))
    with torch.no_grad():
        a, b = plain(x), dcn(x)  # outputs of about 0.1 agree to float rounding
        assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a)
        feature = plain.fpn(plain.body(x))[0]
        same = (plain.ssh1(feature) - dcn.ssh1(feature)).abs().max()
        nn.init.constant_(dcn.ssh1.conv3X3.offset.bias, 0.5)  # shift every sample point
        moved = plain.ssh1(feature) - dcn.ssh1(feature)
    assert same <= 1e-6 * plain.ssh1(feature).abs().max() < moved.abs().max() / 100
    # the offsets can learn: their conv gets a gradient although it starts at zero
    dcn.train()
    nn.init.zeros_(dcn.ssh1.conv3X3.offset.bias)
    dcn(x)["cls"].square().sum().backward()
    assert dcn.ssh1.conv3X3.offset.weight.grad.abs().sum() > 0


class _Evil:
    """Not a tensor: a weights-only load must refuse to build it."""


def test_port_weights_load_strictly_and_bad_files_are_named(tmp_path):
    torch.manual_seed(1)
    source = RetinaFace()
    state = source.state_dict()
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # as DataParallel saves
    loaded = load_port_weights(RetinaFace(), path)
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    wrapped = load_port_weights(RetinaFace(), {"state_dict": state})
    x = preprocess(torch.rand(1, 3, 32, 32))
    with torch.no_grad():
        assert torch.equal(source.eval()(x)["box"], wrapped.eval()(x)["box"])
    with pytest.raises(ValueError, match=r"unexpected \['extra.weight'\]"):
        load_port_weights(RetinaFace(), {**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"missing \['ClassHead.0.conv1x1.bias'\]"):
        load_port_weights(RetinaFace(), {k: v for k, v in state.items()
                                         if k != "ClassHead.0.conv1x1.bias"})
    with pytest.raises(ValueError, match=r"wrong shapes \['BboxHead.1.conv1x1.weight "):
        load_port_weights(RetinaFace(), {**state, "BboxHead.1.conv1x1.weight":
                                         torch.zeros(8, 32, 1, 1)})
    with pytest.raises(ValueError, match=r"missing \['ssh1.conv3X3.offset.bias'"):
        load_port_weights(RetinaFace(context="ssh_dcn"), path)  # no DCN in the port
    torch.save(_Evil(), tmp_path / "evil.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    for name in ("evil.pth", "junk.pth", "absent.pth"):
        with pytest.raises(ValueError, match=f"{name}.*could not be read"):
            load_port_weights(RetinaFace(), tmp_path / name)
    torch.save({"a": 1}, tmp_path / "numbers.pth")
    with pytest.raises(ValueError, match="mapping of names to tensors"):
        load_port_weights(RetinaFace(), tmp_path / "numbers.pth")


# --- detect -------------------------------------------------------------------------------

def _set_head(head: nn.Module, bias: list[float]) -> None:
    nn.init.zeros_(head.conv1x1.weight)
    with torch.no_grad():
        head.conv1x1.bias.copy_(torch.tensor(bias))


def test_conv_heads_are_read_in_the_priors_order():
    """Zero head weights and chosen biases: only anchor 1 (128 px) of level 1 (stride 16) is
    a face, its box shrunk to 32 px and moved by (+6.4, -3.2) px, landmark k at (+1.28k,
    -1.28k) px from the cell centre: every level-1 cell of a 64x96 image gives that face."""
    model = RetinaFace()
    shrink = math.log(0.25) / 0.2  # 128 px * 0.25 = 32 px
    for level in range(3):
        face = level == 1
        _set_head(model.ClassHead[level], [5, 0, 0, 2] if face else [5, 0, 5, 0])
        _set_head(model.BboxHead[level],
                  [0] * 4 + ([0.5, -0.25, shrink, shrink] if face else [0] * 4))
        _set_head(model.LandmarkHead[level],
                  [0] * 10 + ([v for k in range(5) for v in (0.1 * k, -0.1 * k)]
                              if face else [0] * 10))
    (found,) = detect(model, torch.rand(1, 3, 64, 96))  # NMS 0.4: neighbours overlap 1/3
    cx = torch.arange(6).repeat(4) * 16 + 8.0  # 4 rows x 6 columns of level-1 cells
    cy = torch.arange(4).repeat_interleave(6) * 16 + 8.0
    centre = torch.stack([cx + 6.4, cy - 3.2], dim=1)
    boxes = torch.cat([centre - 16, centre + 16], dim=1)
    k = torch.arange(5.0)
    points = torch.stack([cx[:, None] + 1.28 * k, cy[:, None] - 1.28 * k], dim=-1)
    order = torch.argsort(found["boxes"][:, 1] * 1000 + found["boxes"][:, 0])
    assert len(found["boxes"]) == 24
    assert torch.allclose(found["boxes"][order], boxes, atol=1e-4)
    assert torch.allclose(found["landmarks"][order], points, atol=1e-4)
    assert torch.allclose(found["scores"], torch.sigmoid(torch.tensor(2.0)).expand(24))
    assert len(detect(model, torch.rand(1, 3, 64, 96), score_threshold=0.89)[0]["boxes"]) == 0
    assert len(detect(model, torch.rand(1, 3, 64, 96), keep_top_k=5)[0]["boxes"]) == 5


class _Planted(nn.Module):
    """A head that outputs a fixed (n, width) tensor for every image of the batch."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("values", values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values.expand(x.shape[0], *self.values.shape)


def _planted_model() -> RetinaFace:
    """A 64x96 RetinaFace whose heads output chosen values at four priors (index = level
    offset + (row * columns + column) * 2 + anchor; levels of 8x12, 4x6 and 2x3 cells):
    A = level 0 (16 px anchor at (28, 20)), B = its 32 px neighbour, C = level 2 (256 px at
    (80, 48)), D = level 1 (64 px at (8, 8)); background elsewhere."""
    n = 2 * (8 * 12 + 4 * 6 + 2 * 3)
    cls, box, lms = torch.tensor([6.0, 0.0]).repeat(n, 1), torch.zeros(n, 4), torch.zeros(n, 10)
    a, b = (2 * 12 + 3) * 2, (2 * 12 + 3) * 2 + 1
    c, d = 192 + 48 + (1 * 3 + 2) * 2, 192
    for i, logit in zip((a, b, c, d), (4.0, 3.0, 2.0, -1.0)):
        cls[i] = torch.tensor([0.0, logit])
    box[a] = torch.tensor([0.5, -0.5, math.log(1.5) / 0.2, 0.0])  # 24 x 16 at (28.8, 19.2)
    box[b] = torch.tensor([0.5, -0.5, math.log(0.75) / 0.2, math.log(0.5) / 0.2])  # at (29.6, 18.4)
    box[c] = torch.tensor([0.0, 0.0, math.log(0.25) / 0.2, math.log(0.125) / 0.2])  # 64 x 32
    lms[a] = torch.tensor([v for k in range(5) for v in (k - 2.0, 1.0)])  # 1.6 px steps
    model = RetinaFace()
    split = [192, 48, 12]
    for name, t in (("ClassHead", cls), ("BboxHead", box), ("LandmarkHead", lms)):
        setattr(model, name, nn.ModuleList([_Planted(v) for v in t.split(split)]))
    return model


def test_detect_against_hand_decoded_boxes_nms_thresholds_and_top_k():
    model = _planted_model()
    x = torch.rand(3, 3, 64, 96)
    box_a = [16.8, 11.2, 40.8, 27.2]  # centre (28 + 0.05 * 16, 20 - 0.05 * 16), 24 x 16
    box_b = [17.6, 10.4, 41.6, 26.4]  # IoU with A: 23.2 * 15.2 / (768 - 352.64) = 0.849
    box_c = [48.0, 32.0, 112.0, 64.0]  # not clipped to the image, as in the port
    box_d = [-24.0, -24.0, 40.0, 40.0]
    s = torch.sigmoid(torch.tensor([4.0, 3.0, 2.0, -1.0]))  # softmax([0, l])[1]
    cases = [  # (kwargs, expected boxes in order, their scores)
        ({"score_threshold": 0.5}, [box_a, box_c], s[[0, 2]]),
        ({"score_threshold": 0.5, "nms_threshold": 0.9}, [box_a, box_b, box_c], s[:3]),
        ({"score_threshold": 0.9}, [box_a], s[:1]),  # 0.95 > 0.9 > 0.88; B suppressed
        ({}, [box_a, box_c, box_d], s[[0, 2, 3]]),  # default 0.02 keeps D (0.27)
        ({"keep_top_k": 2}, [box_a, box_c], s[[0, 2]]),
        ({"top_k": 2}, [box_a], s[:1]),  # top-k before NMS: A, B in; B suppressed
        ({"top_k": 2, "nms_threshold": 0.9}, [box_a, box_b], s[:2]),
    ]
    for kwargs, boxes, scores in cases:
        out = detect(model, x, **kwargs)
        assert len(out) == 3
        for r in out:
            assert torch.allclose(r["boxes"], torch.tensor(boxes), atol=1e-4), kwargs
            assert torch.allclose(r["scores"], scores, atol=1e-6), kwargs
    (r,) = detect(model, x[:1], score_threshold=0.5)
    points = torch.tensor([[28 + 1.6 * (k - 2), 21.6] for k in range(5)])
    assert torch.allclose(r["landmarks"][0], points, atol=1e-4)
    assert torch.allclose(r["landmarks"][1], torch.tensor([80.0, 48.0]).expand(5, 2))


def _reference_detect(out: dict, anchors: torch.Tensor, h: int, w: int, thr: float,
                      nms_thr: float, top_k: int, keep_top_k: int) -> list[tuple]:
    """One image, prior by prior in plain Python: decode in pixels, threshold, sort, greedy
    NMS, keep."""
    rows = []
    for p, (acx, acy, aw, ah) in enumerate(anchors.tolist()):
        score = torch.softmax(out["cls"][p].double(), 0)[1].item()
        if score <= thr:
            continue
        lx, ly, lw, lh = out["box"][p].tolist()
        cx, cy = (acx + lx * 0.1 * aw) * w, (acy + ly * 0.1 * ah) * h
        bw, bh = aw * math.exp(lw * 0.2) * w, ah * math.exp(lh * 0.2) * h
        pts = [((acx + out["landmarks"][p, 2 * k].item() * 0.1 * aw) * w,
                (acy + out["landmarks"][p, 2 * k + 1].item() * 0.1 * ah) * h)
               for k in range(5)]
        rows.append((score, (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), pts))
    rows = sorted(rows, key=lambda r: -r[0])[:top_k]

    def iou(a, b):
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    kept: list[tuple] = []
    for r in rows:
        if all(iou(r[1], k[1]) <= nms_thr for k in kept):
            kept.append(r)
    return kept[:keep_top_k]


@pytest.fixture(scope="module")
def random_detector() -> RetinaFace:
    """A randomly initialised RetinaFace whose BN statistics are measured on random images
    (at init they are 0 and 1, features fade, and every prior of a level scores the same)."""
    torch.manual_seed(3)
    model = RetinaFace()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a plain average over the passes
    with torch.no_grad():
        model.train()(preprocess(torch.rand(8, 3, 64, 64)))
    return model.eval()


def _images(h: int, w: int) -> torch.Tensor:
    """Three different (3, h, w) images: noise, a horizontal and a vertical ramp."""
    noise = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * w))
    across = torch.linspace(0, 1, w).expand(3, h, w)
    down = torch.linspace(0, 1, h)[:, None].expand(3, h, w)
    return torch.stack([noise, across, down])


def test_detect_on_a_random_network_equals_a_brute_force_loop_batched_and_one_by_one(
        random_detector):
    h, w = 40, 56
    x = _images(h, w)
    kwargs = {"score_threshold": 0.3, "nms_threshold": 0.35, "top_k": 40, "keep_top_k": 12}
    with torch.no_grad():
        raw = random_detector(preprocess(x))
    batched = detect(random_detector, x, **kwargs)
    anchors = priors((h, w)).double()
    for b, found in enumerate(batched):
        ref = _reference_detect({k: v[b] for k, v in raw.items()}, anchors, h, w,
                                kwargs["score_threshold"], kwargs["nms_threshold"],
                                kwargs["top_k"], kwargs["keep_top_k"])
        assert 0 < len(ref) == len(found["boxes"])
        assert torch.allclose(found["scores"], torch.tensor([r[0] for r in ref]).float(),
                              atol=1e-5)
        assert torch.allclose(found["boxes"], torch.tensor([r[1] for r in ref]).float(),
                              atol=1e-3)
        assert torch.allclose(found["landmarks"], torch.tensor([r[2] for r in ref]).float(),
                              atol=1e-3)
        single = detect(random_detector, x[b:b + 1], **kwargs)[0]  # convs of batch 1 round
        assert all(torch.allclose(single[k], found[k], atol=2e-3) for k in found)  # apart
    assert not torch.allclose(batched[0]["scores"][:3], batched[1]["scores"][:3])


def test_a_list_of_sizes_runs_each_size_as_one_batch_in_order(random_detector):
    seen = []
    hook = random_detector.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape))
    first, second = _images(40, 56), _images(48, 32)
    images = [first[0], second[0], first[1], second[1], first[2]]
    try:
        listed = detect(random_detector, images, score_threshold=0.3)
    finally:
        hook.remove()
    assert seen == [(3, 3, 40, 56), (2, 3, 48, 32)]
    for image, found in zip(images, listed):
        alone = detect(random_detector, image[None], score_threshold=0.3)[0]
        assert len(alone["boxes"]) == len(found["boxes"]) > 0
        assert all(torch.allclose(alone[k], found[k], atol=2e-3) for k in found)


def test_detect_restores_modes_runs_without_gradients_and_refuses_bad_input(random_detector):
    model = RetinaFace()
    model.train()
    model.ssh2.eval()  # a mixed state (a frozen part) must come back as it was
    before = {name: m.training for name, m in model.named_modules()}
    during = []
    model.body.register_forward_hook(
        lambda m, a, o: during.append((m.training, torch.is_grad_enabled())))
    out = detect(model, torch.rand(1, 3, 32, 32))
    assert during == [(False, False)]
    assert {name: m.training for name, m in model.named_modules()} == before
    assert not out[0]["scores"].requires_grad
    bad = [(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "float tensors"),
           (torch.full((1, 3, 32, 32), 255.0), r"values in \[0, 1\], got \[255"),
           (torch.full((1, 3, 32, 32), float("nan")), r"values in \[0, 1\]"),
           (torch.zeros(1, 1, 32, 32), r"\(B, 3, H, W\)"),
           ([torch.zeros(3, 0, 32)], "must not be empty"),
           ([torch.zeros(1, 3, 8, 8)], r"images\[0\] must be a \(3, H, W\)")]
    for images, message in bad:
        with pytest.raises(ValueError, match=message):
            detect(random_detector, images)
    for kwargs, name in (({"score_threshold": 1.0}, "score_threshold"),
                         ({"nms_threshold": 0.0}, "nms_threshold"),
                         ({"top_k": 0}, "top_k"), ({"keep_top_k": 1.5}, "keep_top_k"),
                         ({"prior_config": "paper"}, "prior_config")):
        with pytest.raises(ValueError, match=name):
            detect(random_detector, torch.rand(1, 3, 32, 32), **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_detect_on_cuda_equals_cpu_and_leaves_the_model_where_it_was(random_detector):
    x = _images(40, 56)
    cpu = detect(random_detector, x, score_threshold=0.3)
    gpu = detect(random_detector, x, score_threshold=0.3, device="cuda")
    assert next(random_detector.parameters()).device.type == "cpu"
    for a, b in zip(cpu, gpu):
        assert b["boxes"].device.type == "cuda"
        assert all(torch.allclose(a[k], b[k].cpu(), atol=1e-3) for k in a)


# --- costs and timing ---------------------------------------------------------------------

def _hand_costs(size: int) -> tuple[int, int, int]:
    """MACs, challenge FLOPs and DCN offset-conv MACs of RetinaFace-MobileNet-0.25 on a
    size x size image (size a multiple of 32), layer by layer from the port's definition."""
    r = [size // 2, size // 4, size // 8, size // 16, size // 32]
    convs = [(3, 8, 3, 1, r[0], False)]  # (cin, cout, k, groups, map side, bias)
    dw = [(8, 16, r[0]), (16, 32, r[1]), (32, 32, r[1]), (32, 64, r[2]), (64, 64, r[2]),
          (64, 128, r[3])] + [(128, 128, r[3])] * 5 + [(128, 256, r[4]), (256, 256, r[4])]
    for cin, cout, side in dw:
        convs += [(cin, cin, 3, cin, side, False), (cin, cout, 1, 1, side, False)]
    convs += [(64, 64, 1, 1, r[2], False), (128, 64, 1, 1, r[3], False),
              (256, 64, 1, 1, r[4], False), (64, 64, 3, 1, r[2], False),
              (64, 64, 3, 1, r[3], False)]
    offsets = 0
    for side in r[2:]:
        convs += [(64, 32, 3, 1, side, False), (64, 16, 3, 1, side, False)]
        convs += [(16, 16, 3, 1, side, False)] * 3
        convs += [(64, 2 * width, 1, 1, side, True) for width in (2, 4, 10)]
        offsets += (64 + 16 + 16) * 9 * 18 * side * side
    macs = flops = 0
    for cin, cout, k, groups, side, bias in convs:
        kernel = cin // groups * k * k
        macs += kernel * cout * side * side
        flops += (2 * kernel - 1) * cout * side * side + (cout * side * side if bias else 0)
    return macs, flops, offsets


def test_detector_costs_count_every_layer_including_deformable_ones():
    macs, flops, offsets = _hand_costs(640)
    with torch.device("meta"):
        plain, dcn = RetinaFace(), RetinaFace(context="ssh_dcn")
    got = detector_costs(plain, (640, 640))
    assert (got["macs"], got["flops"], got["params"]) == (macs, flops, 426_608)
    assert got["size_mb"] == pytest.approx(426_608 * 4 / 1e6)
    got_dcn = detector_costs(dcn, (640, 640))
    assert got_dcn["macs"] == macs + offsets  # deformable convs count as their shape
    assert got_dcn["flops"] == flops + 2 * offsets  # offset convs have a bias
    with pytest.raises(ValueError, match="image_size"):
        detector_costs(plain, (640,))


class _Sleeper(nn.Module):
    """Sleeps 10, 2 and 30 ms in turn: median 10 ms, minimum 2 ms."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep((0.010, 0.002, 0.030)[self.calls % 3])
        self.calls += 1
        return x


def test_time_detector_reports_the_median_per_size_and_thread_count():
    before = torch.get_num_threads()
    model = _Sleeper().train()
    rows = time_detector(model, sizes=((8, 8), (8, 16)), threads=(1, None), repeats=3,
                         warmup=0)
    assert [(r["height"], r["width"], r["threads"], r["device"]) for r in rows] == [
        (8, 8, 1, "cpu"), (8, 16, 1, "cpu"), (8, 8, before, "cpu"), (8, 16, before, "cpu")]
    for r in rows:
        assert 10 <= r["ms"] < 25 and 2 <= r["ms_min"] < 9
    assert torch.get_num_threads() == before and model.training
    with pytest.raises(ValueError, match="threads"):
        time_detector(model, sizes=((8, 8),), threads=(0,), repeats=1)


def test_port_weights_refuse_a_truncated_pickle_with_a_value_error(tmp_path):

    bad = tmp_path / "truncated.pth"
    bad.write_bytes(b"\x80\x04junk")  # parsing raises struct.error inside torch
    with pytest.raises(ValueError, match="could not be read as a weights-only torch file"):
        load_port_weights(RetinaFace("mobilenet0.25"), bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_port_weights_with_non_finite_values_are_refused_naming_file_and_tensor(tmp_path,
                                                                                value):
    state = RetinaFace().state_dict()
    state["fpn.output2.0.weight"] = torch.full_like(state["fpn.output2.0.weight"], value)
    state["ClassHead.1.conv1x1.bias"][0] = value  # a later bad tensor is not the one named
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = RetinaFace()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}.* tensor "
                                         rf"'fpn.output2.0.weight' holds 8192 NaN or inf"):
        load_port_weights(model, path)  # used to load, and detect then found no face
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched
    with pytest.raises(ValueError, match="the given state dict.*'fpn.output2.0.weight'"):
        load_port_weights(RetinaFace(), state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_detect_takes_half_precision_images_as_their_float32_values(random_detector, dtype):
    x = _images(40, 56).to(dtype)
    got = detect(random_detector, x, score_threshold=0.3)  # used to raise a dtype mismatch
    want = detect(random_detector, x.float(), score_threshold=0.3)
    assert sum(len(r["scores"]) for r in want) > 0
    for a, b in zip(got, want):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    listed = detect(random_detector, list(x), score_threshold=0.3)
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(listed, want))


def test_detect_and_retinaface_take_numpy_numbers_and_refuse_booleans(random_detector):
    import numpy as np

    x = _images(32, 32)
    plain = detect(random_detector, x, score_threshold=0.3, top_k=50, keep_top_k=5)
    numpy = detect(random_detector, x, score_threshold=np.float32(0.3),
                   nms_threshold=np.float64(0.4), top_k=np.int64(50), keep_top_k=np.int32(5))
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(plain, numpy))
    for kwargs, name in (({"score_threshold": False}, "score_threshold"),
                         ({"nms_threshold": True}, "nms_threshold"),
                         ({"top_k": True}, "top_k"), ({"keep_top_k": np.float64(5)},
                                                      "keep_top_k")):
        with pytest.raises(ValueError, match=f"{name} must be"):
            detect(random_detector, x, **kwargs)
    assert RetinaFace(out_channels=np.int64(32), dense_dim=np.int32(3)).dense_dim == 3
    with pytest.raises(ValueError, match="anchors_per_cell must be an integer >= 1"):
        RetinaFace(anchors_per_cell=True)
