"""Knowledge distillation from a large face model into a light one, as the challenge's
winning light-track entries did (seed 001, "NothingLC" of MSRA).

Their recipe: train a large teacher; copy its last margin inner-product layer (the classifier
W) into the student and keep it fixed; train the student from scratch with the margin loss plus
an L2 loss between the teacher's and the student's embedding features. The seed gives the L2
term's weight as 0 in the first epoch, then 1, then 100; it does not say whether the features
are normalised first. Here they are: with a fixed, normalised W the margin loss only sees the
student's feature *direction*, so the term is on directions too,

    L_feat = mean_i || f_s,i / |f_s,i|  −  f_t,i / |f_t,i| ||²  =  mean_i (2 − 2 cos(f_s,i, f_t,i)),

which lies in [0, 4] and needs no scale matching between the two networks. The weight is a
constant (``distill.weight`` in a run spec, :mod:`arclab.train.spec`), not the seed's
three-stage schedule.

Taught in: notebooks/09_lightweight_challenge.ipynb
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["feature_distillation_loss", "teacher_head_weight"]


def feature_distillation_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """Mean squared distance between the L2-normalised student and teacher features.

    Args:
        student: (N, D) student embeddings (gradients flow into them).
        teacher: (N, D) teacher embeddings (treated as constants: detached here).

    Returns:
        A scalar in [0, 4]: mean over rows of ||ŝ − t̂||² = 2 − 2 cos(s, t).

    Raises:
        ValueError: shapes differ or are not (N, D) with N ≥ 1; a zero or non-finite row.

    Example:
        >>> s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> t = torch.tensor([[0.0, 3.0], [0.0, 1.0]])
        >>> feature_distillation_loss(s, t)  # (2 + 0) / 2
        tensor(1.)
    """
    if student.ndim != 2 or student.shape != teacher.shape or student.shape[0] < 1:
        raise ValueError(f"student and teacher must both be (N, D) with N >= 1, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    for name, x in (("student", student), ("teacher", teacher)):
        norms = torch.linalg.vector_norm(x.detach().float(), dim=1)
        if not (torch.isfinite(norms).all() and (norms > 0).all()):
            raise ValueError(f"{name} features must be finite and nonzero in every row")
    dtype = torch.promote_types(student.dtype, torch.float32)  # fp32 at least, float64 kept
    s = F.normalize(student.to(dtype), dim=1)
    t = F.normalize(teacher.detach().to(dtype), dim=1)
    return (s - t).pow(2).sum(1).mean()


def teacher_head_weight(head_state: dict, head: nn.Module) -> Tensor:
    """The teacher's classifier weight, checked to fit ``head`` (the student's): same shape
    (classes × sub-centers, D).

    Raises:
        ValueError: ``head_state`` is not a mapping with a ``weight`` tensor of the student's
            shape (the message names both shapes), or that weight is not finite.
    """
    if not isinstance(head_state, Mapping) or "weight" not in head_state:
        raise ValueError("head_state has no 'weight': the teacher's head is not a cosine "
                         "classifier to copy (a softmax or triplet teacher has none)")
    w = head_state["weight"]
    if not isinstance(w, Tensor) or tuple(w.shape) != tuple(head.weight.shape):
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"the teacher's classifier is {shape}, the student's "
                         f"{tuple(head.weight.shape)}: copy_head needs the same classes and "
                         "embedding size (head_state does not fit head)")
    if not torch.isfinite(w).all():
        raise ValueError("head_state['weight'] (the teacher's classifier) is not finite")
    return w.detach().clone()
