"""The official WIDER FACE evaluation (arclab.detection.wider) on miniature ``.mat`` files the
tests write in the official structure: a worked example computed by hand, a brute-force
re-implementation of the official algorithm on random data, and malformed files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from arclab.detection.wider import (
    SETTINGS,
    WiderImage,
    _score_range,
    read_wider_ground_truth,
    read_wider_predictions,
    wider_official_ap,
    wider_official_pr,
    write_wider_predictions,
)


def _cell(items: list) -> np.ndarray:
    """A MATLAB cell column, as the official files hold them (loadmat gives (n, 1) objects)."""
    out = np.empty((len(items), 1), dtype=object)
    for i, x in enumerate(items):
        out[i, 0] = x
    return out


def write_gt(root: Path, events: list) -> Path:
    """``events``: [(event, [(name, boxes (G, 4) x y w h, {setting: 0-based indices})])]."""
    root.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "wider_face_val.mat", {
        "event_list": _cell([e for e, _ in events]),
        "file_list": _cell([_cell([n for n, _, _ in ims]) for _, ims in events]),
        "face_bbx_list": _cell([_cell([np.asarray(b, dtype=np.float64).reshape(-1, 4)
                                       for _, b, _ in ims]) for _, ims in events])})
    for s in SETTINGS:
        scipy.io.savemat(root / f"wider_{s}_val.mat", {"gt_list": _cell([_cell([
            (np.asarray(k[s], dtype=np.int32) + 1).reshape(-1, 1) for _, _, k in ims])
            for _, ims in events])})
    return root


# --- the worked example -------------------------------------------------------------------
# Faces (x y w h), all 10 x 10:
#   0--Parade/0_a: F1 (0,0) easy; F2 (20,0) medium; F3 (40,0) hard; F4 (60,0) in no list
#   0--Parade/0_b: F5 (0,0) easy
#   0--Parade/0_c: no face
#   1--Handshaking/1_d: F6 (0,0) hard
# gt_list is cumulative as in the release: easy {F1, F5}, medium + F2, hard + F3, F6.
A_KEEP = {"easy": [0], "medium": [0, 1], "hard": [0, 1, 2]}
EVERY = {s: [0] for s in SETTINGS}
NONE = {s: [] for s in SETTINGS}
BOX = [0, 0, 10, 10]
HAND_GT = [("0--Parade", [("0_a", [BOX, [20, 0, 10, 10], [40, 0, 10, 10], [60, 0, 10, 10]],
                           A_KEEP),
                          ("0_b", [BOX], EVERY),
                          ("0_c", np.zeros((0, 4)), NONE)]),
           ("1--Handshaking", [("1_d", [BOX], {"easy": [], "medium": [], "hard": [0]})])]
# Detections (file order = descending score). Raw scores span [0.25, 0.75], so the official
# normalisation (s - 0.25) / 0.5 maps them to the normalised score in brackets; the 1,000
# thresholds then read one PR point per detection (the scores are 0.125 apart).
#   d1 (1.0)   0_a  on F1                        c1 (0.875) 0_c  (image without faces)
#   d4 (0.75)  0_a  far from every face          e1 (0.625) 0_b  on F5
#   d2 (0.5)   0_a  on F4 (ignored everywhere)   e2 (0.375) 0_b  on F5 again
#   d3 (0.25)  0_a  (20, 0, 10, 4.75) on F2: IoU with +1 = 11 * 5.75 / 121 = 0.523 >= 0.5
#              (without +1: 47.5 / 100 = 0.475 < 0.5, a false positive)
#   f1 (0.125) 1_d  on F6                        d5 (0.0)   0_a  on F3
HAND_PRED = {
    "0--Parade": {
        "0_a": [[0, 0, 10, 10, 0.75], [200, 200, 10, 10, 0.625], [60, 0, 10, 10, 0.5],
                [20, 0, 10, 4.75, 0.375], [40, 0, 10, 10, 0.25]],
        "0_b": [[0, 0, 10, 10, 0.5625], [0, 0, 10, 10, 0.4375]],
        "0_c": [[0, 0, 10, 10, 0.6875]]},
    "1--Handshaking": {"1_d": [[0, 0, 10, 10, 0.3125]]}}
# c1 counts nowhere (its image is skipped). Per setting, (found, counted) after each detection
# that counts, in descending score, and AP = sum over recall steps of the envelope:
# easy (2 faces): d1 TP (1,1) d4 FP (1,2) e1 TP (2,3) e2 FP (2,4); d2 d3 f1 d5 ignored.
#   PR (.5,1) (.5,.5) (1,2/3) (1,.5); envelope 1 at R .5, 2/3 at R 1: AP = .5 + 1/3 = 5/6.
# medium (3 faces): d1 TP (1,1) d4 FP (1,2) e1 TP (2,3) e2 FP (2,4) d3 TP (3,5).
#   PR (1/3,1) (1/3,1/2) (2/3,2/3) (2/3,1/2) (1,3/5); envelope 1, 2/3, 3/5:
#   AP = 1/3 + 2/9 + 1/5 = 34/45.
# hard (5 faces): as medium, then f1 TP (4,6), d5 TP (5,7).
#   PR (.2,1) (.2,.5) (.4,2/3) (.4,.5) (.6,3/5) (.8,4/6) (1,5/7); envelope 1 at .2, then 5/7:
#   AP = .2 + .8 * 5/7 = 27/35.
# arclab's continuous AP (metrics.average_precision, F4 labelled hard) counts c1 as a false
# positive and d3 too (no +1 pixel): easy TP FP FP TP FP FP, AP = .5 + .5 * 2/4 = 0.75.
HAND_AP = {"easy": 5 / 6, "medium": 34 / 45, "hard": 27 / 35}


def _write_text_predictions(root: Path, preds: dict) -> None:
    """The official layout written by hand (not by write_wider_predictions)."""
    for event, images in preds.items():
        (root / event).mkdir(parents=True)
        for name, rows in images.items():
            body = "".join(" ".join(str(v) for v in r) + "\n" for r in rows)
            (root / event / f"{name}.txt").write_text(f"{name}.jpg\n{len(rows)}\n{body}")


def test_hand_computed_example_from_files(tmp_path):
    gt = write_gt(tmp_path / "gt", HAND_GT)
    _write_text_predictions(tmp_path / "pred", HAND_PRED)
    ap = wider_official_ap(tmp_path / "pred", gt)
    assert ap == pytest.approx(HAND_AP, abs=1e-12)
    # the same from arrays and from the ground truth already read
    assert wider_official_ap(HAND_PRED, read_wider_ground_truth(gt)) == pytest.approx(
        HAND_AP, abs=1e-12)


def test_hand_example_pr_curve_and_differences(tmp_path):
    gt = read_wider_ground_truth(write_gt(tmp_path / "gt", HAND_GT))
    recall, precision = wider_official_pr(HAND_PRED, gt)["easy"]
    # thresholds 0.999 .. 0.751: only d1; 0.75 .. 0.626: d1, d4 (c1 counts nowhere)
    assert (recall[0], precision[0]) == (0.5, 1.0)
    assert (recall[249], precision[249]) == (0.5, 0.5)
    assert (recall[-1], precision[-1]) == (1.0, 0.5)
    # without the image that has no face, nothing changes (it is skipped); sorting the file
    # by ascending score changes AP (the file order is taken as the score order)
    no_c = {e: {n: d for n, d in ims.items() if n != "0_c"} for e, ims in HAND_PRED.items()}
    no_c["0--Parade"]["0_c"] = []
    assert wider_official_ap(no_c, gt) == pytest.approx(HAND_AP, abs=1e-12)
    flipped = {e: dict(ims) for e, ims in HAND_PRED.items()}
    flipped["0--Parade"]["0_a"] = HAND_PRED["0--Parade"]["0_a"][::-1]
    assert wider_official_ap(flipped, gt)["hard"] != pytest.approx(HAND_AP["hard"])


def test_thousand_thresholds_merge_close_scores():
    # one face; a TP at 1.0 and a FP at 0.9995 fall in the same bin [0.999, 1]: the first PR
    # point is (R 1, P 1/2), so AP = 1/2 (reading every score would give 1)
    gt = [WiderImage("0--A", "a", np.array([BOX], dtype=float),
                     {s: np.array([0]) for s in SETTINGS})]
    dets = {"0--A": {"a": [[0, 0, 10, 10, 1.0], [90, 90, 5, 5, 0.9995], [90, 0, 5, 5, 0.0]]}}
    assert wider_official_ap(dets, gt) == {s: 0.5 for s in SETTINGS}
    dets["0--A"]["a"][1][4] = 0.998
    assert wider_official_ap(dets, gt) == {s: 1.0 for s in SETTINGS}


def test_score_range_is_stretched_to_zero_and_one():
    def preds(*scores):
        return {"e": {"a": np.array([[0, 0, 1, 1, s] for s in scores], dtype=float)}}
    assert _score_range(preds(0.2, 0.6)) == (0.2, 0.6)
    assert _score_range(preds(2.0, 3.0)) == (1.0, 3.0)      # min starts at 1
    assert _score_range(preds(-3.0, -1.0)) == (-3.0, 0.0)   # max starts at 0


def test_setting_without_faces_is_nan():
    gt = [WiderImage("0--A", "a", np.array([BOX], dtype=float),
                     {"easy": np.zeros(0, int), "medium": np.array([0]), "hard": np.array([0])})]
    ap = wider_official_ap({"0--A": {"a": [[0, 0, 10, 10, 0.9], [50, 0, 9, 9, 0.1]]}}, gt)
    assert np.isnan(ap["easy"]) and ap["hard"] == 1.0


def test_predictions_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    preds = {"0--A": {"a": rng.random((4, 5)) * 100, "b": np.zeros((0, 5))}, "1--B": {}}
    write_wider_predictions(tmp_path, preds)
    back = read_wider_predictions(tmp_path)
    assert back.keys() == preds.keys() and back["1--B"] == {}
    assert np.array_equal(back["0--A"]["a"], preds["0--A"]["a"])
    assert back["0--A"]["b"].shape == (0, 5)


# --- an independent, brute-force version of the official algorithm ------------------------
def _iou_plus_one(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = min(ax2, bx2) - max(a[0], b[0]) + 1
    ih = min(ay2, by2) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    union = (ax2 - a[0] + 1) * (ay2 - a[1] + 1) + (bx2 - b[0] + 1) * (by2 - b[1] + 1) - iw * ih
    return iw * ih / union


def reference_ap(events: list, preds: dict, iou: float = 0.5) -> dict[str, float]:
    scores = [r[4] for ims in preds.values() for d in ims.values() for r in d]
    hi, lo = max([0.0, *scores]), min([1.0, *scores])
    out = {}
    for s in SETTINGS:
        counted, found, faces = [0] * 1000, [0] * 1000, 0
        for event, images in events:
            for name, boxes, keep in images:
                keep = {int(k) for k in keep[s]}
                faces += len(keep)
                dets = [list(r) for r in preds[event][name]]
                if len(boxes) == 0 or len(dets) == 0:
                    continue
                counts, recalled, got = [], [], set()
                for d in dets:
                    ious = [_iou_plus_one(d, b) for b in boxes]
                    j = ious.index(max(ious))
                    counts.append(not (ious[j] >= iou and j not in keep))
                    if ious[j] >= iou and j in keep:
                        got.add(j)
                    recalled.append(len(got))
                norm = [(d[4] - lo) / (hi - lo) for d in dets]
                for t in range(1000):
                    reached = [k for k in range(len(dets)) if norm[k] >= 1 - (t + 1) / 1000]
                    if reached:
                        counted[t] += sum(counts[: reached[-1] + 1])
                        found[t] += recalled[reached[-1]]
        if faces == 0:
            out[s] = float("nan")
            continue
        rec = [0.0] + [f / faces for f in found] + [1.0]
        prec = [0.0] + [f / c if c else float("nan") for f, c in zip(found, counted)] + [0.0]
        for i in range(len(prec) - 1, 0, -1):
            prec[i - 1] = max(prec[i - 1], prec[i]) if prec[i] == prec[i] else prec[i]
        out[s] = sum((rec[i + 1] - rec[i]) * prec[i + 1] for i in range(len(rec) - 1)
                     if rec[i + 1] != rec[i])
    return out


def random_case(rng: np.random.Generator) -> tuple[list, dict]:
    events, preds = [], {}
    for e in range(int(rng.integers(1, 3))):
        event, images = f"{e}--Ev", []
        preds[event] = {}
        for i in range(int(rng.integers(1, 4))):
            n_faces, n_dets = int(rng.integers(0, 6)), int(rng.integers(0, 8))
            boxes = np.concatenate([rng.integers(0, 40, (n_faces, 2)),
                                    rng.integers(2, 16, (n_faces, 2))], axis=1).astype(float)
            hard = np.flatnonzero(rng.random(n_faces) < 0.8)
            medium = hard[rng.random(len(hard)) < 0.6]
            keep = {"hard": hard, "medium": medium,
                    "easy": medium[rng.random(len(medium)) < 0.6]}
            src = boxes[rng.integers(0, n_faces, n_dets)] if n_faces else \
                rng.integers(0, 40, (n_dets, 4)).astype(float)
            d = src + rng.normal(0, 1.5, (n_dets, 4)) * (rng.random((n_dets, 1)) < 0.7)
            d[:, 2:] = np.abs(d[:, 2:]) + 0.5
            score = [rng.random(n_dets), np.round(rng.random(n_dets), 2),
                     rng.random(n_dets) * 4 - 1][int(rng.integers(0, 3))]
            d = np.concatenate([d, score[:, None]], axis=1)
            if rng.random() < 0.7:  # mostly sorted, as detectors write them
                d = d[np.argsort(-d[:, 4], kind="stable")]
            images.append((f"{e}_im_{i}", boxes, keep))
            preds[event][f"{e}_im_{i}"] = d
        events.append((event, images))
    return events, preds


def test_matches_brute_force_reference_on_random_data(tmp_path):
    rng = np.random.default_rng(7)
    checked = 0
    for case in range(25):
        events, preds = random_case(rng)
        scores = np.concatenate([d[:, 4] for ims in preds.values() for d in ims.values()])
        if len(np.unique(np.r_[scores, np.clip(scores, 0, 1)])) < 2:
            continue  # every score equal: refused (tested below)
        gt = read_wider_ground_truth(write_gt(tmp_path / f"gt{case}", events))
        got, want = wider_official_ap(preds, gt), reference_ap(events, preds)
        assert got == pytest.approx(want, abs=1e-12, nan_ok=True), case
        checked += 1
    assert checked >= 20


# --- malformed input ----------------------------------------------------------------------
def _small_gt(tmp_path: Path) -> Path:
    return write_gt(tmp_path / "gt", [("0--A", [("a", [BOX], {s: [0] for s in SETTINGS})])])


def _resave(path: Path, **fields) -> None:
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    mat.update(fields)
    for k in [k for k, v in fields.items() if v is None]:
        del mat[k]
    scipy.io.savemat(path, mat)


@pytest.mark.parametrize(("file", "fields", "message"), [
    ("wider_face_val.mat", {"face_bbx_list": None}, "field 'face_bbx_list' missing"),
    ("wider_face_val.mat", {"event_list": np.array([[1.0]])}, "event_list must be a cell"),
    ("wider_face_val.mat", {"face_bbx_list": _cell([_cell([np.ones((1, 3))])])},
     r"face_bbx_list\[0\]\[0\] must be \(G, 4\)"),
    ("wider_face_val.mat", {"face_bbx_list": _cell([_cell([np.ones((1, 4))] * 2)])},
     r"face_bbx_list\[0\] \(0--A\) must have 1 entries"),
    ("wider_face_val.mat", {"file_list": _cell([_cell([np.array([[1.0]])])])},
     r"file_list\[0\]\[0\] must be a non-empty char array"),
    ("wider_hard_val.mat", {"gt_list": _cell([_cell([np.array([[2]], dtype=np.int32)])])},
     r"gt_list\[0\]\[0\] \(0--A/a\) must be a column of distinct face indices in \[1, 1\]"),
    ("wider_easy_val.mat", {"gt_list": _cell([_cell([np.array([[0]], dtype=np.int32)])])},
     "wider_easy_val.mat: gt_list"),
    ("wider_medium_val.mat", {"gt_list": _cell([])}, "gt_list must have 1 entries"),
])
def test_malformed_mat_files_name_file_and_field(tmp_path, file, fields, message):
    gt = _small_gt(tmp_path)
    _resave(gt / file, **fields)
    with pytest.raises(ValueError, match=message) as info:
        read_wider_ground_truth(gt)
    assert file in str(info.value)


def test_unreadable_or_missing_mat_files(tmp_path):
    gt = _small_gt(tmp_path)
    (gt / "wider_hard_val.mat").write_bytes(b"MATLAB 5.0 MAT-file" + b"\xff" * 200)
    with pytest.raises(ValueError, match="wider_hard_val.mat: not a readable MATLAB"):
        read_wider_ground_truth(gt)
    (gt / "wider_hard_val.mat").unlink()
    with pytest.raises(ValueError, match="gt_dir must hold wider_hard_val.mat"):
        wider_official_ap({"0--A": {"a": []}}, gt)


@pytest.mark.parametrize(("text", "message"), [
    ("a.jpg\n2\n0 0 10 10 0.9\n", "count line says '2', the file has 1 box lines"),
    ("b.jpg\n1\n0 0 10 10 0.9\n", "the name line says 'b.jpg'"),
    ("a.jpg\n1\n0 0 10 x 0.9\n", "must be 'x y w h score' numbers"),
    ("a.jpg\n1\n0 0 10 10\n", "5 finite numbers"),
    ("a.jpg\n1\n0 0 10 nan 0.9\n", "5 finite numbers"),
    ("a.jpg\n", "expected an image-name line and a count line"),
])
def test_malformed_prediction_files(tmp_path, text, message):
    (tmp_path / "0--A").mkdir()
    (tmp_path / "0--A" / "a.txt").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_wider_predictions(tmp_path)


def test_bad_predictions(tmp_path):
    gt = _small_gt(tmp_path)
    with pytest.raises(ValueError, match=r"lack 1 ground-truth image\(s\), e.g. \['0--A/a'\]"):
        wider_official_ap({"0--A": {}}, gt)
    with pytest.raises(ValueError, match=r"predictions\['0--A'\]\['a'\] must be \(D, 5\)"):
        wider_official_ap({"0--A": {"a": [[0, 0, 1, 1]]}}, gt)
    with pytest.raises(ValueError, match="every prediction score is 0.5"):
        wider_official_ap({"0--A": {"a": [[0, 0, 1, 1, 0.5]]}}, gt)
    with pytest.raises(ValueError, match="pred_dir must be a folder"):
        wider_official_ap(tmp_path / "nothing", gt)
    # scores that are all equal but outside [0, 1] are fine: the range reaches 0 and 1
    assert wider_official_ap({"0--A": {"a": [[0, 0, 10, 10, 3.0]]}}, gt)["easy"] == 1.0
