"""Notebooks 04 and 08 on a user's real-format files (issue 35): a ``train.rec`` with a header
record and array labels, insightface ``.bin`` verification sets and an image folder, all written
here. Their parameters ``train_data`` and ``eval_data`` replace SynthFaces end to end: the run
trains on every record of the file, 04's accuracies are those of the trained model on the
``.bin`` pairs, and 08's all-pairs TPR is that of the model on every pair of the folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from arclab.book import runner
from arclab.book.notebook import repo_root
from arclab.data.cache import cached_render, render_pairs
from arclab.data.formats import load_bin, write_bin
from arclab.data.params import SynthConfig
from arclab.data.real_sets import eval_data_sections, train_data_section
from arclab.data.recordio import RecordIOWriter
from arclab.data.splits import all_pairs_set, make_protocol
from arclab.evaluation import verification_accuracy_10fold
from arclab.models import embed_images
from arclab.train.spec import run_spec, tutorial_spec

N_IDS, PER_ID, SIZE, BATCH, EPOCHS = 12, 6, 32, 16, 3
PARAMS = {"input_size": SIZE, "embedding_size": 32, "backbone": "mbf", "epochs": EPOCHS,
          "batch_size": BATCH, "validate_every": 0, "seed": 3}


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """data/train.rec (+ .idx) as insightface writes it: header record 0 = (end of the image
    keys, end of the identity records), N_IDS x PER_ID SynthFaces crops by identity (every
    other label an array: insightface's flag > 0), then one record per identity; eval/lfw.bin and
    eval/cfp_fp.bin: 40 pairs each of other identities."""
    root = tmp_path_factory.mktemp("user")
    cfg = SynthConfig(seed=11)
    items = all_pairs_set(cfg, N_IDS, PER_ID)["items"]
    images = cached_render(cfg, items, size=SIZE, progress=False)["images"]
    (root / "data").mkdir()
    with RecordIOWriter(root / "data/train.rec", root / "data/train.idx") as w:
        n = len(images)
        w.write(b"", [n + 1.0, n + 1.0 + N_IDS])  # images are keys 1 .. n
        labels = np.unique(items["identity"], return_inverse=True)[1]  # classes 0 .. N_IDS - 1
        assert (labels == np.repeat(np.arange(N_IDS), PER_ID)).all()  # grouped by identity
        for k, (img, label) in enumerate(zip(images, labels, strict=True)):
            w.write(img, [float(label), 0.0] if k % 2 else float(label))
        for c in range(N_IDS):  # one identity record per class: its image key range
            w.write(b"", [1.0 + c * PER_ID, 1.0 + (c + 1) * PER_ID])
    faces = all_pairs_set(SynthConfig(seed=13), 15, 4)["items"]  # eval/folder: 15 ids x 4
    for k, (img, label) in enumerate(zip(cached_render(SynthConfig(seed=13), faces, size=SIZE,
                                                       progress=False)["images"],
                                         faces["identity"], strict=True)):
        (root / f"folder/id{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / f"folder/id{label}/{k:03d}.png")
    (root / "eval").mkdir()
    for name, kwargs in (("lfw", {"pairs_per_fold": 4}), ("cfp_fp", {"n_pairs": 40})):
        pairs = make_protocol(name, SynthConfig(seed=12), n_identities=20, **kwargs)
        left, right = render_pairs(pairs, size=SIZE)
        write_bin(root / f"eval/{name}.bin", np.stack([left, right], 1).reshape(-1, SIZE, SIZE, 3),
                  pairs["issame"])
    return root


def test_the_paths_become_spec_sections(user_files, tmp_path):
    data = train_data_section(user_files / "data")
    assert data == {"source": "recordio", "rec": str(user_files / "data/train.rec"),
                    "idx": str(user_files / "data/train.idx")}
    assert train_data_section(user_files / "data/train.rec") == data
    assert list(eval_data_sections(user_files / "eval")) == ["cfp_fp", "lfw"]
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice/1.png").write_bytes(b"")
    assert train_data_section(tmp_path) == {"source": "imagefolder", "root": str(tmp_path)}
    with pytest.raises(ValueError, match=r"train_data: folder .* holds no train.rec and no "
                                         r"sub-folder of images"):
        train_data_section(user_files / "eval")
    with pytest.raises(ValueError, match=r"eval_data: .*train.idx' is not a .bin"):
        eval_data_sections(user_files / "data/train.idx")
    with pytest.raises(ValueError, match=r"eval_data: folder .* holds no .bin"):
        eval_data_sections(user_files / "data")
    with pytest.raises(ValueError, match=r"train_data: '.*nowhere' does not exist"):
        tutorial_spec(train_data=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="label_noise apply to SynthFaces only"):
        tutorial_spec(train_data=user_files / "data", label_noise={"rate": 0.1})


def _execute(name: str, params: dict, tmp_path) -> tuple[str, dict]:
    """Run notebook ``name`` (smoke profile) with ``params``: (executed page, results)."""
    (tmp_path / "params").mkdir(exist_ok=True)
    (tmp_path / "params/smoke.yaml").write_text(yaml.safe_dump({name: params}))
    out = runner.execute_notebook(repo_root() / f"notebooks/{name}.ipynb", "smoke",
                                  tmp_path / "out", params_dir=tmp_path / "params",
                                  results_dir=tmp_path / "results", progress=False)
    return out.read_text(), json.loads((tmp_path / f"results/smoke/{name}.json").read_text())


def test_notebook_04_trains_and_evaluates_on_the_users_files(user_files, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    params = {**PARAMS, "train_data": str(user_files / "data"),
              "eval_data": str(user_files / "eval")}
    page, res = _execute("04_training_a_face_model", params, tmp_path)
    assert "recordio" in page and "eval_data has no identity labels" in page
    assert "From LFW to CFP-FP the paper's model changes by" in page
    # every record of the file was in the data set: steps = epochs x floor(records / batch)
    assert res["steps"] == EPOCHS * (N_IDS * PER_ID // BATCH)
    assert res["train_data"] == params["train_data"]
    acc = res["accuracy"]["ArcFace-trained"]
    assert set(acc) == {"lfw", "cfp_fp"}  # the .bin files, not the three SynthFaces protocols
    # the training loop's last validation read the same files and agrees with the notebook's
    assert res["validation"][-1]["lfw"] == pytest.approx(acc["lfw"], abs=1e-12)
    # the same run (cached by its spec, the file's size and time included), scored here
    spec = tutorial_spec(**{k: v for k, v in params.items() if k != "eval_data"})
    model = run_spec(spec, progress=False)["model"]
    for name in ("lfw", "cfp_fp"):
        images, issame = load_bin(user_files / f"eval/{name}.bin")
        left, right = (embed_images(model, images[k::2]) for k in (0, 1))
        assert acc[name] == pytest.approx(
            verification_accuracy_10fold(left, right, issame)["mean"], abs=1e-12)


def test_notebook_08_scores_every_pair_of_the_users_folder(user_files, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    params = {k: v for k, v in PARAMS.items() if k != "validate_every"} | {
        "train_data": str(user_files / "data"), "eval_data": str(user_files / "folder"),
        "n_tracks": 8}
    page, res = _execute("08_trillion_pairs", params, tmp_path)
    assert f"eval_data {user_files / 'folder'}" in page
    assert res["n_pairs"] == 60 * 59 // 2  # 15 identities x 4 images: every pair
    # the model of the same cached run on the images read here, and the strict rule by sorting
    spec = tutorial_spec(**{k: v for k, v in params.items() if k in PARAMS or k == "train_data"})
    model = run_spec(spec, progress=False)["model"]
    files = sorted((user_files / "folder").glob("*/*.png"))
    feats = embed_images(model, np.stack([np.asarray(Image.open(f)) for f in files]), flip=False)
    labels = [f.parent.name for f in files]
    x = torch.nn.functional.normalize(feats.float(), dim=1)
    i, j = torch.triu_indices(len(x), len(x), 1)
    same = torch.tensor([labels[a] == labels[b] for a, b in zip(i.tolist(), j.tolist())])
    scores = (x[i] * x[j]).sum(1)
    neg = scores[~same].sort(descending=True).values
    for key, r in res["strict"].items():
        f = float(key)
        if f * len(neg) >= 1:  # the threshold is the (k + 1)-th largest negative
            want = (scores[same] > neg[int(f * len(neg))]).double().mean().item()
            assert r["tpr"] == pytest.approx(want, abs=1e-9), key
            assert r["n_neg"] == len(neg) and r["n_pos"] == int(same.sum())
