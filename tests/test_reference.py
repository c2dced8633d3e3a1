"""Published numbers in arclab.reference match their sources.

Tables quoted from the seed documents are checked against excerpts of the seeds kept in
``tests/data/seeds/`` (each file names its seed file, each excerpt where in the seed it is):
the numbers are parsed from the excerpt text and must equal the table key for key, so a
changed digit, a missing row or an extra row fails. Only
``test_excerpts_are_verbatim_in_the_seeds`` needs ``../shared/seeds`` and skips without it.
Tables not in the seeds are checked for their ``SOURCES`` entry and their internal consistency.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from pathlib import Path

import pytest

from arclab import reference
from arclab.book.notebook import repo_root

EXCERPTS = Path(__file__).parent / "data" / "seeds"
SEEDS = repo_root().parent / "shared" / "seeds"

# table -> the seed (file prefix) it is checked against below; every table whose SOURCES entry
# does not say "Not in the seeds" must be here, and its entry must name "seed 00N"
SEED_TABLES = {"RETINAFACE_ABLATION": "000", "RETINAFACE_SPEED_MS": "000",
               "SLIDES_FC_MEMORY": "000", "LFR_PAIRS": "001", "LFR_TPR": "001",
               "LFR_BACKBONES": "002"}  # LFR_BACKBONES also uses seed 001 (Tables 3-4)

_MARK = re.compile(r"^=== (\w+): (.+) ===$", re.M)


def _excerpt_file(name: str) -> tuple[str, dict[str, str]]:
    """An excerpt file: the seed file it names and {excerpt id: verbatim text}."""
    text = (EXCERPTS / name).read_text(encoding="utf-8")
    seed = re.search(r"^# seed file: (\S+)$", text, re.M).group(1)
    parts = _MARK.split(text)  # header, id, where, body, id, where, body, ...
    excerpts = {}
    for key, _where, body in zip(parts[1::3], parts[2::3], parts[3::3]):
        assert body.startswith("\n") and body.endswith("\n"), key
        excerpts[key] = body[1:-1]
    return seed, excerpts


def _excerpt(name: str, key: str) -> str:
    return _excerpt_file(name)[1][key]


def _tsv(text: str) -> dict[str, list[str]]:
    """Tab-separated rows: first cell -> the other cells, stripped."""
    return {cells[0].strip(): [c.strip() for c in cells[1:]]
            for cells in (line.split("\t") for line in text.splitlines()) if len(cells) > 1}


def _num(cell: str) -> float | None:
    return None if cell == "-" else float(cell)


def _si(text: str) -> Decimal:
    """'274K' -> 274000, '1.58M' -> 1580000, '29.70G' -> 29700000000, exactly."""
    return Decimal(text[:-1]) * {"K": 10**3, "M": 10**6, "G": 10**9}[text[-1]]


# --- the excerpts themselves ----------------------------------------------------------------


def test_every_excerpt_file_names_its_seed_and_where_each_excerpt_is():
    files = sorted(p.name for p in EXCERPTS.glob("*.txt"))
    assert files == ["000_slides.txt", "001_lfr_paper.txt", "002_lfr_readme.txt"]
    for name in files:
        text = (EXCERPTS / name).read_text(encoding="utf-8")
        seed, excerpts = _excerpt_file(name)
        assert seed.startswith(name[:4]) and seed.endswith(".txt")
        assert text.startswith(f"# Excerpts of seed {seed}")
        assert excerpts and all(excerpts.values())
        for _key, where in _MARK.findall(text):
            assert len(where) > 10  # a slide title, section or table, not a bare id


def test_excerpts_are_verbatim_in_the_seeds():
    """The only test that needs ../shared/seeds: every excerpt is a substring of its seed, and
    the tables said to be not in the seeds indeed are not."""
    if not SEEDS.is_dir():
        pytest.skip(f"the seed documents are not at {SEEDS}")
    for path in sorted(EXCERPTS.glob("*.txt")):
        seed, excerpts = _excerpt_file(path.name)
        text = (SEEDS / seed).read_text(encoding="utf-8")
        for key, excerpt in excerpts.items():
            assert excerpt in text, f"{path.name}: excerpt {key!r} is not verbatim in {seed}"
    every_seed = "\n".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt")))
    quoted = [v for row in reference.ARCFACE_ABLATION.values() for v in row.values()]
    quoted += list(reference.SUBCENTER_TABLE.values())
    for value in quoted:
        assert f"{value:.2f}" not in every_seed, f"{value:.2f} is in a seed after all"


# --- tables from the seeds: the numbers parsed from the excerpts -----------------------------


def test_retinaface_ablation_and_speed_rows_are_the_slides():
    rows = _tsv(_excerpt("000_slides.txt", "retinaface_tables"))
    assert rows["Method"] == ["Easy", "Medium", "Hard", "mAP [33]"]
    labels = {"fpn_context": "FPN+Context", "dcn": "+DCN", "dcn_pts": "+ L_{pts}",
              "dcn_pixel": "+ L_{pixel}", "dcn_pts_pixel": "+ $L_{pts} + L_{pixel}$"}
    assert reference.RETINAFACE_ABLATION == {
        key: dict(zip(["easy", "medium", "hard", "map"], map(_num, rows[label])))
        for key, label in labels.items()}
    assert rows["Backbones"] == ["VGA", "HD", "4K"]
    speed = {"resnet152_gpu": "ResNet-152 (GPU)", "mobilenet0.25_gpu": "MobileNet-0.25 (GPU)",
             "mobilenet0.25_cpu_multi": "MobileNet-0.25 (CPU-m)",
             "mobilenet0.25_cpu_1": "MobileNet-0.25 (CPU-1)",
             "mobilenet0.25_arm": "MobileNet-0.25 (ARM)"}
    assert reference.RETINAFACE_SPEED_MS == {
        key: dict(zip(["vga", "hd", "4k"], map(_num, rows[label])))
        for key, label in speed.items()}
    setup = _excerpt("000_slides.txt", "retinaface_speed_setup")
    for device in ("Tesla P40", "i7-6700K", "RK3399"):
        assert device in setup and device in reference.SOURCES["RETINAFACE_SPEED_MS"]


def test_slides_fc_memory_is_the_arcface_is_efficient_slide():
    text = _excerpt("000_slides.txt", "efficient")
    x = re.search(r"Size of Aggregated Feature \(x\) : \$(\d+) \\times (\d+) \\times (\d+) "
                  r"\\times (\d+) = (\d+)\\text\{MB\}\$", text)
    tail = (r" : \$(\d+) \\times (\d+)\\text\{M\} \\times (\d+) = (\d+)\\text\{GB\}\$ in total "
            r"and \$(\d+)\\text\{GB\}/(\d+) = (\d+)\\text\{MB\}\$ on each GPU")
    w = re.search(r"Size of Class Center \(W\)" + tail, text)
    score = re.search(r"Size of Similarity Score \(\$x\^T W\$\)" + tail, text)
    batch, gpus, dim, nbytes, features_mb = map(int, x.groups())
    w_dim, w_ids, w_bytes, w_gb, w_gb_again, w_gpus, w_mb = map(int, w.groups())
    s_rows, s_ids, s_bytes, s_gb, s_gb_again, s_gpus, s_mb = map(int, score.groups())
    # one setting throughout the slide: the score's 512 rows are the global batch, 64 x 8
    assert (w_dim, w_gpus, s_gpus, s_rows) == (dim, gpus, gpus, batch * gpus)
    assert nbytes == w_bytes == s_bytes == 4 and w_ids == s_ids
    assert w_gb == w_gb_again and s_gb == s_gb_again
    assert reference.SLIDES_FC_MEMORY == {
        "weight_total_gb": w_gb, "weight_per_gpu_mb": w_mb, "logits_per_gpu_mb": s_mb,
        "features_mb": features_mb, "embedding_size": dim, "identities": w_ids * 10**6,
        "gpus": gpus, "batch_per_gpu": batch}


def test_slides_fc_memory_adds_up():
    m = reference.SLIDES_FC_MEMORY
    weight = m["embedding_size"] * m["identities"] * 4  # fp32 bytes
    logits = m["batch_per_gpu"] * m["gpus"] * m["identities"] * 4
    assert round(weight / 1e9) == m["weight_total_gb"]  # 2.048e9 bytes, "2GB" on the slide
    assert weight / m["gpus"] / 1e6 == m["weight_per_gpu_mb"]
    assert logits / m["gpus"] / 1e6 == m["logits_per_gpu_mb"]
    features = m["batch_per_gpu"] * m["gpus"] * m["embedding_size"] * 4
    assert features == m["features_mb"] * 2**20  # exactly 1 MiB


def test_lfr_tpr_is_the_baseline_rows_of_tables_6_to_9():
    tables = {"deepglint_light": ("table6", "Table 6.", "DeepGlint-Light track"),
              "deepglint_large": ("table7", "Table 7.", "DeepGlint-Large track"),
              "iqiyi_light": ("table8", "Table 8.", "IQIYI-Light track"),
              "iqiyi_large": ("table9", "Table 9.", "IQIYI-Large track")}
    expected = {}
    for name, (key, caption, track) in tables.items():
        text = _excerpt("001_lfr_paper.txt", key)
        assert caption in text and track in text, key
        rows = _tsv(text)
        fprs = [float(c) for c in rows["Participants"]]
        expected[name] = dict(zip(fprs, map(float, rows["baseline"])))
        assert len(expected[name]) == len(rows["baseline"]) == len(fprs)
    assert reference.LFR_TPR == expected


def test_lfr_pairs_are_table_2_and_the_set_sizes_of_section_2():
    rows = _tsv(_excerpt("001_lfr_paper.txt", "table2"))
    assert rows["Dataset"] == ["# Positive", "# Negative"]
    pos_img, neg_img = (int(c.replace(",", "")) for c in rows["DeepGlint-Image"])
    pos_vid, neg_vid = (int(c.replace(",", "")) for c in rows["IQIYI-Video"])
    text = _excerpt("001_lfr_paper.txt", "test_sets")
    images, ids_img = re.search(r"There are (\S+) images from (\S+) identities\.", text).groups()
    distractors = re.search(r"There are (\S+) face images from Flickr\.", text).group(1)
    videos, ids_vid = re.search(r"includes (\S+) videos of (\S+) identities\.", text).groups()
    assert reference.LFR_PAIRS == {
        "deepglint_image": {"positive": pos_img, "negative": neg_img,
                            "identities": int(_si(ids_img)), "images": int(_si(images)),
                            "distractors": int(_si(distractors))},
        "iqiyi_video": {"positive": pos_vid, "negative": neg_vid,
                        "identities": int(_si(ids_vid)), "videos": int(_si(videos))}}


def test_lfr_backbones_are_the_readme_baselines_and_tables_3_4():
    readme = _excerpt("002_lfr_readme.txt", "baseline")
    found = {net: (flops, float(tar_img), float(tar_vid)) for net, flops, tar_img, tar_vid in
             re.findall(r"Network (\w+)\([^)]*\): (\S+) FLOPs\. TAR_image: ([\d.]+), "
                        r"TAR_video: ([\d.]+)", readme)}
    assert set(found) == {"y2", "r100fc"}
    cost = r"computational complexity is (\S+) FLOPs and the model size is ([\d.]+)MB\."
    table3 = _excerpt("001_lfr_paper.txt", "table3")
    mnet_flops, mnet_mb = re.search(cost, table3).groups()
    rows = _tsv(table3)
    fc = next(cells for cells in rows.values() if cells[0] == "FC")
    mnet_dim = int(fc[rows["Input"].index("c")])
    table4 = _excerpt("001_lfr_paper.txt", "table4")
    assert "(3, 13, 40, 5)" in table4 and "ResNet124" in table4
    r124_flops, r124_mb = re.search(cost, table4).groups()
    # not in the seeds: insightface recognition/ArcFace/sample_config.py, network.y2.emb_size
    y2_embedding = 256
    assert "sample_config.py" in reference.SOURCES["LFR_BACKBONES"]
    expected = {
        "y2": {"flops": float(_si(found["y2"][0])), "tar_image": found["y2"][1],
               "tar_video": found["y2"][2], "embedding_size": y2_embedding},
        "r100": {"flops": float(_si(found["r100fc"][0])), "tar_image": found["r100fc"][1],
                 "tar_video": found["r100fc"][2]},
        "mnet_lfr": {"flops": float(_si(mnet_flops)), "size_mb": float(mnet_mb),
                     "embedding_size": mnet_dim},
        "r124": {"flops": float(_si(r124_flops)), "size_mb": float(r124_mb)}}
    assert {name: {k: v for k, v in row.items() if k != "source"}
            for name, row in reference.LFR_BACKBONES.items()} == expected
    # each row's "source" names the seed its numbers were checked against above
    assert {name: row["source"][:3] for name, row in reference.LFR_BACKBONES.items()} == {
        "y2": "002", "r100": "002", "mnet_lfr": "001", "r124": "001"}


def test_the_readme_metric_fprs_are_in_the_paper_tables():
    text = _excerpt("002_lfr_readme.txt", "evaluation")
    image, video = re.search(r"TAR under FAR@e-(\d+) while we choose the TAR under "
                             r"FAR@e-(\d+) for video", text).groups()
    assert (image, video) == ("8", "4")  # what LFR_BACKBONES' tar_image / tar_video mean
    assert all(10.0 ** -int(image) in reference.LFR_TPR[t] for t in ("deepglint_light",
                                                                      "deepglint_large"))
    assert all(10.0 ** -int(video) in reference.LFR_TPR[t] for t in ("iqiyi_light",
                                                                      "iqiyi_large"))


# --- SOURCES, and the tables that are not in the seeds ---------------------------------------


def test_sources_name_every_table_and_say_which_come_from_the_seeds():
    tables = set(reference.__all__) - {"SOURCES"}
    assert set(reference.SOURCES) == tables
    assert all(isinstance(getattr(reference, t), dict) for t in tables)
    from_seeds = {t for t, src in reference.SOURCES.items() if "Not in the seeds" not in src}
    assert from_seeds == set(SEED_TABLES)  # every seed-derived table is checked above
    for table, prefix in SEED_TABLES.items():
        assert f"seed {prefix}" in reference.SOURCES[table], table
    for table in tables - from_seeds:  # a paper with its table and year, or a named file
        assert len(reference.SOURCES[table]) > 60, table
    seeds_with_excerpts = {_excerpt_file(p.name)[0][:3] for p in EXCERPTS.glob("*.txt")}
    named = set(re.findall(r"seed (\d{3})", " ".join(reference.SOURCES[t] for t in from_seeds)))
    assert named <= seeds_with_excerpts  # the seeds a table is quoted from have excerpts here


def test_arcface_ablation_is_table_2_of_the_cvpr_paper_and_consistent():
    source = reference.SOURCES["ARCFACE_ABLATION"]
    assert "CVPR 2019" in source and "Table 2" in source
    table = reference.ARCFACE_ABLATION
    assert set(table) == {"normface", "sphereface", "cosface", "arcface", "cm1", "cm2",
                          "softmax", "triplet"}
    for name, row in table.items():
        assert set(row) == {"lfw", "cfp_fp", "agedb_30"}, name
        assert all(50 < v <= 100 and round(v, 2) == v for v in row.values()), name
    for metric in ("lfw", "cfp_fp", "agedb_30"):
        # the paper's words: ArcFace "achieves the highest verification accuracy on all three
        # test sets"; "Triplet-loss outperforms Norm-Softmax loss"
        assert max(table, key=lambda n, m=metric: table[n][m]) == "arcface", metric
        assert table["triplet"][metric] > table["normface"][metric], metric


def test_subcenter_table_is_tpami_table_3_and_consistent():
    source = reference.SOURCES["SUBCENTER_TABLE"]
    assert "TPAMI" in source and "Table 3" in source and "ECCV 2020" in source
    t = reference.SUBCENTER_TABLE
    assert set(t) == {"clean, K=1", "noisy, K=1", "noisy, K=3", "noisy, K=10",
                      "noisy, K=3, drop, K=1"}
    assert all(0 < v < 100 and round(v, 2) == v for v in t.values())
    # the paper's observations: sub-centers are more robust to noise, too many hurt, dropping
    # and retraining gets close to (below) the clean set
    assert t["noisy, K=10"] < t["noisy, K=1"] < t["noisy, K=3"] < t["noisy, K=3, drop, K=1"]
    assert t["noisy, K=3, drop, K=1"] < t["clean, K=1"]


def test_partial_fc_public_is_consistent():
    assert "speed_benchmark.md" in reference.SOURCES["PARTIAL_FC_PUBLIC"]
    p = reference.PARTIAL_FC_PUBLIC
    assert set(p) == {"setup", "model_parallel", "partial_fc"}
    assert p["setup"]["gpus"] == 8 and p["setup"]["identities"] == 3_000_000
    mp, pfc = p["model_parallel"], p["partial_fc"]
    assert (mp["sample_rate"], pfc["sample_rate"]) == (1.0, 0.1)
    for run in (mp, pfc):
        lo, hi = run["memory_mib_per_gpu"]
        assert 0 < lo <= hi < 32 * 1024  # a 32 GB V100
    assert max(pfc["memory_mib_per_gpu"]) < min(mp["memory_mib_per_gpu"])
    assert round(pfc["samples_per_s"] / mp["samples_per_s"], 1) == 2.3  # as the docstring says


def test_retinaface_priors_port_is_consistent():
    assert "biubug6/Pytorch_Retinaface" in reference.SOURCES["RETINAFACE_PRIORS_PORT"]
    p = reference.RETINAFACE_PRIORS_PORT
    assert len(p["min_sizes"]) == len(p["steps"])
    assert p["priors_640"] == sum(math.ceil(640 / s) ** 2 * len(m)
                                  for m, s in zip(p["min_sizes"], p["steps"]))
    assert 0 < p["match_iou"] < 1 and p["neg_pos_ratio"] > 1
    assert set(p["loss_weights"]) == {"loc", "cls", "landmarks"}
