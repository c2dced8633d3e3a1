"""Numbers the seeds report: published numbers live here and nowhere else; notebooks put
them beside their own. Seeds are the files in ``../shared/seeds/`` (000 ArcFace/RetinaFace
slides, 001 the lightweight-recognition challenge paper, 002 its README, 003 the
ArcFace/sub-center TPAMI abstract, 004 the ArcFace CVPR abstract).

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

__all__ = ["ARCFACE_ABLATION", "LFR_BACKBONES", "LFR_PAIRS", "LFR_TPR", "PARTIAL_FC_PUBLIC",
           "RETINAFACE_ABLATION", "RETINAFACE_PRIORS_PORT", "RETINAFACE_SPEED_MS",
           "SUBCENTER_TABLE"]

ARCFACE_ABLATION: dict[str, dict[str, float]] = {
    # ArcFace paper, margin ablation: CASIA-WebFace, ResNet50; verification accuracy in %.
    "normface": {"lfw": 98.56, "cfp_fp": 89.79, "agedb_30": 88.72},
    "sphereface": {"lfw": 99.11, "cfp_fp": 94.38, "agedb_30": 91.70},
    "cosface": {"lfw": 99.51, "cfp_fp": 95.44, "agedb_30": 94.56},
    "arcface": {"lfw": 99.53, "cfp_fp": 95.56, "agedb_30": 95.15},
    "cm1": {"lfw": 99.48, "cfp_fp": 95.12, "agedb_30": 94.38},
    "cm2": {"lfw": 99.50, "cfp_fp": 95.24, "agedb_30": 94.86},
}
"""ArcFace paper margin ablation (CASIA, ResNet50): LFW / CFP-FP / AgeDB-30 accuracy in %."""


SUBCENTER_TABLE: dict[str, float] = {
    # TPAMI sub-center ArcFace (seed 003, DESIGN.md): ResNet50, IJB-C TAR at FAR = 1e-4 in %;
    # "noisy" is MS1MV0 (raw web faces), "clean" MS1MV3.
    "clean, K=1": 96.50,
    "noisy, K=1": 90.27,
    "noisy, K=3": 93.72,
    "noisy, K=10": 67.94,
    "noisy, K=3, drop, K=1": 95.92,
}
"""Sub-center ArcFace (TPAMI): IJB-C TAR@FAR=1e-4 (%) of ResNet50 trained on MS1MV0 (noisy)
with K sub-centers, after dropping samples > 75° from the dominant sub-center and retraining
K = 1, and on the clean MS1MV3."""


LFR_BACKBONES: dict[str, dict[str, float | str]] = {
    # challenge README (002): the baselines, FLOPs as the challenge counts them, at 112x112
    "y2": {"source": "002 baseline (light track)", "flops": 933e6,
           "tar_image": 0.64691, "tar_video": 0.47191, "embedding_size": 256},
    "r100": {"source": "002 baseline r100fc (large track)", "flops": 24e9,
             "tar_image": 0.80312, "tar_video": 0.64894},
    # challenge paper (001): Table 3 light MobileNet, Table 4 ResNet124
    "mnet_lfr": {"source": "001 Table 3 light MobileNet", "flops": 1.0e9, "size_mb": 19.80,
                 "embedding_size": 256},
    "r124": {"source": "001 Table 4 ResNet124", "flops": 29.70e9, "size_mb": 297.0},
}
"""Published cost of the challenge's backbones (FLOPs in the challenge convention, fp32 MB)
and the baselines' TAR (image: @FAR 1e-8; video: @FAR 1e-4)."""


LFR_PAIRS: dict[str, dict[str, int]] = {
    # challenge paper (001) Table 2 (pairs) and Table 1 / section 2 (set sizes, rounded)
    "deepglint_image": {"positive": 11_039_533, "negative": 330_145_575_217,
                        "identities": 5_700, "images": 274_000, "distractors": 1_580_000},
    "iqiyi_video": {"positive": 1_550_033, "negative": 14_561_114_695,
                    "identities": 10_000, "videos": 200_000},
}
"""Table 2's pair counts and the set sizes the paper gives for them."""

LFR_TPR: dict[str, dict[float, float]] = {
    # challenge paper (001) Tables 6-9, the "baseline" rows: TPR at each FPR
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
"""Baseline rows of the challenge paper's Tables 6 (DeepGlint-Light), 7 (DeepGlint-Large),
8 (iQIYI-Light) and 9 (iQIYI-Large): TPR at FPR."""


PARTIAL_FC_PUBLIC: dict[str, dict[str, object]] = {
    # deepinsight/insightface, recognition/arcface_torch/docs/speed_benchmark.md ("Test Training
    # Speed"): 3 million synthetic identities, ResNet-50, mixed precision, batch size 1024,
    # 8 x Tesla V100-SXM2-32GB, torch.distributed on one node (NCCL).
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
arcface_torch's default, not stated on that page."""


RETINAFACE_ABLATION: dict[str, dict[str, float]] = {
    # RetinaFace slides (seed 000), "Ablation Study on Multitask Loss": WIDER FACE val,
    # AP in % on the easy / medium / hard subsets at IoU 0.5, and mAP over IoU 0.5:0.95.
    "fpn_context": {"easy": 95.532, "medium": 95.134, "hard": 90.714, "map": 50.842},
    "dcn": {"easy": 96.349, "medium": 95.833, "hard": 91.286, "map": 51.522},
    "dcn_pts": {"easy": 96.467, "medium": 96.075, "hard": 91.694, "map": 52.297},
    "dcn_pixel": {"easy": 96.413, "medium": 95.864, "hard": 91.276, "map": 51.492},
    "dcn_pts_pixel": {"easy": 96.942, "medium": 96.175, "hard": 91.857, "map": 52.318},
}
"""The slides' multitask-loss ablation (WIDER FACE val, AP % at IoU 0.5 per subset, and mAP %
at IoU 0.5:0.95). Rows: FPN+Context, +DCN, +L_pts, +L_pixel, +L_pts+L_pixel; every row after
the first includes the deformable context module."""

RETINAFACE_SPEED_MS: dict[str, dict[str, float | None]] = {
    # RetinaFace slides (seed 000): inference time in ms at VGA 640x480, HD 1920x1080 and
    # 4K 4096x2160. GPU NVIDIA Tesla P40; CPU Intel i7-6700K (multi-thread, and one thread);
    # ARM RK3399 (A72 x 2). "-" on the slide is None here.
    "resnet152_gpu": {"vga": 75.1, "hd": 443.2, "4k": 1742.0},
    "mobilenet0.25_gpu": {"vga": 1.4, "hd": 6.1, "4k": 25.6},
    "mobilenet0.25_cpu_multi": {"vga": 5.5, "hd": 50.3, "4k": None},
    "mobilenet0.25_cpu_1": {"vga": 17.2, "hd": 130.4, "4k": None},
    "mobilenet0.25_arm": {"vga": 61.2, "hd": 434.3, "4k": None},
}
"""The slides' RetinaFace speed table in ms per image (GPU Tesla P40, CPU i7-6700K multi-thread
and single-thread, ARM RK3399); VGA 640x480, HD 1920x1080, 4K 4096x2160."""

RETINAFACE_PRIORS_PORT: dict[str, object] = {
    # the popular PyTorch port (biubug6/Pytorch_Retinaface, data/config.py), as DESIGN.md
    # records it
    "min_sizes": ((16, 32), (64, 128), (256, 512)), "steps": (8, 16, 32),
    "variances": (0.1, 0.2), "match_iou": 0.35, "neg_pos_ratio": 7,
    "loss_weights": {"loc": 2.0, "cls": 1.0, "landmarks": 1.0}, "priors_640": 16_800,
}
"""The popular PyTorch port's prior and loss settings: 16,800 priors at 640x640."""
