"""Angle statistics against a loop over samples and classes in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from arclab.evaluation.angles import angle_statistics


def _angle(a, b) -> float:
    c = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def test_angle_statistics_equal_a_plain_loop():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 7)
    feats = rng.normal(size=(35, 6)) + 2 * rng.normal(size=(5, 6))[labels]
    weight = rng.normal(size=(5, 6))
    centres = []
    for k in range(5):
        unit = feats[labels == k] / np.linalg.norm(feats[labels == k], axis=1, keepdims=True)
        centres.append(unit.mean(0))
    intra = np.mean([_angle(f, centres[y]) for f, y in zip(feats, labels)])
    inter = np.mean([min(_angle(centres[a], centres[b]) for b in range(5) if b != a)
                     for a in range(5)])
    w_eq = np.mean([_angle(weight[k], centres[k]) for k in range(5)])
    w_inter = np.mean([min(_angle(weight[a], weight[b]) for b in range(5) if b != a)
                       for a in range(5)])
    got = angle_statistics(feats, labels, weight=weight)
    assert got == pytest.approx({"intra": intra, "inter": inter, "w_eq": w_eq,
                                 "w_inter": w_inter}, rel=1e-9)


def test_angle_statistics_refuses_bad_input():
    with pytest.raises(ValueError, match="at least two classes"):
        angle_statistics(np.ones((3, 2)), [0, 0, 0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        angle_statistics(np.eye(3), [0, 1, 2], weight=np.eye(2))
    with pytest.raises(ValueError, match="features must be"):
        angle_statistics(np.ones((3, 2)), [0, 1])
