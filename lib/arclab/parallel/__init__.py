"""Sharded FC and Partial FC over torch.distributed (gloo on CPU, nccl on GPU).

- :class:`ShardedMarginFC`: the margin loss over a class-sharded cosine classifier, exact
  against the dense single-process loss; ``sample_rate < 1`` for Partial FC.
- :class:`RowSGD`: SGD that leaves the rows Partial FC did not sample (and their momentum)
  untouched.
- :func:`class_range`, :func:`fc_memory`: which classes a rank holds; bytes per rank.
- :func:`fc_state`, :func:`load_fc_state`: checkpoints of the sharded weight and momentum that
  resume on any number of ranks (rank 0 gets the whole dense weight).
- :func:`launch`: run a function on several local ranks (for notebooks and tests).
- :mod:`arclab.parallel.collectives`: the differentiable all-gather and all-reduce.
- :mod:`arclab.parallel.measure`: per-rank memory and step times, the equality check against
  the dense loss (functions to launch on every rank).
- :mod:`arclab.parallel.sizing`: the memory model over many sizes, and beside the measurements.

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

from arclab.parallel.checkpoint import fc_state, load_fc_state
from arclab.parallel.collectives import (
    all_reduce_max,
    all_reduce_sum,
    gather_rows,
    gather_to_rank0,
    world,
)
from arclab.parallel.launch import launch
from arclab.parallel.layout import class_range, fc_memory, init_weight
from arclab.parallel.optim import RowSGD
from arclab.parallel.sharded import ShardedMarginFC

__all__ = ["RowSGD", "ShardedMarginFC", "all_reduce_max", "all_reduce_sum", "class_range",
           "fc_memory", "fc_state", "gather_rows", "gather_to_rank0", "init_weight", "launch",
           "load_fc_state", "world"]
