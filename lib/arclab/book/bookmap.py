"""The map of the book: which notebook reproduces which seed table or figure, with which
modules.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

__all__ = ["BOOK_MAP"]

BOOK_MAP: list[dict[str, str]] = [
    {"notebook": "00_tour", "reproduces": "slides: softmax vs normalised softmax (2-D toy)",
     "seed": "000", "modules": "experiments.toy, book.plotting, book.notebook, book.runner"},
    {"notebook": "01_softmax_to_arcface",
     "reproduces": "slides: feature geometry of softmax, NormFace, ArcFace", "seed": "000",
     "modules": "losses.margins, losses.heads, experiments.toy"},
    {"notebook": "02_margin_zoo",
     "reproduces": "ArcFace paper: target logit curves, decision margins", "seed": "000, 004",
     "modules": "losses.margins, losses.geometry, book.widgets"},
    {"notebook": "03_synthfaces", "reproduces": "data: SynthFaces identities, protocols",
     "seed": "-", "modules": "data, data.align, evaluation.pixel_baseline"},
    {"notebook": "04_training_a_face_model",
     "reproduces": "challenge paper Tables 3-4: FLOPs and size of the backbones",
     "seed": "001, 002", "modules": "models, train"},
    {"notebook": "05_margin_ablation",
     "reproduces": "ArcFace paper Table 2 (margin ablation)", "seed": "000, 004",
     "modules": "losses, train, evaluation, experiments.ablations"},
    {"notebook": "06_subcenter_arcface",
     "reproduces": "TPAMI Table 3 (sub-centers under label noise)", "seed": "003",
     "modules": "losses.heads, losses.subcenter, experiments.ablations"},
    {"notebook": "07_sharded_fc", "reproduces": "slides: ArcFace is efficient (model parallel)",
     "seed": "000", "modules": "parallel"},
    {"notebook": "08_trillion_pairs",
     "reproduces": "challenge Table 2 and Tables 6-9: TPR@FPR over all pairs", "seed": "001, 002",
     "modules": "evaluation"},
    {"notebook": "09_lightweight_challenge",
     "reproduces": "challenge track rules, Tables 6-9 baselines, distillation",
     "seed": "001, 002", "modules": "models, evaluation, losses.distill"},
    {"notebook": "10_retinaface", "reproduces": "slides: RetinaFace method", "seed": "000",
     "modules": "detection"},
    {"notebook": "11_retinaface_ablation", "reproduces": "slides: RetinaFace ablation table",
     "seed": "000", "modules": "detection"},
    {"notebook": "12_alignment_improves_arcface",
     "reproduces": "RetinaFace improves ArcFace (better alignment)", "seed": "000",
     "modules": "detection, data.align, experiments.pipeline"},
    {"notebook": "13_inversion", "reproduces": "TPAMI: face inversion from ArcFace",
     "seed": "003", "modules": "experiments.inversion, experiments.inversion_judge"},
    {"notebook": "14_demo", "reproduces": "slides: image/video face analysis demo",
     "seed": "000", "modules": "detection, experiments.pipeline, evaluation"},
]
"""One row per planned notebook; the tour marks which of them exist in this checkout."""
