"""Every public function of the data, margin, detection, weights and all-pairs modules raises
what its docstring's ``Raises:`` section says, and nothing else for the bad input below.

One test per public function (parametrised over its documented error cases). A structural
test checks that the cases cover every name in each module's ``__all__`` and, for each
function, that the exception types raised here are exactly the ones its docstring lists.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from documented_raises import documented, ident

from arclab.data import align, cache
from arclab.data.params import SynthConfig
from arclab.detection import model as det_model
from arclab.detection import postprocess
from arclab.evaluation import all_pair_scores, allpairs
from arclab.losses import heads, margins
from arclab.models import get_model, weights

MODULES = [cache, align, margins, heads, postprocess, det_model, weights, allpairs]

NO_ERRORS = {  # public functions and classes with no error to document, and why
    "arclab.data.cache.CacheWarning": "a warning category",
    "arclab.data.cache.cache_dir": "takes no argument, reads an environment variable",
    "arclab.losses.margins.Margin": "a plain record; MarginLoss and margin_logits check it",
}

ITEMS = {"identity": np.array([0, 1]), "index": np.array([0, 0])}
X6 = np.random.default_rng(0).standard_normal((6, 4))
IDS6 = np.array([0, 0, 1, 1, 2, 2])


def _nan_state(model: torch.nn.Module) -> dict:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first].fill_(float("nan"))
    return state


def _shifting_mask():
    """A mask callable that is not a function of (i, j) alone: the row sample sees no pair,
    pass 1 keeps every pair and pass 2 none, so the passes disagree."""
    calls = []

    def mask(i, j):
        calls.append(1)
        shape = torch.broadcast_shapes(i.shape, j.shape)
        return torch.ones(shape, dtype=torch.bool) if len(calls) == 1 else torch.full(
            shape, len(calls) > 2)
    return mask


def _x64():
    return torch.randn(64, 4, generator=torch.Generator().manual_seed(0)), np.arange(64) // 4


def _half():
    return torch.tensor([[0.9, -0.2], [0.1, 0.8]], dtype=torch.float16)


# (function, exception, message pattern, call): each call must raise exactly that
CASES = [
    (cache.render_items, ValueError, "batch_size must be an integer >= 1",
     lambda t: cache.render_items(SynthConfig(), ITEMS, batch_size=0)),
    (cache.render_items, ValueError, "size must be an integer >= 16, got True",
     lambda t: cache.render_items(SynthConfig(), ITEMS, size=True)),
    (cache.cached_render, ValueError, "size must be an integer >= 16, got 8",
     lambda t: cache.cached_render(SynthConfig(), ITEMS, size=8, directory=t)),
    (cache.cached_render, OSError, "not-a-folder",
     lambda t: cache.cached_render(SynthConfig(), ITEMS, size=16,
                                   directory=_a_file(t) / "sub")),
    (cache.render_pairs, ValueError, "size must be an integer >= 16",
     lambda t: cache.render_pairs({"config": SynthConfig(), "left": ITEMS, "right": ITEMS},
                                  size=np.float64(32), directory=t)),
    (cache.render_pairs, OSError, "not-a-folder",
     lambda t: cache.render_pairs({"config": SynthConfig(), "left": ITEMS, "right": ITEMS},
                                  size=16, directory=_a_file(t) / "sub")),
    (cache.FaceDataset, ValueError, r"labels must be integers \(int64\), got 0.7 at index 0",
     lambda t: cache.FaceDataset(np.zeros((2, 4, 4, 3), np.uint8), [0.7, 1])),
    (cache.FaceDataset, ValueError, "labels must be >= 0, got -3 at index 1",
     lambda t: cache.FaceDataset(np.zeros((2, 4, 4, 3), np.uint8), [0, -3])),
    (cache.FaceDataset, ValueError, "images must be uint8",
     lambda t: cache.FaceDataset(np.zeros((2, 4, 4, 3), np.float32), [0, 1])),
    (align.template, ValueError, "size must be an integer >= 8 pixels, got True",
     lambda t: align.template(True)),
    (align.umeyama, ValueError, "coincide",
     lambda t: align.umeyama(torch.zeros(5, 2), torch.rand(5, 2))),
    (align.umeyama, ValueError, "floating-point",
     lambda t: align.umeyama(torch.zeros(5, 2, dtype=torch.int64), torch.rand(5, 2))),
    (align.apply_similarity, ValueError, r"matrix must be a \(B, 2, 3\)",
     lambda t: align.apply_similarity(torch.eye(3), torch.zeros(4, 2))),
    (align.warp_affine, ValueError, "H, W >= 2",
     lambda t: align.warp_affine(torch.rand(1, 3, 1, 1), torch.eye(2, 3)[None], (8, 8))),
    (align.warp_affine, ValueError, "size must be",
     lambda t: align.warp_affine(torch.rand(1, 3, 4, 4), torch.eye(2, 3)[None], (0, 8))),
    (align.align_faces, ValueError, "H, W >= 2",
     lambda t: align.align_faces(torch.rand(1, 3, 0, 0), torch.rand(1, 5, 2))),
    (align.align_faces, ValueError, r"landmarks must have shape \(1, 5, 2\)",
     lambda t: align.align_faces(torch.rand(1, 3, 9, 9), torch.rand(1, 4, 2))),
    (margins.safe_acos, ValueError, "cosine must be a floating-point tensor",
     lambda t: margins.safe_acos(torch.tensor([1, 0]))),
    (margins.overflow_angle, ValueError, "m1 must be a finite number",
     lambda t: margins.overflow_angle(True)),
    (margins.overflow_angle, ValueError, "m1 must be > 0",
     lambda t: margins.overflow_angle(0.0)),
    (margins.target_logit, ValueError, "overflow must be",
     lambda t: margins.target_logit(torch.zeros(3), overflow="clip")),
    (margins.check_inputs, ValueError, "s must be a finite number > 0",
     lambda t: margins.check_inputs(torch.zeros(2, 3), torch.tensor([0, 1]), True)),
    (margins.margin_logits, ValueError, r"s = 100000 is too large for torch\.float16",
     lambda t: margins.margin_logits(_half(), torch.tensor([0, 1]), s=1e5)),
    (margins.margin_logits, ValueError, r"labels must be in \[-1, 2\)",
     lambda t: margins.margin_logits(torch.zeros(2, 2), torch.tensor([0, 2]))),
    (margins.MarginLoss, ValueError, "s must be a finite number > 0",
     lambda t: margins.MarginLoss("arcface", s=True)),
    (margins.MarginLoss, ValueError, r"s = 40000 .*float16: the loss could reach",
     lambda t: margins.MarginLoss("arcface", s=40000.0)(_half(), torch.tensor([0, 1]))),
    (heads.NormLinear, ValueError, "in_features must be a positive integer",
     lambda t: heads.NormLinear(0, 3)),
    (heads.NormLinear, ValueError, "x must be finite",
     lambda t: heads.NormLinear(2, 3)(torch.full((1, 2), float("nan")))),
    (heads.SubCenterNormLinear, ValueError, "subcenters must be a positive integer",
     lambda t: heads.SubCenterNormLinear(2, 3, subcenters=True)),
    (heads.make_head, ValueError, "preset must be one of",
     lambda t: heads.make_head("arc", 2, 3)),
    (heads.make_head, ValueError, "subcenters > 1 needs a cosine head",
     lambda t: heads.make_head("softmax", 2, 3, subcenters=2)),
    (postprocess.detect, ValueError, r"values in \[0, 1\]",
     lambda t: postprocess.detect(det_model.RetinaFace(), torch.full((1, 3, 32, 32), 2.0))),
    (postprocess.detect, ValueError, "top_k must be an integer >= 1, got True",
     lambda t: postprocess.detect(det_model.RetinaFace(), torch.rand(1, 3, 32, 32),
                                  top_k=True)),
    (postprocess.detector_costs, ValueError, "image_size must be",
     lambda t: postprocess.detector_costs(det_model.RetinaFace(), (0, 32))),
    (postprocess.time_detector, ValueError, "repeats must be an integer >= 1",
     lambda t: postprocess.time_detector(det_model.RetinaFace(), ((8, 8),), repeats=0)),
    (det_model.preprocess, ValueError, "images must be float",
     lambda t: det_model.preprocess(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))),
    (det_model.RetinaFace, ValueError, "backbone must be",
     lambda t: det_model.RetinaFace("vgg")),
    (det_model.RetinaFace, ValueError, "out_channels must be an integer >= 4",
     lambda t: det_model.RetinaFace(out_channels=True)),
    (det_model.load_port_weights, ValueError, "state dict must be finite: tensor 'body",
     lambda t: det_model.load_port_weights(det_model.RetinaFace(),
                                           _nan_state(det_model.RetinaFace()))),
    (weights.load_backbone_weights, ValueError, r"model\.pt' must be finite: tensor 'conv1",
     lambda t: weights.load_backbone_weights(get_model("r18", embedding_size=8, input_size=32),
                                             _saved(t, _nan_state(get_model(
                                                 "r18", embedding_size=8, input_size=32))))),
    (weights.load_strict, ValueError, "could not be read as a weights-only torch file",
     lambda t: weights.load_strict(torch.nn.Linear(2, 1), _a_file(t))),
    (weights.load_strict, ValueError, "state dict must be finite: tensor 'weight'",
     lambda t: weights.load_strict(torch.nn.Linear(2, 1), {
         "weight": torch.tensor([[1.0, float("inf")]]), "bias": torch.zeros(1)})),
    (allpairs.check_fprs, ValueError, r"fprs must be in \(0, 1\]",
     lambda t: allpairs.check_fprs([0.5, 0.0])),
    (allpairs.check_fprs, ValueError, "fprs must be a number or a 1-D list of numbers",
     lambda t: allpairs.check_fprs([True])),
    (allpairs.tpr_at_fpr, ValueError, r"mask must return a bool tensor broadcastable",
     lambda t: allpairs.tpr_at_fpr(X6, IDS6, 0.1, progress=False,
                                   mask=lambda i, j: torch.zeros(2, 7, 3, dtype=torch.bool))),
    (allpairs.tpr_at_fpr, ValueError, "ids must repeat at least one id",
     lambda t: allpairs.tpr_at_fpr(X6, np.arange(6), 0.1, progress=False)),
    (allpairs.tpr_at_fpr, RuntimeError, "a mask callable that depends on more than",
     lambda t: allpairs.tpr_at_fpr(*_x64(), 0.1, mask=_shifting_mask(), progress=False)),
    (allpairs.roc_curve_allpairs, ValueError, r"features must have shape \(N, D\) with N >= 2",
     lambda t: allpairs.roc_curve_allpairs(X6[:1], IDS6[:1], progress=False)),
    (allpairs.roc_curve_allpairs, ValueError, "n_points must be an integer >= 2",
     lambda t: allpairs.roc_curve_allpairs(X6, IDS6, n_points=np.float64(3))),
    (allpairs.roc_curve_allpairs, RuntimeError, "a mask callable that depends on more than",
     lambda t: allpairs.roc_curve_allpairs(*_x64(), mask=_shifting_mask(), progress=False)),
    (all_pair_scores, ValueError, r"N >= 2",
     lambda t: all_pair_scores(X6[:1])),
    (all_pair_scores, ValueError, "block_size must be a positive integer",
     lambda t: all_pair_scores(X6, block_size=True)),
]


def _a_file(folder):
    path = folder / "not-a-folder"
    path.write_bytes(b"not a torch file")
    return path


def _saved(folder, state):
    path = folder / "model.pt"
    torch.save(state, path)
    return path


_id = ident


BY_FUNCTION: dict = {}
for _case in CASES:
    BY_FUNCTION.setdefault(_case[0], []).append(_case[1:])


@pytest.mark.parametrize("function", list(BY_FUNCTION), ids=_id)
def test_documented_errors_are_raised(function, tmp_path):
    for exception, pattern, call in BY_FUNCTION[function]:
        with pytest.raises(exception, match=pattern) as info:
            call(tmp_path)
        # exactly the documented type (a RuntimeError from torch is not a ValueError)
        assert any(k.__name__ in documented(function) for k in type(info.value).__mro__), \
            f"{_id(function)} raised {type(info.value).__name__}: {info.value}"


@pytest.mark.parametrize("function", list(BY_FUNCTION), ids=_id)
def test_docstring_lists_exactly_the_errors_tested(function):
    raised = {exception.__name__ for exception, _, _ in BY_FUNCTION[function]}
    assert documented(function) == raised, _id(function)


def test_every_public_function_and_class_is_covered():
    seen = set()
    for module in MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, (types.FunctionType, type)):
                where = f"{module.__name__}.{name}"
                assert (obj in BY_FUNCTION) != (where in NO_ERRORS), where
                seen.add(obj)
    assert all_pair_scores in BY_FUNCTION  # arclab.evaluation's, defined in a private module
    assert set(BY_FUNCTION) - seen == {all_pair_scores}
