"""One figure style and the figure functions the notebooks call.

Every figure function takes ``ax=None`` (a new figure when absent), labels its axes with units,
titles the claim it shows and returns the ``Figure``.

Taught in: notebooks/00_tour.ipynb
"""

from arclab.book.plotting.detector import detections_on_scene, loss_terms, pr_curves, prior_boxes
from arclab.book.plotting.feature_space import (
    angle_histograms,
    decision_regions,
    features_2d,
    features_3d,
)
from arclab.book.plotting.images import image_grid
from arclab.book.plotting.intervals import paired_intervals
from arclab.book.plotting.label_noise import drop_tradeoff, subcenter_angle_histograms
from arclab.book.plotting.margin_curves import (
    decision_margins,
    gradient_curves,
    margin_panel,
    overflow_policies,
    target_logit_curves,
)
from arclab.book.plotting.roc import difficulty_curves, roc_log_fpr, tpr_against_negatives
from arclab.book.plotting.style import class_colours, use_style
from arclab.book.plotting.training import (
    angle_histogram_grid,
    convergence_curves,
    embedding_projection,
    pair_angle_histograms,
    target_angle_curves,
    training_curves,
)

__all__ = ["angle_histograms", "class_colours", "decision_margins", "decision_regions",
           "detections_on_scene", "difficulty_curves", "loss_terms", "pr_curves", "prior_boxes",
           "drop_tradeoff", "subcenter_angle_histograms",
           "features_2d", "features_3d", "gradient_curves", "image_grid", "margin_panel",
           "overflow_policies", "target_logit_curves", "use_style", "embedding_projection",
           "pair_angle_histograms", "roc_log_fpr", "tpr_against_negatives", "training_curves",
           "angle_histogram_grid", "convergence_curves", "paired_intervals", "target_angle_curves"]
