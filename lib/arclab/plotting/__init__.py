"""One figure style and the figure functions the notebooks call.

Every figure function takes ``ax=None`` (a new figure when absent), labels its axes with units,
titles the claim it shows and returns the ``Figure``.

Taught in: notebooks/00_tour.ipynb
"""

from arclab.plotting.detection import detections_on_scene, loss_terms, pr_curves, prior_boxes
from arclab.plotting.evaluation import difficulty_curves, roc_log_fpr, tpr_against_negatives
from arclab.plotting.geometry import angle_histograms, decision_regions, features_2d, features_3d
from arclab.plotting.images import image_grid
from arclab.plotting.margin_curves import (
    decision_margins,
    gradient_curves,
    margin_panel,
    overflow_policies,
    target_logit_curves,
)
from arclab.plotting.style import class_colours, use_style
from arclab.plotting.subcenter import drop_tradeoff, subcenter_angle_histograms
from arclab.plotting.training import (
    angle_histogram_grid,
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
           "angle_histogram_grid", "target_angle_curves"]
