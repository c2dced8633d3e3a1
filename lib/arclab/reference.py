"""Published numbers: they live here and nowhere else; notebooks put them beside their own.

Each table names its true source in :data:`SOURCES` (paper, table, year; or seed file and
slide/section), so a notebook can print it beside the numbers. Some tables come from the seed
documents in ``../shared/seeds/`` (000 ArcFace/RetinaFace slides, 001 the lightweight face
recognition challenge paper, 002 its README, 003 the ArcFace TPAMI abstract, 004 the ArcFace
CVPR and RetinaFace abstracts); ``tests/test_reference.py`` checks those against excerpts of
the seeds kept in ``tests/data/seeds/``. The others (``ARCFACE_ABLATION``, ``SUBCENTER_TABLE``,
``PARTIAL_FC_PUBLIC``, ``RETINAFACE_PRIORS_PORT``) are *not in the seeds*: their
:data:`SOURCES` entry names the paper table or file they were copied from.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

__all__ = ["ARCFACE_ABLATION", "LFR_BACKBONES", "LFR_PAIRS", "LFR_TPR", "PARTIAL_FC_PUBLIC",
           "RETINAFACE_ABLATION", "RETINAFACE_PRIORS_PORT", "RETINAFACE_SPEED_MS",
           "SLIDES_FC_MEMORY", "SOURCES", "SUBCENTER_TABLE"]

ARCFACE_ABLATION: dict[str, dict[str, float]] = {
    # ArcFace (Deng, Guo, Xue, Zafeiriou), CVPR 2019, Table 2 "Verification results (%) of
    # different loss functions ([CASIA, ResNet50, loss*])": CASIA-WebFace, ResNet50; LFW /
    # CFP-FP / AgeDB-30 accuracy in %. NOT in the seeds (seed 004 is only the abstract). The
    # same rows, same numbers, are Table 2 of the TPAMI version (arXiv:1801.07698v4).
    "normface": {"lfw": 98.56, "cfp_fp": 89.79, "agedb_30": 88.72},  # "Norm-Softmax (NS)", s=64
    "sphereface": {"lfw": 99.11, "cfp_fp": 94.38, "agedb_30": 91.70},  # "SphereFace (1.35)"
    "cosface": {"lfw": 99.51, "cfp_fp": 95.44, "agedb_30": 94.56},  # "CosFace (0.35)"
    "arcface": {"lfw": 99.53, "cfp_fp": 95.56, "agedb_30": 95.15},  # "ArcFace (0.5)"
    "cm1": {"lfw": 99.48, "cfp_fp": 95.12, "agedb_30": 94.38},  # "CM1 (1, 0.3, 0.2)"
    "cm2": {"lfw": 99.50, "cfp_fp": 95.24, "agedb_30": 94.86},  # "CM2 (0.9, 0.4, 0.15)"
    "softmax": {"lfw": 99.08, "cfp_fp": 94.39, "agedb_30": 92.33},  # "Softmax"
    "triplet": {"lfw": 98.98, "cfp_fp": 91.90, "agedb_30": 89.98},  # "Triplet (0.35)", margin 0.35
}
"""ArcFace, CVPR 2019, Table 2 (CASIA-WebFace, ResNet50): LFW / CFP-FP / AgeDB-30 accuracy in %.

Rows: Norm-Softmax (s = 64), SphereFace (m1 = 1.35), CosFace (m3 = 0.35), ArcFace (m2 = 0.5),
CM1 (1, 0.3, 0.2), CM2 (0.9, 0.4, 0.15), Softmax, Triplet (margin 0.35). Not in the seeds."""


SUBCENTER_TABLE: dict[str, float] = {
    # ArcFace TPAMI version (Deng, Guo, Yang, Xue, Kotsia, Zafeiriou; IEEE TPAMI, accepted 2021;
    # arXiv:1801.07698v4), Table 3 "Ablation experiments of different settings of the proposed
    # sub-center ArcFace", IJB-C column: ResNet50, TAR at FAR = 1e-4 in %; "noisy" is MS1MV0
    # (raw web faces), "clean" MS1MV3. The ablation first appeared in Sub-center ArcFace
    # (Deng et al., ECCV 2020); that paper's table number is not checked here. NOT in the seeds:
    # seed 003 is the TPAMI abstract only (no K values, no threshold, no TAR).
    "clean, K=1": 96.50,  # row (14) MS1MV3, K=1
    "noisy, K=1": 90.27,  # row (1) MS1MV0, K=1
    "noisy, K=3": 93.72,  # row (2) MS1MV0, K=3
    "noisy, K=10": 67.94,  # row (5) MS1MV0, K=10
    "noisy, K=3, drop, K=1": 95.92,  # row (7) MS1MV0, K = 3 -> 1, drop > 75 deg
}
"""Sub-center ArcFace, ArcFace TPAMI Table 3 (IJB-C column): TAR@FAR=1e-4 (%) of ResNet50
trained on MS1MV0 (noisy) with K sub-centers, after dropping samples > 75° from the dominant
sub-center and retraining K = 1, and on the clean MS1MV3. Not in the seeds."""


LFR_BACKBONES: dict[str, dict[str, float | str]] = {
    # challenge README (seed 002, "Baseline"): the baselines, FLOPs as the challenge counts them,
    # at 112x112. y2's embedding_size (256) is not in the seeds: it is insightface's
    # recognition/ArcFace/sample_config.py (network.y2: fmobilefacenet, emb_size 256).
    "y2": {"source": "002 baseline (light track)", "flops": 933e6,
           "tar_image": 0.64691, "tar_video": 0.47191, "embedding_size": 256},
    "r100": {"source": "002 baseline r100fc (large track)", "flops": 24e9,
             "tar_image": 0.80312, "tar_video": 0.64894},
    # challenge paper (seed 001, section 4): Table 3 light MobileNet (FC 256; "1.0G FLOPs",
    # "19.80MB" in the sentence after it), Table 4 ResNet124 ("29.70G FLOPs", "297MB")
    "mnet_lfr": {"source": "001 Table 3 light MobileNet", "flops": 1.0e9, "size_mb": 19.80,
                 "embedding_size": 256},
    "r124": {"source": "001 Table 4 ResNet124", "flops": 29.70e9, "size_mb": 297.0},
}
"""Published cost of the challenge's backbones (FLOPs in the challenge convention, fp32 MB)
and the baselines' TAR (image: @FAR 1e-8; video: @FAR 1e-4): seed 002 "Baseline" (y2, r100)
and seed 001 Tables 3-4 (mnet_lfr, r124)."""


LFR_PAIRS: dict[str, dict[str, int]] = {
    # challenge paper (seed 001) Table 2 (pairs) and sections 2.2-2.3 / Table 1 (set sizes, as
    # the paper rounds them: "274K images from 5.7K identities", "1.58M" distractors,
    # "200K videos of 10K identities")
    "deepglint_image": {"positive": 11_039_533, "negative": 330_145_575_217,
                        "identities": 5_700, "images": 274_000, "distractors": 1_580_000},
    "iqiyi_video": {"positive": 1_550_033, "negative": 14_561_114_695,
                    "identities": 10_000, "videos": 200_000},
}
"""Seed 001 (challenge paper) Table 2's pair counts and the set sizes its sections 2.2-2.3 give."""

LFR_TPR: dict[str, dict[float, float]] = {
    # challenge paper (seed 001, section 6.1) Tables 6-9, the "baseline" rows: TPR at each FPR
    "deepglint_light": dict(zip([1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2,
                                 1e-1], [0.5000, 0.6442, 0.7670, 0.8402, 0.8953, 0.9375, 0.9664,
                                         0.9835, 0.9923, 0.9966, 0.9990])),
    "deepglint_large": dict(zip([1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2,
                                 1e-1], [0.5592, 0.7336, 0.8958, 0.9337, 0.9614, 0.9788, 0.9885,
                                         0.9934, 0.9958, 0.9974, 0.9989])),
    "iqiyi_light": dict(zip([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
                            [0.0221, 0.2923, 0.4803, 0.6417, 0.7962, 0.9261])),
    "iqiyi_large": dict(zip([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
                            [0.0200, 0.4774, 0.6700, 0.7895, 0.8863, 0.9551])),
}
"""Baseline rows of the challenge paper's (seed 001) Tables 6 (DeepGlint-Light), 7
(DeepGlint-Large), 8 (iQIYI-Light) and 9 (iQIYI-Large): TPR at FPR."""


PARTIAL_FC_PUBLIC: dict[str, dict[str, object]] = {
    # deepinsight/insightface, recognition/arcface_torch/docs/speed_benchmark.md ("Test Training
    # Speed"): 3 million synthetic identities, ResNet-50, mixed precision, batch size 1024,
    # 8 x Tesla V100-SXM2-32GB, torch.distributed on one node (NCCL). NOT in the seeds.
    "setup": {"gpus": 8, "gpu": "Tesla V100-SXM2-32GB", "identities": 3_000_000,
              "backbone": "r50", "batch_size": 1024, "fp16": True, "embedding_size": 512},
    # training.log "Speed ... samples/sec" at steps 100-300; gpustat "MB" (MiB) on GPUs 0-7
    "model_parallel": {"sample_rate": 1.0, "samples_per_s": 2270.0,
                       "memory_mib_per_gpu": [28860, 30338]},
    "partial_fc": {"sample_rate": 0.1, "samples_per_s": 5300.0,
                   "memory_mib_per_gpu": [10328, 10488]},
}
"""The public Partial FC speed test (arcface_torch's docs/speed_benchmark.md, 8 x V100 32 GB,
3M synthetic identities, ResNet-50, fp16, batch 1024): model parallel about 2,270 samples/s at
about 29 GB per GPU (28,860-30,338 MiB by gpustat) against Partial FC (r = 0.1) about 5,300
samples/s at about 10.4 GB (10,328-10,488 MiB). Whole training steps (backbone included), so
the FC's own speed-up is larger than the 2.3x they show. The embedding size (512) is
arcface_torch's default, not stated on that page. Not in the seeds."""


RETINAFACE_ABLATION: dict[str, dict[str, float]] = {
    # ArcFace/RetinaFace slides (seed 000), slide "Ablation Study on Multitask Loss": WIDER
    # FACE val, AP in % on the easy / medium / hard subsets at IoU 0.5, and mAP over IoU
    # 0.5:0.95 (the slide's "mAP [33]").
    "fpn_context": {"easy": 95.532, "medium": 95.134, "hard": 90.714, "map": 50.842},
    "dcn": {"easy": 96.349, "medium": 95.833, "hard": 91.286, "map": 51.522},
    "dcn_pts": {"easy": 96.467, "medium": 96.075, "hard": 91.694, "map": 52.297},
    "dcn_pixel": {"easy": 96.413, "medium": 95.864, "hard": 91.276, "map": 51.492},
    "dcn_pts_pixel": {"easy": 96.942, "medium": 96.175, "hard": 91.857, "map": 52.318},
}
"""Seed 000 (slides), "Ablation Study on Multitask Loss": WIDER FACE val, AP % at IoU 0.5 per
subset, and mAP % at IoU 0.5:0.95. Rows: FPN+Context, +DCN, +L_pts, +L_pixel, +L_pts+L_pixel;
every row after the first includes the deformable context module."""

RETINAFACE_SPEED_MS: dict[str, dict[str, float | None]] = {
    # ArcFace/RetinaFace slides (seed 000), the speed table on the slide "Ablation Study on
    # Multitask Loss": inference time in ms at VGA 640x480, HD 1920x1080 and
    # 4K 4096x2160. GPU NVIDIA Tesla P40; CPU Intel i7-6700K (multi-thread, and one thread);
    # ARM RK3399 (A72 x 2). "-" on the slide is None here.
    "resnet152_gpu": {"vga": 75.1, "hd": 443.2, "4k": 1742.0},
    "mobilenet0.25_gpu": {"vga": 1.4, "hd": 6.1, "4k": 25.6},
    "mobilenet0.25_cpu_multi": {"vga": 5.5, "hd": 50.3, "4k": None},
    "mobilenet0.25_cpu_1": {"vga": 17.2, "hd": 130.4, "4k": None},
    "mobilenet0.25_arm": {"vga": 61.2, "hd": 434.3, "4k": None},
}
"""Seed 000 (slides): the RetinaFace speed table in ms per image (GPU Tesla P40, CPU i7-6700K
multi-thread and single-thread, ARM RK3399); VGA 640x480, HD 1920x1080, 4K 4096x2160."""

RETINAFACE_PRIORS_PORT: dict[str, object] = {
    # the popular PyTorch port, biubug6/Pytorch_Retinaface: data/config.py (cfg_mnet/cfg_re50:
    # min_sizes, steps, variance, loc_weight 2.0) and train.py (MultiBoxLoss(num_classes, 0.35,
    # True, 0, True, 7, 0.35, False): match IoU 0.35, negatives 7:1); priors_640 follows from
    # min_sizes and steps. NOT in the seeds.
    "min_sizes": ((16, 32), (64, 128), (256, 512)), "steps": (8, 16, 32),
    "variances": (0.1, 0.2), "match_iou": 0.35, "neg_pos_ratio": 7,
    "loss_weights": {"loc": 2.0, "cls": 1.0, "landmarks": 1.0}, "priors_640": 16_800,
}
"""The popular PyTorch port's (biubug6/Pytorch_Retinaface) prior and loss settings: 16,800
priors at 640x640. Not in the seeds."""


SLIDES_FC_MEMORY: dict[str, int] = {
    # ArcFace/RetinaFace slides (seed 000), the first slide "ArcFace is Efficient": "Size of
    # Aggregated Feature (x) : 64 x 8 x 512 x 4 = 1MB"; "Size of Class Center (W) :
    # 512 x 1M x 4 = 2GB in total and 2GB/8 = 256MB on each GPU"; "Size of Similarity Score
    # (x^T W) : 512 x 1M x 4 = 2GB in total and 2GB/8 = 256MB on each GPU" (the gradients dW
    # and dScore have the same sizes there). In the similarity-score line 512 is the global
    # batch, 64 x 8, which happens to equal the embedding size.
    "weight_total_gb": 2, "weight_per_gpu_mb": 256, "logits_per_gpu_mb": 256, "features_mb": 1,
    "embedding_size": 512, "identities": 1_000_000, "gpus": 8, "batch_per_gpu": 64,
}
"""Seed 000 (slides), "ArcFace is Efficient": the model-parallel FC's memory with 1M identities,
512-d embeddings, fp32 (4 bytes), 8 GPUs and 64 images per GPU: the class centres W are
2 GB in all and 256 MB per GPU, the logits (similarity scores) 256 MB per GPU, the all-gathered
features 1 MB (64 x 8 x 512 x 4 bytes = 1 MiB). The slide's GB and MB are rounded: 512 x 1M x 4
bytes is 2.048e9 bytes, and 1/8 of it 256e6 bytes."""


SOURCES: dict[str, str] = {
    "ARCFACE_ABLATION": (
        "ArcFace: Additive Angular Margin Loss for Deep Face Recognition (Deng, Guo, Xue, "
        "Zafeiriou), CVPR 2019, Table 2 (CASIA-WebFace, ResNet50; LFW / CFP-FP / AgeDB-30 "
        "accuracy %). Not in the seeds (seed 004 has only the abstract)."),
    "SUBCENTER_TABLE": (
        "ArcFace TPAMI version (Deng, Guo, Yang, Xue, Kotsia, Zafeiriou; IEEE TPAMI, accepted "
        "2021; arXiv:1801.07698v4), Table 3, IJB-C TAR@FAR=1e-4 %, rows (1), (2), (5), (7), "
        "(14); the sub-center ablation first appeared in Sub-center ArcFace (Deng et al., "
        "ECCV 2020), table number there not checked. Not in the seeds (seed 003 is the TPAMI "
        "abstract only)."),
    "LFR_BACKBONES": (
        "seed 002 (challenge README, insightface challenges/iccv19-lfr, 2019), section "
        "'Baseline': y2 and r100fc FLOPs and TAR; seed 001 (Lightweight Face Recognition "
        "Challenge, Deng et al., ICCV Workshops 2019), section 4, Table 3 (light MobileNet, "
        "1.0G FLOPs, 19.80 MB, 256-d) and Table 4 (ResNet124, 29.70G FLOPs, 297 MB). y2's "
        "embedding size is from insightface recognition/ArcFace/sample_config.py."),
    "LFR_PAIRS": (
        "seed 001 (Lightweight Face Recognition Challenge, Deng et al., ICCV Workshops 2019), "
        "Table 2 (pair counts) and sections 2.2-2.3 (set sizes)."),
    "LFR_TPR": (
        "seed 001 (Lightweight Face Recognition Challenge, Deng et al., ICCV Workshops 2019), "
        "section 6.1, Tables 6-9, the 'baseline' rows."),
    "PARTIAL_FC_PUBLIC": (
        "deepinsight/insightface, recognition/arcface_torch/docs/speed_benchmark.md ('Test "
        "Training Speed': 8 x V100 32 GB, 3M synthetic identities, ResNet-50, fp16, batch "
        "1024). Not in the seeds."),
    "RETINAFACE_ABLATION": (
        "seed 000 (ArcFace/RetinaFace slides, Deng, Guo, Xue, Zafeiriou, 2019), slide "
        "'Ablation Study on Multitask Loss' (WIDER FACE val)."),
    "RETINAFACE_SPEED_MS": (
        "seed 000 (ArcFace/RetinaFace slides, Deng, Guo, Xue, Zafeiriou, 2019), the speed "
        "table on the slide 'Ablation Study on Multitask Loss' (Tesla P40, i7-6700K, RK3399)."),
    "RETINAFACE_PRIORS_PORT": (
        "biubug6/Pytorch_Retinaface, data/config.py (cfg_mnet, cfg_re50) and train.py "
        "(MultiBoxLoss arguments). Not in the seeds."),
    "SLIDES_FC_MEMORY": (
        "seed 000 (ArcFace/RetinaFace slides, Deng, Guo, Xue, Zafeiriou, 2019), the first "
        "slide 'ArcFace is Efficient'."),
}
"""Where every table above comes from: table name -> paper, table and year, or seed file and
slide/section. Tables quoted from the seeds say "seed 00N"; the others say "Not in the seeds"."""
