"""Documented errors of the sharded-FC helpers (sizing, layout, checkpoint, optimizer), the
detection modules other than the model and its post-processing, and the atomic writer: each
public function raises what its docstring's ``Raises:`` section says."""

from __future__ import annotations

import numpy as np
import torch
from documented_raises import sweep_tests

from arclab import atomic
from arclab.data.params import SynthConfig
from arclab.detection import (
    ablation,
    coding,
    dataset,
    deform,
    dense,
    fit,
    loss,
    matching,
    metrics,
    priors,
)
from arclab.parallel import checkpoint, layout, optim, sizing

MODULES = [sizing, layout, checkpoint, optim, coding, dataset, deform, dense, fit, ablation,
           loss, matching, metrics, priors, atomic]

NO_ERRORS = {  # public functions and classes with no error to document, and why
    "arclab.parallel.layout.seed_of": "hashes the decimal text of its arguments",
    "arclab.parallel.checkpoint.fc_state": "gathers a built ShardedMarginFC's own rows",
    "arclab.detection.coding.encode_boxes": "tensor arithmetic, shapes from match",
    "arclab.detection.coding.decode_boxes": "tensor arithmetic, shapes from the model",
    "arclab.detection.coding.encode_landmarks": "tensor arithmetic, shapes from match",
    "arclab.detection.coding.decode_landmarks": "tensor arithmetic, shapes from the model",
    "arclab.detection.dataset.scene_targets": "reads one scene of a checked scene_set",
    "arclab.detection.dataset.flip_targets": "mirrors scene_targets' tensors",
    "arclab.detection.deform.DeformConv2d": "torchvision's module; deform_conv2d checks",
    "arclab.detection.matching.point_form": "tensor arithmetic on priors",
    "arclab.detection.metrics.voc_ap": "arithmetic on a PR curve",
    "arclab.detection.metrics.match_detections": "reshapes any boxes to (-1, 4)",
    "arclab.detection.fit.config_key": "hashes a checked DetectorConfig",
    "arclab.detection.fit.build_detector": "builds from a checked DetectorConfig",
    "arclab.detection.fit.train_detector": "trains (not run here; a non-finite loss raises "
                                           "FloatingPointError, documented on _train_step)",
    "arclab.detection.fit.evaluate_detector": "runs a model over a checked scene_set",
    "arclab.detection.ablation.run_rows": "trains rows of checked configs (not run here)",
    "arclab.detection.ablation.summarise_rows": "averages run_rows' results",
    "arclab.detection.ablation.runs_json": "copies run_rows' results into plain types",
    "arclab.atomic.temp_name": "formats a file name",
    "arclab.atomic.atomic_path": "a context manager; the OS's errors pass through",
}

BOX = torch.tensor([[0.1, 0.1, 0.5, 0.5]])
DETS = [np.array([[0, 0, 10, 10, 0.9]])]
GT = [np.array([[0, 0, 10, 10]])]


def _fc_free_state():
    return {"weight": torch.zeros(2, 2)}


def _loss(**kw):
    p = 4
    args = dict(cls_logits=torch.zeros(1, p, 2), box_deltas=torch.zeros(1, p, 4),
                landmark_deltas=torch.zeros(1, p, 10),
                targets=[{"boxes": BOX, "landmarks": torch.zeros(1, 5, 2),
                          "landmark_valid": torch.ones(1, dtype=torch.bool)}],
                priors=torch.rand(p, 4))
    args.update(kw)
    return loss.multitask_loss(**args)


# (function, exception, message pattern, call): each call must raise exactly that
CASES = [
    # parallel/sizing
    (sizing.measured_vs_model, ValueError, r"sample_rate must be a number in \(0, 1\]",
     lambda t: sizing.measured_vs_model({1: [{"classes": 4, "weight": 0, "momentum": 0,
                                              "global_batch": 2,
                                              "modes": [{"sample_rate": 0.0}]}]}, 4, 4)),
    (sizing.memory_table, ValueError, "num_classes must be >= the world size",
     lambda t: sizing.memory_table([4], [8], [1.0])),
    (sizing.ranks_needed, ValueError, "device_bytes must be a number > 0",
     lambda t: sizing.ranks_needed(1000, 8, 0)),
    (sizing.ranks_needed, ValueError, "max_world_size must be a positive integer",
     lambda t: sizing.ranks_needed(1000, 8, 1e9, max_world_size=0)),
    # parallel/layout
    (layout.positive_int, ValueError, "batch must be a positive integer, got True",
     lambda t: layout.positive_int("batch", True)),
    (layout.check_sample_rate, ValueError, r"sample_rate must be a number in \(0, 1\]",
     lambda t: layout.check_sample_rate(1.5)),
    (layout.class_range, ValueError, r"rank must be in \[0, 2\)",
     lambda t: layout.class_range(4, 2, 2)),
    (layout.fc_memory, ValueError, "dtype must be a floating-point torch.dtype",
     lambda t: layout.fc_memory(4, 8, dtype=torch.int64)),
    (layout.init_weight, ValueError, r"stop must be >= start \(5\)",
     lambda t: layout.init_weight(5, 3, 4)),
    (layout.init_weight, ValueError, "std must be a finite number >= 0",
     lambda t: layout.init_weight(0, 3, 4, std=-1.0)),
    # parallel/checkpoint, parallel/optim
    (checkpoint.load_fc_state, ValueError, "state must be a dict with keys 'weight'",
     lambda t: checkpoint.load_fc_state(None, None, _fc_free_state())),
    (optim.RowSGD, ValueError, "lr must be a number > 0",
     lambda t: optim.RowSGD([torch.zeros(2, requires_grad=True)], lr=0.0)),
    # detection/dataset, deform, dense
    (dataset.scene_set, ValueError, "n_scenes must be a positive integer",
     lambda t: dataset.scene_set(SynthConfig(), 0, directory=t)),
    (deform.deform_conv2d, ValueError, "x, offset and weight must be 4-D",
     lambda t: deform.deform_conv2d(torch.zeros(3, 4, 4), torch.zeros(1, 18, 2, 2),
                                    torch.zeros(1, 3, 3, 3))),
    (dense.decode_dense, ValueError, r"raw must be \(F, ",
     lambda t: dense.decode_dense(torch.zeros(2, 1))),
    (dense.render_dense, ValueError, r"raw must be \(F, ",
     lambda t: dense.render_dense(torch.zeros(2, 1))),
    (dense.pixel_loss, ValueError, r"raw must be \(F, ",
     lambda t: dense.pixel_loss(torch.zeros(1, 1), torch.zeros(1, 3, 8, 8),
                                torch.tensor([[0.0, 0.0, 4.0, 4.0]]), torch.zeros(1))),
    # detection/fit (the checks only: nothing is trained)
    (fit.DetectorConfig, ValueError, "backbone must be 'mobilenet0.25' or 'resnet50'",
     lambda t: fit.DetectorConfig(backbone="vgg")),
    (ablation.compare_rows, ValueError, "rows 'x' and 'y' must be in results",
     lambda t: ablation.compare_rows({"x": {}}, "x", "y", "hard")),
    (ablation.roundoff_rows, ValueError, "n must be an integer >= 1, got True",
     lambda t: ablation.roundoff_rows({}, True)),
    (ablation.spread, ValueError, "runs must be two or more without NaN",
     lambda t: ablation.spread([{"map": 0.1}, {"map": float("nan")}], ("map",))),
    # detection/loss, matching, priors
    (loss.multitask_loss, ValueError, "recipe must be one of",
     lambda t: _loss(recipe="ssd")),
    (loss.multitask_loss, ValueError, r"targets must have one dict per image \(1\)",
     lambda t: _loss(targets=[])),
    (matching.match, ValueError, r"neg_iou \(0.5\) must be <= pos_iou \(0.35\)",
     lambda t: matching.match(BOX, torch.zeros(1, 5, 2), torch.ones(1, dtype=torch.bool),
                              torch.rand(4, 4), pos_iou=0.35, neg_iou=0.5)),
    (matching.hard_negatives, ValueError, "ratio must be a positive integer, got True",
     lambda t: matching.hard_negatives(torch.zeros(1, 4), torch.zeros(1, 4), True)),
    (priors.resolve_prior_config, ValueError, "config must be one of",
     lambda t: priors.resolve_prior_config("ssd")),
    (priors.priors_per_level, ValueError, r"image_size must be \(height, width\)",
     lambda t: priors.priors_per_level((640,))),
    (priors.priors, ValueError, "config must be a dict with 'min_sizes'",
     lambda t: priors.priors((64, 64), {"steps": (8,)})),
    # detection/metrics
    (metrics.precision_recall, ValueError, "subset 'hard' has no faces",
     lambda t: metrics.precision_recall(DETS, [np.zeros((0, 4))], [np.zeros(0, int)])),
    (metrics.precision_recall, ValueError, "subset must be one of",
     lambda t: metrics.precision_recall(DETS, GT, [[0]], subset="tiny")),
    (metrics.average_precision, ValueError, r"detections \(1\), ground_truth \(2\)",
     lambda t: metrics.average_precision(DETS, GT * 2, [[0], [0]])),
    (metrics.ap_iou_sweep, ValueError, "detections must be",
     lambda t: metrics.ap_iou_sweep([np.zeros((1, 4))], GT)),
    (metrics.ap_resamples, ValueError, r"counts must be \(R, 1\)",
     lambda t: metrics.ap_resamples(DETS, GT, [[0]], np.ones((2, 3), int))),
    (metrics.landmark_nme, ValueError, "boxes must have positive width and height",
     lambda t: metrics.landmark_nme(np.zeros((1, 5, 2)), np.zeros((1, 5, 2)),
                                    np.array([[0, 0, 0, 10]]))),
    # atomic
    (atomic.remove_stale_temps, ValueError, "max_age_s must be a number > 0",
     lambda t: atomic.remove_stale_temps(t / "x", max_age_s=0)),
]

(test_documented_errors_are_raised, test_docstring_lists_exactly_the_errors_tested,
 test_every_public_function_and_class_is_covered) = sweep_tests(CASES, MODULES, NO_ERRORS)
