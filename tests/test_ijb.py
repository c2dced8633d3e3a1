"""IJB-B/C 1:1 verification on a miniature set in insightface's ``eval_ijbc.py`` layout.

The test writes the set itself: SynthFaces identities rendered as loose crops (face off centre,
scaled, rotated) with their exact 5 landmarks, several medias per template, a pair list with
genuine and impostor pairs. Checked against independent computations: the crops against faces
rendered straight into the ArcFace template, the pooling against a loop copy of
``image2template_feature``, TAR against a brute-force threshold sweep and against
``eval_ijbc.py``'s own table code (sklearn ``roc_curve``), and every malformed file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_curve
from torch import nn

from arclab.data.align import align_faces
from arclab.data.params import SynthConfig
from arclab.data.synth import render_faces
from arclab.evaluation import (
    IJBCrops,
    eval_ijbc,
    ijb_embed,
    ijb_template_features,
    ijb_verification,
    read_ijb,
)
from arclab.evaluation.eval_ijbc import main

N_ID, PER_ID = 6, 6        # identities, loose images per identity
CFG = SynthConfig()


def _layout(root: Path) -> dict:
    """Write the miniature IJB-C under ``root``; return what was written."""
    ident = np.repeat(np.arange(N_ID), PER_ID)
    index = np.tile(np.arange(PER_ID), N_ID)
    out = render_faces(CFG, ident.tolist(), index.tolist(), size=96, aligned=False, post=False)
    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    names = []
    for k, img in enumerate(out["images"]):
        names.append(f"{k + 1}.jpg")
        pixels = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(root / "loose_crop" / names[-1], quality=95)
    rows = []  # (image index, template, media): two templates per identity
    for i in range(N_ID):
        k = i * PER_ID
        a, b = 100 + 2 * i, 101 + 2 * i
        rows += [(k, a, 7), (k + 1, a, 7), (k + 2, a, 8),          # a video, a still
                 (k + 3, b, 7), (k + 4, b, 9), (k + 5, b, 9),      # media 7 again, pooled apart
                 (k + 2, b, 10)]                                   # one image in both
    score = np.random.default_rng(0).uniform(0.5, 1.0, len(rows)).round(4)
    lmk = out["landmarks"].numpy()
    with open(root / "meta" / "ijbc_face_tid_mid.txt", "w") as f:
        f.writelines(f"{names[k]} {t} {m}\n" for k, t, m in rows)
    with open(root / "meta" / "ijbc_name_5pts_score.txt", "w") as f:
        f.writelines(f"{names[k]} " + " ".join(f"{v:.3f}" for v in lmk[k].ravel())
                     + f" {s}\n" for (k, _, _), s in zip(rows, score, strict=True))
    tids = sorted({t for _, t, _ in rows})
    pairs = [(p, q, int((p - 100) // 2 == (q - 100) // 2)) for i, p in enumerate(tids)
             for q in tids[i + 1:]]
    (root / "meta" / "ijbc_template_pair_label.txt").write_text(
        "".join(f"{p} {q} {y}\n" for p, q, y in pairs))
    return {"rows": rows, "names": names, "scores": score, "landmarks": lmk, "pairs": pairs,
            "identities": ident, "index": index}


@pytest.fixture(scope="module")
def ijb(tmp_path_factory):
    root = tmp_path_factory.mktemp("ijb") / "IJBC"
    return root, _layout(root)


class Stub(nn.Module):
    """A fixed small embedder that is not mirror-symmetric."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(3 * 14 * 14, 16))

    def forward(self, x):
        return self.net(x)


def _pool_by_hand(feats, templates, medias):
    """``eval_ijbc.py``'s ``image2template_feature``, loop for loop."""
    uniq = np.unique(templates)
    out = np.zeros((len(uniq), feats.shape[1]))
    for c, t in enumerate(uniq):
        f, m = feats[templates == t], medias[templates == t]
        out[c] = sum(f[m == u].mean(0) for u in np.unique(m))
    return uniq, out / np.linalg.norm(out, axis=1, keepdims=True)


def _strict_by_sweep(scores, same, far):
    """The lowest threshold t (over every score and -inf) with #(impostors > t) <= far·n_neg;
    TAR = fraction of genuine pairs above it."""
    pos, neg = scores[same], scores[~same]
    ok = [t for t in np.r_[-np.inf, scores] if (neg > t).sum() <= far * len(neg) + 1e-9]
    return float((pos > min(ok)).mean())


def _nearest_as_eval_ijbc(scores, labels, far):
    fpr, tpr, _ = roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    _, i = min(zip(abs(fpr - far), range(len(fpr)), strict=True))
    return float(tpr[i])


def test_read_ijb_reads_the_layout(ijb):
    root, w = ijb
    s = read_ijb(root, "IJBC")
    assert s.name == "ijbc" and s.images == tuple(w["names"][k] for k, _, _ in w["rows"])
    assert s.templates.tolist() == [t for _, t, _ in w["rows"]]
    assert s.medias.tolist() == [m for _, _, m in w["rows"]]
    np.testing.assert_allclose(s.landmarks, [w["landmarks"][k] for k, _, _ in w["rows"]],
                               atol=6e-4)
    np.testing.assert_allclose(s.det_scores, w["scores"], rtol=1e-6)
    assert s.pairs.tolist() == [[p, q] for p, q, _ in w["pairs"]]
    assert s.labels.tolist() == [y for _, _, y in w["pairs"]]


def test_crops_are_the_faces_in_the_arcface_template(ijb):
    root, w = ijb
    s = read_ijb(root)
    crops = torch.stack([IJBCrops(s)[i] for i in range(len(s.images))]).float() / 255
    k = [r[0] for r in w["rows"]]
    ref = render_faces(CFG, w["identities"][k].tolist(), w["index"][k].tolist(), size=112,
                       post=False)["images"]
    face = (slice(None), slice(None), slice(40, 100), slice(30, 82))  # inside the face
    same = (crops - ref)[face].abs().mean((1, 2, 3))
    other = (crops - ref.roll(7, 0))[face].abs().mean((1, 2, 3))
    assert (same < other / 1.5).all() and same.median() < 0.03, (same, other)
    # and exactly align_faces of the decoded file, rounded
    rgb = np.asarray(Image.open(root / "loose_crop" / s.images[3]).convert("RGB"))
    img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
    one = align_faces(img, torch.from_numpy(s.landmarks[3])[None]).round().clamp(0, 255)
    assert torch.equal(one[0].to(torch.uint8), IJBCrops(s)[3])


def test_pooling_matches_eval_ijbc_loop():
    rng = np.random.default_rng(1)
    n = 200
    feats = rng.standard_normal((n, 8)) * rng.uniform(0.2, 3, (n, 1))
    templates, medias = rng.integers(0, 15, n), rng.integers(0, 6, n)
    scores = rng.uniform(0, 1, n)
    ids, got = ijb_template_features(feats, templates, medias, scores)
    want_ids, want = _pool_by_hand(feats * scores[:, None], templates, medias)
    assert ids.tolist() == want_ids.tolist()
    np.testing.assert_allclose(got, want, atol=1e-12)
    ids, got = ijb_template_features(torch.tensor(feats), templates, medias)
    np.testing.assert_allclose(got, _pool_by_hand(feats, templates, medias)[1], atol=1e-12)


@pytest.fixture(scope="module")
def strict_run(ijb):
    return ijb_verification(Stub().eval(), ijb[0], rule="strict", progress=False, batch_size=5)


def _scores_by_hand(root, pairs, weighted):
    """Read, align, scale, embed with the mirror, weight, pool and score in float64."""
    s, model = read_ijb(root), Stub().eval()
    feats = []
    for i, name in enumerate(s.images):
        rgb = np.asarray(Image.open(root / "loose_crop" / name).convert("RGB"))
        img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float()
        x = align_faces(img, torch.from_numpy(s.landmarks[i])[None]).round().clamp(0, 255)
        x = x / 127.5 - 1
        with torch.no_grad():
            feats.append((model(x) + model(x.flip(3)))[0].double().numpy())
    w = s.det_scores[:, None].astype(np.float64) if weighted else 1.0
    ids, tf = _pool_by_hand(np.array(feats) * w, s.templates, s.medias)
    row = {t: i for i, t in enumerate(ids)}
    return tf, np.array([tf[row[p]] @ tf[row[q]] for p, q, _ in pairs])


def test_verification_end_to_end_against_brute_force(ijb, strict_run):
    root, w = ijb
    r = strict_run
    labels = np.array([y for _, _, y in w["pairs"]])
    tf, scores = _scores_by_hand(root, w["pairs"], weighted=True)
    np.testing.assert_allclose(r["template_features"], tf, atol=1e-5)
    assert (r["n_pairs"], r["n_pos"], r["n_neg"]) == (66, 6, 60)
    # 2 + 3 medias an identity
    assert (r["n_images"], r["n_templates"], r["n_medias"]) == (42, 12, 30)
    assert list(r["tar"]) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    for far, tar in r["tar"].items():
        assert tar == _strict_by_sweep(scores, labels == 1, far), far
    assert len(set(r["tar"].values())) > 1  # the sweep is not trivially flat
    # eval_ijbc.py's table, here without the detector scores (its D1 off)
    nearest = ijb_verification(Stub().eval(), root, detector_score=False, progress=False)
    tf, scores = _scores_by_hand(root, w["pairs"], weighted=False)
    np.testing.assert_allclose(nearest["template_features"], tf, atol=1e-5)
    for far, tar in nearest["tar"].items():
        assert tar == _nearest_as_eval_ijbc(scores, labels, far), far


def test_flip_option(ijb):
    s = read_ijb(ijb[0])
    model = Stub().eval()
    both = ijb_embed(model, s, progress=False)
    alone = ijb_embed(model, s, flip=False, progress=False)
    crops = torch.stack([IJBCrops(s)[i] for i in range(len(s.images))]).float() / 127.5 - 1
    with torch.no_grad():
        torch.testing.assert_close(alone, model(crops))
        torch.testing.assert_close(both, model(crops) + model(crops.flip(3)))


def test_command_line(ijb, strict_run, tmp_path, capsys, monkeypatch):
    root, _ = ijb
    out = tmp_path / "r.json"
    assert main(["nowhere.pt", "--backbone", "mbf", "--root", str(root)]) == 2
    assert "error: source 'nowhere.pt' is not a file" in capsys.readouterr().err
    model = Stub().eval()
    monkeypatch.setattr(eval_ijbc, "load_backbone", lambda source, backbone: (model, 112))
    assert main(["model.pt", "--backbone", "stub", "--root", str(root), "--workers", "0",
                 "--device", "cpu", "--out", str(out), "--rule", "strict"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("IJBC: 42 images, 12 templates, 6 genuine + 60 impostor pairs")
    want = strict_run["tar"]
    assert printed[2].split() == [f"{100 * t:.2f}" for t in want.values()]
    saved = json.loads(out.read_text())
    assert saved["tar"] == {str(f): t for f, t in want.items()} and saved["n_pairs"] == 66
    assert main(["model.pt", "--root", str(tmp_path), "--device", "cpu"]) == 2
    assert "ijbc_face_tid_mid.txt: cannot be read" in capsys.readouterr().err


def _edit(root: Path, file: str, line: int | None, text: str | None) -> None:
    """Replace line ``line`` (1-based) of meta/``file`` with ``text`` (None: delete it;
    line None: replace the whole file)."""
    path = root / "meta" / file
    if line is None:
        path.write_bytes(text.encode("latin-1") if text is not None else b"")
        return
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1:line] = [] if text is None else [text + "\n"]
    path.write_text("".join(lines))


TID, LMK, PAIR = "ijbc_face_tid_mid.txt", "ijbc_name_5pts_score.txt", "ijbc_template_pair_label.txt"
BAD = [  # (file, line, new text, expected message)
    (TID, 3, "2.jpg 100", r"ijbc_face_tid_mid.txt line 3: expected 3 fields"),
    (TID, 2, "2.jpg x100 7", r"ijbc_face_tid_mid.txt line 2: template id must be an integer"),
    (TID, 2, "2.jpg 100 7.5", r"ijbc_face_tid_mid.txt line 2: media id must be an integer"),
    (TID, 1, "../1.jpg 100 7", r"ijbc_face_tid_mid.txt line 1: image name must be a relative"),
    (TID, 1, "/etc/passwd 100 7", r"line 1: image name must be a relative path"),
    (LMK, 4, "9.jpg" + " 1" * 11, r"name_5pts_score.txt line 4: image '9.jpg' differs from "
     r"image 4 of .*face_tid_mid.txt \('4.jpg'\)"),
    (LMK, 2, "2.jpg 1 2 3 4 nan 6 7 8 9 10 0.9", r"5pts_score.txt line 2: a landmark coordinate "
     r"must be a finite number, got 'nan'"),
    (LMK, 2, "2.jpg 1 2 3 4 5 6 7 8 9 10 -0.5", r"line 2: the detector score must be >= 0"),
    (LMK, 2, "2.jpg" + " 5" * 10 + " 0.9", r"line 2: the 5 landmarks must not all coincide"),
    (LMK, 2, "2.jpg 1 2 3 4 5 6 7 8 9 10", r"5pts_score.txt line 2: expected 12 fields"),
    (LMK, 42, None, r"5pts_score.txt lists 41 images, .*face_tid_mid.txt lists 42"),
    (PAIR, 2, "100 999 0", r"pair_label.txt line 2: template 999 is not in the image list"),
    (PAIR, 5, "100 102 2", r"pair_label.txt line 5: label must be 0 or 1, got 2"),
    (PAIR, 5, "100 102 0 1", r"pair_label.txt line 5: expected 3 fields"),
    (PAIR, 7, "100 1e3 0", r"pair_label.txt line 7: template 2 must be an integer, got '1e3'"),
    (PAIR, None, "", r"pair_label.txt: no template pairs"),
    (PAIR, None, "100 101 1\n\xff\n", r"pair_label.txt line 2: not UTF-8 text"),
]


@pytest.mark.parametrize("file, line, text, message", BAD, ids=[m[:40] for *_, m in BAD])
def test_malformed_files_name_file_and_line(ijb, tmp_path, file, line, text, message):
    root = tmp_path / "IJBC"
    shutil.copytree(ijb[0] / "meta", root / "meta")
    _edit(root, file, line, text)
    with pytest.raises(ValueError, match=message):
        read_ijb(root, "IJBC", check_images=False)


def test_missing_and_broken_inputs(ijb, tmp_path):
    root = tmp_path / "IJBC"
    shutil.copytree(ijb[0], root)
    with pytest.raises(ValueError, match=r"name must be 'IJBB' or 'IJBC', got 'IJBD'"):
        read_ijb(root, "IJBD")
    with pytest.raises(ValueError, match=r"ijbb_face_tid_mid.txt: cannot be read"):
        read_ijb(root, "IJBB")
    (root / "loose_crop" / "5.jpg").unlink()
    with pytest.raises(ValueError, match=r"face_tid_mid.txt line 5: image .5.jpg. is missing"):
        read_ijb(root)
    (root / "loose_crop" / "5.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"5.jpg: cannot be read as an image"):
        IJBCrops(read_ijb(root))[4]
    Image.new("RGB", (1, 1)).save(root / "loose_crop" / "5.jpg")
    with pytest.raises(ValueError, match=r"5.jpg: an image must be at least 2x2 pixels"):
        IJBCrops(read_ijb(root))[4]
    with pytest.raises(ValueError, match="size must be an integer >= 8 pixels, got 4"):
        IJBCrops(read_ijb(root), size=4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ijb_embed(Stub(), read_ijb(root), batch_size=0)
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        ijb_embed(Stub(), read_ijb(root), workers=-1)


def test_template_features_refuse_bad_input():
    f = np.ones((3, 2))
    with pytest.raises(ValueError, match=r"templates must be \(3,\) integers"):
        ijb_template_features(f, [1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match=r"medias must be \(3,\) integers"):
        ijb_template_features(f, [1, 1, 1], [1.0, 1, 1])
    with pytest.raises(ValueError, match=r"det_scores must be \(3,\) finite numbers >= 0"):
        ijb_template_features(f, [1, 1, 1], [1, 1, 1], [1, -1, 1])
    with pytest.raises(ValueError, match=r"features must be finite, got NaN or inf in row 1"):
        ijb_template_features(np.array([[1.0, 0], [np.nan, 0]]), [1, 1], [1, 1])
    with pytest.raises(ValueError, match=r"zero for template 4"):
        ijb_template_features(f, [1, 4, 4], [1, 1, 1], [1, 0, 0])
