"""How many pairs an all-pairs protocol has: positives from the identity sizes, negatives
from the rest, with or without the distractor-distractor pairs a mask matrix removes.

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["images_for_pairs", "pair_counts"]


def pair_counts(images_per_identity, *, n_distractors: int = 0,
                distractor_pairs: bool = False) -> dict[str, int]:
    """Exact positive and negative pair counts of an all-pairs protocol.

    Positives: Σ C(n_i, 2) over identities. Negatives: every other unordered pair among the
    labelled images, plus labelled × distractor pairs, plus (only if ``distractor_pairs``)
    the C(n_distractors, 2) pairs between distractors, which carry no labels and which the
    challenge's mask matrix leaves out. Python integers: exact at any size.

    Raises:
        ValueError: images_per_identity not a non-empty 1-D list of integers >= 1;
            n_distractors not an integer >= 0.

    Example:
        >>> pair_counts([3, 2])  # 3 + 1 positives, 10 pairs in all
        {'positive': 4, 'negative': 6, 'images': 5}
        >>> pair_counts([3, 2], n_distractors=2)
        {'positive': 4, 'negative': 16, 'images': 7}
    """
    sizes = np.asarray(images_per_identity)
    if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.integer) \
            or (sizes < 1).any():
        raise ValueError("images_per_identity must be a non-empty 1-D list of integers >= 1")
    if isinstance(n_distractors, bool) or not isinstance(n_distractors, (int, np.integer)) \
            or n_distractors < 0:
        raise ValueError(f"n_distractors must be an integer >= 0, got {n_distractors!r}")
    labelled = int(sizes.sum())
    pos = sum(int(n) * (int(n) - 1) // 2 for n in sizes)
    neg = labelled * (labelled - 1) // 2 - pos + labelled * int(n_distractors)
    if distractor_pairs:
        neg += int(n_distractors) * (int(n_distractors) - 1) // 2
    return {"positive": pos, "negative": neg, "images": labelled + int(n_distractors)}


def images_for_pairs(n_pairs: int) -> float:
    """The N whose all-pairs count N(N − 1)/2 equals ``n_pairs`` (real-valued: an integer
    answer means the pairs are exactly all pairs of N images).

    Raises:
        ValueError: n_pairs not a finite number >= 0.

    Example:
        >>> images_for_pairs(10), round(images_for_pairs(11), 3)
        (5.0, 5.217)
    """
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, numbers.Real) \
            or not 0 <= n_pairs < math.inf:
        raise ValueError(f"n_pairs must be a finite number >= 0, got {n_pairs!r}")
    return (1 + math.sqrt(1 + 8 * n_pairs)) / 2
