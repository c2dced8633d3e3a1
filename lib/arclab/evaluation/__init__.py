"""Face-verification evaluation: exact all-pairs TPR@FPR, LFW 10-fold, templates, file format.

- :mod:`~arclab.evaluation.allpairs`: TPR at FPR over every pair of a feature set, exactly, in
  memory that does not grow with the number of pairs (the lightweight challenge's protocol);
- :mod:`~arclab.evaluation.verification`: LFW-style 10-fold accuracy, template/video
  aggregation and IJB-style TAR@FAR over a pair list;
- :mod:`~arclab.evaluation.fileformat`: the challenge's binary feature files;
- :mod:`~arclab.evaluation.ijb` and :mod:`~arclab.evaluation.ijb_layout`: IJB-B/C 1:1
  template verification from insightface's ``eval_ijbc.py`` layout;
- :mod:`~arclab.evaluation.challenge`: scoring a submitted file as the organisers do, and
  the paper's TPR-at-FPR tables;
- :mod:`~arclab.evaluation.counts`: how many pairs an all-pairs protocol has;
- :mod:`~arclab.evaluation.paired`: A − B over paired seeds with an interval for seed and
  test-set noise and a verdict, identity-level resamples of a test set, and the scale that
  would resolve a comparison (every ablation);
- :mod:`~arclab.evaluation.resampled_tpr`: the all-pairs TPR at FPR on identity resamples
  from the genuine pairs and the top impostors only (every ablation's TPR intervals);
- :mod:`~arclab.evaluation.angles`: angle statistics of an embedding (the ArcFace paper's
  angle table, notebook 05);
- :mod:`~arclab.evaluation.pixel_baseline`: raw pixels + PCA, the matcher that calibrates how
  hard a SynthFaces protocol is (notebook 03).

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

from arclab.evaluation._tiles import all_pair_scores
from arclab.evaluation.allpairs import DEFAULT_BINS, roc_curve_allpairs, tpr_at_fpr
from arclab.evaluation.challenge import ci_above, score_submission, tpr_rows
from arclab.evaluation.fileformat import read_features, write_features
from arclab.evaluation.ijb import IJB_FARS, ijb_embed, ijb_template_features, ijb_verification
from arclab.evaluation.ijb_layout import IJBCrops, IJBSet, read_ijb
from arclab.evaluation.paired import (
    Comparison,
    allpairs_tpr_boot,
    compare_paired,
    grouped_mean_boot,
    identity_resamples,
    predict_half_width,
    scale_to_resolve,
)
from arclab.evaluation.verification import (
    tar_at_far,
    template_features,
    verification_accuracy_10fold,
)

__all__ = [
    "DEFAULT_BINS",
    "IJB_FARS",
    "Comparison",
    "IJBCrops",
    "IJBSet",
    "all_pair_scores",
    "allpairs_tpr_boot",
    "ci_above",
    "compare_paired",
    "grouped_mean_boot",
    "identity_resamples",
    "ijb_embed",
    "ijb_template_features",
    "ijb_verification",
    "predict_half_width",
    "read_features",
    "read_ijb",
    "roc_curve_allpairs",
    "scale_to_resolve",
    "score_submission",
    "tar_at_far",
    "template_features",
    "tpr_at_fpr",
    "tpr_rows",
    "verification_accuracy_10fold",
    "write_features",
]
