"""Documented errors of the evaluation modules other than all-pairs (paired bootstrap,
verification, pair counts, the challenge's file format and scoring, angles, the pixel
baseline): each public function raises what its docstring's ``Raises:`` section says."""

from __future__ import annotations

import numpy as np
import torch
from documented_raises import sweep_tests

from arclab.evaluation import (
    angles,
    challenge,
    counts,
    fileformat,
    paired,
    pixel_baseline,
    verification,
)

MODULES = [paired, verification, counts, fileformat, challenge, angles, pixel_baseline]

NO_ERRORS = {  # public functions and classes with no error to document, and why
    "arclab.evaluation.paired.Comparison": "a record compare_paired fills in",
    "arclab.evaluation.challenge.ci_above": "reads two entries of tpr_at_fpr's answer",
    "arclab.evaluation.challenge.tpr_rows": "formats tpr_at_fpr's answers as table rows",
    "arclab.evaluation.pixel_baseline.clean_config": "a fixed config from one seed",
}

RNG = np.random.default_rng(0)
E12 = RNG.standard_normal((12, 4))
SAME12 = np.arange(12) % 2 == 0
PCA = pixel_baseline.fit_pixel_pca(RNG.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8), 2,
                                   size=4)
IMGS = np.zeros((12, 8, 8, 3), np.uint8)


def _comparison(seeds: int) -> paired.Comparison:
    return paired.compare_paired(np.ones(seeds), np.zeros(seeds), np.ones((seeds, 4)),
                                 np.zeros((seeds, 4)))


def _features_file(folder, features=None):
    path = folder / "f.bin"
    fileformat.write_features(path, np.eye(3, 4) if features is None else features)
    return path


def _tar(**kw):
    args = dict(template_feats=np.eye(2), template_ids=[1, 2], pairs_p=[1], pairs_q=[2],
                labels=[True], fars=[0.1])
    args.update(kw)
    return verification.tar_at_far(**args)


# (function, exception, message pattern, call): each call must raise exactly that
CASES = [
    # evaluation/paired
    (paired.compare_paired, ValueError, r"b must have a's shape \(2,\)",
     lambda t: paired.compare_paired(np.ones(2), np.ones(3), np.ones((2, 4)), np.ones((2, 4)))),
    (paired.compare_paired, ValueError, r"level must be in \(0, 1\)",
     lambda t: paired.compare_paired(np.ones(2), np.ones(2), np.ones((2, 4)), np.ones((2, 4)),
                                     level=1.0)),
    (paired.predict_half_width, ValueError, "comparison must have 2 or more seeds",
     lambda t: paired.predict_half_width(_comparison(1), 3)),
    (paired.predict_half_width, ValueError, "n_seeds must be an integer >= 2",
     lambda t: paired.predict_half_width(_comparison(2), 1)),
    (paired.scale_to_resolve, ValueError, "target must be a half-width > 0",
     lambda t: paired.scale_to_resolve(_comparison(2), 0.0)),
    (paired.identity_resamples, ValueError, "n_boot must be an integer >= 2",
     lambda t: paired.identity_resamples(5, n_boot=True)),
    (paired.grouped_mean_boot, ValueError, r"groups must be \(3,\) integers in \[0, 2\)",
     lambda t: paired.grouped_mean_boot(np.ones(3), [0, 1, 2], np.ones((4, 2), int))),
    (paired.allpairs_tpr_boot, ValueError, r"fpr must be in \(0, 1\]",
     lambda t: paired.allpairs_tpr_boot(np.eye(4), [0, 0, 1, 1], 0.0)),
    (paired.allpairs_tpr_boot, ValueError, r"ids must be \(N,\) integers with N >= 2",
     lambda t: paired.allpairs_tpr_boot(np.eye(1), [0], 0.1)),
    # evaluation/verification
    (verification.verification_accuracy_10fold, ValueError, "P >= 10",
     lambda t: verification.verification_accuracy_10fold(E12[:9], E12[:9], SAME12[:9])),
    (verification.verification_accuracy_10fold, ValueError, r"issame must be \(12,\)",
     lambda t: verification.verification_accuracy_10fold(E12, E12, SAME12[:11])),
    (verification.template_features, ValueError, "weighting must be 'mean' or 'norm3'",
     lambda t: verification.template_features(E12, np.arange(12), weighting="max")),
    (verification.template_features, ValueError, "features must be finite",
     lambda t: verification.template_features(np.full((2, 2), np.nan), [0, 1])),
    (verification.tar_at_far, ValueError, "template_ids must be distinct",
     lambda t: _tar(template_ids=[1, 1])),
    (verification.tar_at_far, ValueError, r"ci must be a confidence level in \(0, 1\)",
     lambda t: _tar(ci=True)),
    # evaluation/counts
    (counts.pair_counts, ValueError, "images_per_identity must be a non-empty 1-D list",
     lambda t: counts.pair_counts([3, 0])),
    (counts.pair_counts, ValueError, "n_distractors must be an integer >= 0",
     lambda t: counts.pair_counts([3], n_distractors=-1)),
    (counts.images_for_pairs, ValueError, "n_pairs must be a finite number >= 0, got '10'",
     lambda t: counts.images_for_pairs("10")),
    # evaluation/fileformat
    (fileformat.write_features, ValueError, "features must be finite",
     lambda t: fileformat.write_features(t / "f.bin", np.array([np.inf]))),
    (fileformat.write_features, OSError, "missing",
     lambda t: fileformat.write_features(t / "missing" / "f.bin", np.ones(2))),
    (fileformat.read_features, ValueError, "must start with a 16-byte header",
     lambda t: fileformat.read_features(_a_file(t, b"short"))),
    (fileformat.read_features, OSError, "missing.bin",
     lambda t: fileformat.read_features(t / "missing.bin")),
    # evaluation/challenge
    (challenge.score_submission, ValueError, "has 3 rows; the test list has 2 items",
     lambda t: challenge.score_submission(_features_file(t), [0, 1], [0.1])),
    (challenge.score_submission, ValueError, "labels must be 1-D",
     lambda t: challenge.score_submission(_features_file(t), [[0, 1, 1]], [0.1])),
    (challenge.score_submission, OSError, "missing.bin",
     lambda t: challenge.score_submission(t / "missing.bin", [0, 1], [0.1])),
    # evaluation/angles
    (angles.class_centres, ValueError, r"features must be \(N, D\) and labels \(N,\)",
     lambda t: angles.class_centres(E12, [0, 1])),
    (angles.angle_statistics, ValueError, "labels must name at least two classes",
     lambda t: angles.angle_statistics(E12, np.zeros(12, int))),
    (angles.angle_statistics, ValueError, r"labels must lie in \[0, 1\)",
     lambda t: angles.angle_statistics(E12, SAME12.astype(int), weight=np.ones((1, 4)))),
    (angles.pair_angles, ValueError, r"features must be \(N, D\) and ids \(N,\)",
     lambda t: angles.pair_angles(E12, [0, 1])),
    (angles.listed_pair_angles, ValueError, r"left and right must be \(P, D\) and same \(P,\)",
     lambda t: angles.listed_pair_angles(E12, E12[:5], SAME12)),
    # evaluation/pixel_baseline
    (pixel_baseline.fit_pixel_pca, ValueError, "dim must be a positive integer, got True",
     lambda t: pixel_baseline.fit_pixel_pca(IMGS, True)),
    (pixel_baseline.fit_pixel_pca, ValueError, r"images must be \(N, H, W, 3\)",
     lambda t: pixel_baseline.fit_pixel_pca(IMGS[..., 0], 2)),
    (pixel_baseline.pixel_pca_embed, ValueError, r"images must be \(N, H, W, 3\)",
     lambda t: pixel_baseline.pixel_pca_embed(IMGS[0], PCA)),
    (pixel_baseline.pair_accuracy, ValueError, "P >= 10",
     lambda t: pixel_baseline.pair_accuracy(PCA, IMGS[:5], IMGS[:5], SAME12[:5])),
    (pixel_baseline.difficulty_sweep, ValueError, "knob must be one of",
     lambda t: pixel_baseline.difficulty_sweep(PCA, "pitch_deg")),
]


def _a_file(folder, data: bytes):
    path = folder / "bad.bin"
    path.write_bytes(data)
    return path


(test_documented_errors_are_raised, test_docstring_lists_exactly_the_errors_tested,
 test_every_public_function_and_class_is_covered) = sweep_tests(CASES, MODULES, NO_ERRORS)


def test_pca_embedding_keeps_working():
    assert pixel_baseline.pixel_pca_embed(IMGS[:3], PCA).shape == torch.Size([3, 2])
