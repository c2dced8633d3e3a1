"""compare / enroll / search / search_video over detect -> align -> embed, with a detector that
knows where each face is (through the real decoding) and a raw-pixel embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from arclab.data.params import SynthConfig
from arclab.data.synth import render_faces
from arclab.detection.coding import encode_boxes, encode_landmarks
from arclab.detection.matching import point_form
from arclab.detection.model import BGR_MEAN
from arclab.detection.priors import priors
from arclab.experiments.pipeline import (
    compare,
    enroll,
    pair_outcomes,
    search,
    search_video,
    verification_threshold,
)

SIZE = 96


class _Lookup(nn.Module):
    """Answers each image by looking its pixels up: the encoded box and landmarks of its face
    at the best prior, or background everywhere for an unknown (faceless) image."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))
        self.anchors = priors((SIZE, SIZE))
        self.known: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, uint8: np.ndarray, boxes: torch.Tensor, landmarks: torch.Tensor) -> None:
        for im, bx, pts in zip(uint8, boxes, landmarks):
            self.known[np.ascontiguousarray(im).tobytes()] = (bx, pts)

    def forward(self, x):
        n = len(self.anchors)
        cls = torch.zeros(len(x), n, 2)
        cls[..., 0] = 8.0
        box, lm = torch.zeros(len(x), n, 4), torch.zeros(len(x), n, 10)
        rgb = (x + torch.tensor(BGR_MEAN)[:, None, None]).flip(1)  # undo the port's input
        for b, im in enumerate(rgb):
            key = im.permute(1, 2, 0).round().clamp(0, 255).byte().numpy().tobytes()
            if key in self.known:
                bx, pts = self.known[key]
                best = box_iou(bx[None] / SIZE, point_form(self.anchors)).argmax(1)
                cls[b, best] = torch.tensor([0.0, 8.0])
                box[b, best] = encode_boxes(bx[None] / SIZE, self.anchors[best])
                lm[b, best] = encode_landmarks(pts[None] / SIZE, self.anchors[best])
        return {"cls": cls, "box": box, "landmarks": lm}


@pytest.fixture(scope="module")
def world():
    """10 identities, 6 unaligned images each (one face per image), all known to the detector;
    a raw-pixel embedding of the 24-px aligned crop (centred per image)."""
    ids = np.repeat(np.arange(10), 6)
    idx = np.tile(np.arange(6), 10)
    faces = render_faces(SynthConfig(seed=3, nuisance=0.3), ids.tolist(), idx.tolist(),
                         size=SIZE, aligned=False)
    uint8 = (faces["images"] * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    det = _Lookup()
    det.add(uint8, faces["boxes"], faces["landmarks"])

    class Pixels(nn.Module):
        def forward(self, x):
            f = x.flatten(1)
            return f - f.mean(1, keepdim=True)

    return {"images": uint8, "ids": ids, "idx": idx, "det": det, "model": Pixels()}


def test_search_ranks_the_true_identity_first_far_above_chance(world):
    enrolled = world["idx"] < 2
    gallery = enroll(world["det"], world["model"], world["images"][enrolled],
                     world["ids"][enrolled], size=24)
    assert gallery["identities"].tolist() == list(range(10)) and gallery["skipped"] == []
    queries = np.flatnonzero(~enrolled)
    hits = [search(world["det"], world["model"], world["images"][q], gallery,
                   size=24)["ranking"][0][0] == world["ids"][q] for q in queries]
    assert np.mean(hits) > 0.5  # chance is 0.1
    r = search(world["det"], world["model"], world["images"][queries[0]], gallery, size=24,
               top_k=3, threshold=1.5)
    assert len(r["ranking"]) == 3 and r["match"] is None  # no cosine exceeds 1.5
    scores = [s for _, s in r["ranking"]]
    assert scores == sorted(scores, reverse=True)


def test_compare_applies_the_threshold_chosen_at_a_stated_fpr(world):
    from arclab.experiments.pipeline import detect_align_embed

    feats = detect_align_embed(world["det"], world["model"], world["images"], size=24)
    chosen = verification_threshold(feats["features"], world["ids"], 0.05)
    assert chosen["fpr_achieved"] <= 0.05
    a, same, other = world["images"][0], world["images"][1], world["images"][6]
    r_same = compare(world["det"], world["model"], a, same, threshold=chosen["threshold"],
                     size=24)
    r_other = compare(world["det"], world["model"], a, other, threshold=chosen["threshold"],
                      size=24)
    x = torch.nn.functional.normalize(feats["features"], dim=1)
    assert r_same["score"] == pytest.approx(float(x[0] @ x[1]), abs=1e-5)
    assert r_other["score"] == pytest.approx(float(x[0] @ x[6]), abs=1e-5)
    for r in (r_same, r_other):
        assert r["match"] == (r["score"] > chosen["threshold"])
    blank = np.full_like(a, 90)  # the detector knows no face here
    r = compare(world["det"], world["model"], a, blank, threshold=0.3, size=24)
    assert r == {"match": False, "score": None, "found": [True, False],
                 "reason": "no face found in image_b"}
    with pytest.raises(ValueError, match="image_a must be a uint8"):
        compare(world["det"], world["model"], a.astype(np.float32), a, threshold=0.3, size=24)


def test_search_video_aggregates_the_frames_that_hold_a_face(world):
    enrolled = world["idx"] < 2
    gallery = enroll(world["det"], world["model"], world["images"][enrolled],
                     world["ids"][enrolled], size=24)
    person = 4
    frames = world["images"][(world["ids"] == person) & ~enrolled]
    with_blank = np.concatenate([frames, np.full_like(frames[:1], 90)])
    from arclab.experiments.pipeline import detect_align_embed

    raw = detect_align_embed(world["det"], world["model"], frames, size=24)["features"].double()
    norms = raw.norm(dim=1, keepdim=True)
    tracks = {"mean": (raw / norms).mean(0), "norm3": (raw * norms**3).sum(0)}
    g = torch.nn.functional.normalize(gallery["features"].double(), dim=1)
    for weighting, track in tracks.items():  # the aggregation by its formula, ranked by hand
        r = search_video(world["det"], world["model"], with_blank, gallery, size=24,
                         weighting=weighting, top_k=10)
        assert r["frames_used"] == len(frames)  # the faceless frame is left out
        expected = torch.argsort(g @ (track / track.norm()), descending=True)
        assert [i for i, _ in r["ranking"]] == gallery["identities"][expected].tolist()
        assert r["match"] == r["ranking"][0][0]
    r = search(world["det"], world["model"], np.full_like(frames[0], 90), gallery, size=24)
    assert r == {"found": False, "ranking": [], "match": None}
    with pytest.raises(ValueError, match="no face found in any image of identities"):
        enroll(world["det"], world["model"], [frames[0], np.full_like(frames[0], 90)], [1, 2],
               size=24)


def test_pair_outcomes_counts_genuine_and_impostor_pairs_apart():
    # notebook 14's book run: 5 of 8 pairs right, yet only 1 of the 4 genuine pairs accepted
    same = [True] * 4 + [False] * 4
    scores = [0.89, 0.20, 0.51, 0.35, 0.49, 0.31, 0.10, None]
    compared = [{"match": s is not None and s > 0.84, "score": s} for s in scores]
    r = pair_outcomes(np.array(same), compared)
    assert sum(c["match"] == t for c, t in zip(compared, same)) == 5  # the old "majority"
    assert (r["genuine"], r["genuine_accepted"], r["impostor"], r["impostor_rejected"]) == \
        (4, 1, 4, 4)
    assert r["genuine_mean"] == pytest.approx((0.89 + 0.20 + 0.51 + 0.35) / 4)
    assert r["impostor_mean"] == pytest.approx((0.49 + 0.31 + 0.10) / 3)  # no-face pair left out
    assert r["impostor_max"] == 0.49 and r["genuine_below_impostor_max"] == 2
    missing = [{"match": False, "score": None}] + compared[1:]
    assert pair_outcomes(same, missing)["genuine_below_impostor_max"] == 3  # no face: below
    none = pair_outcomes([True, False], [{"match": False, "score": None}] * 2)
    assert none["impostor_max"] is None and none["genuine_below_impostor_max"] == 0
    assert none["impostor_rejected"] == 1 and none["genuine_mean"] is None
    with pytest.raises(ValueError, match="one entry per pair"):
        pair_outcomes(same[:3], compared)
    with pytest.raises(ValueError, match="'match' and 'score'"):
        pair_outcomes([True], [{"match": True}])
