"""Documented errors of the remaining loss modules and of the backbones: each public function
raises what its docstring's ``Raises:`` section says (see ``documented_raises.py``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from unittest import mock

import numpy as np
import torch
from documented_raises import sweep_tests
from torch import nn

from arclab.losses import distill, geometry, subcenter, triplet, variants
from arclab.losses.heads import NormLinear
from arclab.losses.margins import Margin

embed, export, flops, iresnet, mobilefacenet, mobilenet_lfr, registry, shapes = (
    importlib.import_module(f"arclab.models.{name}") for name in (  # shadowed by functions
        "embed", "export", "flops", "iresnet", "mobilefacenet", "mobilenet_lfr", "registry",
        "shapes"))

MODULES = [distill, geometry, subcenter, triplet, variants, embed, export, flops, iresnet,
           mobilefacenet, mobilenet_lfr, registry, shapes]

NO_ERRORS = {  # public functions and classes with no error to document, and why
    "arclab.models.export.main": "a command line: errors become exit status 2 and one line",
    "arclab.models.iresnet.IRBlock": "a building block; iresnet and get_model check sizes",
    "arclab.models.iresnet.IResNet": "built through iresnet and get_model, which check",
    "arclab.models.mobilefacenet.MobileFaceNet": "built through mobilefacenet and get_model",
    "arclab.models.mobilefacenet.y2": "fixed blocks; get_model checks the sizes",
    "arclab.models.mobilenet_lfr.InvertedResidual": "a building block of LFRMobileNet",
    "arclab.models.mobilenet_lfr.LFRMobileNet": "built through mnet_lfr and get_model",
    "arclab.models.mobilenet_lfr.mnet_lfr": "fixed rows; get_model checks the sizes",
    "arclab.models.shapes.downsampled_size": "plain arithmetic on one integer",
}

E2 = torch.eye(2)
MBF = dict(embedding_size=8, input_size=32)


def _without(module: str, call):
    """Run ``call`` as if ``module`` were not installed. The export extra's other packages are
    imported first: patch.dict would otherwise drop what the call imports (onnx), and onnx's
    C extension aborts the process when it is imported a second time."""
    for other in ("onnx", "onnxscript", "onnxruntime"):
        if other != module and importlib.util.find_spec(other) is not None:
            importlib.import_module(other)
    with mock.patch.dict(sys.modules, {module: None}):
        return call()


def _nan_linear() -> nn.Module:
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    return net


def _bare_state(folder):
    path = folder / "model.pt"
    torch.save(registry.get_model("mbf", **MBF).state_dict(), path)
    return path


def _batches():
    yield torch.zeros(2, 3, 4)


# (function, exception, message pattern, call): each call must raise exactly that
CASES = [
    # losses/distill
    (distill.feature_distillation_loss, ValueError, "student and teacher must both be",
     lambda t: distill.feature_distillation_loss(torch.zeros(2, 3), torch.zeros(3, 3))),
    (distill.feature_distillation_loss, ValueError, "teacher features must be finite",
     lambda t: distill.feature_distillation_loss(E2, torch.zeros(2, 2))),
    (distill.teacher_head_weight, ValueError, "head_state has no 'weight'",
     lambda t: distill.teacher_head_weight({}, NormLinear(2, 3))),
    (distill.teacher_head_weight, ValueError, r"classifier is \(2, 2\).*head_state",
     lambda t: distill.teacher_head_weight({"weight": E2}, NormLinear(2, 3))),
    (distill.teacher_head_weight, ValueError, r"head_state\['weight'\].*not finite",
     lambda t: distill.teacher_head_weight({"weight": torch.full((3, 2), float("inf"))},
                                           NormLinear(2, 3))),
    # losses/geometry
    (geometry.decision_boundary_deg, ValueError, "m1 must be > 0",
     lambda t: geometry.decision_boundary_deg(torch.tensor([30.0]), m1=0.0)),
    (geometry.angular_margin_deg, ValueError, "overflow must be",
     lambda t: geometry.angular_margin_deg(torch.tensor([30.0]), overflow="clip")),
    (geometry.target_gradient, ValueError, "gradient must be",
     lambda t: geometry.target_gradient(torch.tensor([30.0]), gradient="none")),
    (geometry.angular_margin_table, ValueError, "m2 must be a finite number",
     lambda t: geometry.angular_margin_table({"bad": Margin(1.0, float("nan"), 0.0)})),
    (geometry.max_rise, ValueError, "points must be an integer >= 2",
     lambda t: geometry.max_rise({"arc": Margin(1.0, 0.5, 0.0)}, points=1)),
    (geometry.max_rise, ValueError, "overflow must be",
     lambda t: geometry.max_rise({"arc": Margin(1.0, 0.5, 0.0)}, policies=("clip",))),
    # losses/subcenter
    (subcenter.dominant_subcenters, ValueError, r"labels must be in \[0, 1\)",
     lambda t: subcenter.dominant_subcenters(E2, [0, 1], E2, subcenters=2)),
    (subcenter.dominant_subcenters, ValueError, "subcenters must be an integer >= 1",
     lambda t: subcenter.dominant_subcenters(E2, [0, 0], E2, subcenters=0)),
    (subcenter.drop_noisy, ValueError, r"threshold_deg must be in \(0, 180\)",
     lambda t: subcenter.drop_noisy(E2, [0, 0], E2, subcenters=2, threshold_deg=180)),
    (subcenter.drop_quality, ValueError, r"dropped must have shape \(3,\)",
     lambda t: subcenter.drop_quality([True, False], [0, 1, 0])),
    (subcenter.threshold_sweep, ValueError, r"dropped must have shape \(3,\)",
     lambda t: subcenter.threshold_sweep([10.0, 80.0], [0, 1, 0], [75.0])),
    # losses/triplet
    (triplet.batch_hard_triplet_loss, ValueError, r"labels \(N,\)",
     lambda t: triplet.batch_hard_triplet_loss(E2, torch.tensor([0]))),
    (triplet.batch_hard_triplet_loss, ValueError, "margin must be a finite number >= 0",
     lambda t: triplet.batch_hard_triplet_loss(E2, torch.tensor([0, 1]), margin=-0.1)),
    (triplet.TripletLoss, ValueError, "margin must be a finite number >= 0 .*got True",
     lambda t: triplet.TripletLoss(True)),
    (triplet.TripletLoss, ValueError, "embeddings must be",
     lambda t: triplet.TripletLoss()(torch.zeros(3), torch.tensor([0, 1, 2]))),
    # losses/variants
    (variants.sphereface_psi, ValueError, "m must be an integer >= 1",
     lambda t: variants.sphereface_psi(torch.zeros(2), m=1.5)),
    (variants.sphereface_lambda, ValueError, "iteration must be an integer >= 0",
     lambda t: variants.sphereface_lambda(-1)),
    (variants.sphereface_target_logit, ValueError, "lam must be a finite number >= 0",
     lambda t: variants.sphereface_target_logit(torch.zeros(2), lam=-1.0)),
    (variants.sphereface_target_logit, ValueError, "m must be an integer >= 1",
     lambda t: variants.sphereface_target_logit(torch.zeros(2), m=0)),
    (variants.sphereface_target_logit, ValueError, "cosine must be a floating-point",
     lambda t: variants.sphereface_target_logit(torch.zeros(2, dtype=torch.int64))),
    (variants.li_arcface_logits, ValueError, r"labels must be in \[-1, 2\)",
     lambda t: variants.li_arcface_logits(torch.zeros(2, 2), torch.tensor([0, 5]))),
    (variants.li_arcface_logits, ValueError, "m must be a finite number",
     lambda t: variants.li_arcface_logits(torch.zeros(2, 2), torch.tensor([0, 1]), m=True)),
    # models/embed
    (embed.extract_embeddings, ValueError, r"loader must yield \(B, C, H, W\)",
     lambda t: embed.extract_embeddings(nn.Flatten(), _batches())),
    (embed.embed_images, ValueError, r"images must be \(N, H, W, 3\)",
     lambda t: embed.embed_images(nn.Flatten(), np.zeros((2, 4, 4), np.uint8))),
    (embed.embed_images, ValueError, "batch_size must be a positive integer, got True",
     lambda t: embed.embed_images(nn.Flatten(), np.zeros((2, 4, 4, 3), np.uint8),
                                  batch_size=True)),
    # models/export
    (export.save_backbone, ValueError, "model must be an nn.Module",
     lambda t: export.save_backbone({"weight": E2}, t / "model.pt")),
    (export.save_backbone, ValueError, "model weight 'weight' holds NaN",
     lambda t: export.save_backbone(_nan_linear(), t / "model.pt")),
    (export.load_backbone, ValueError, "source .* is not a file",
     lambda t: export.load_backbone(t / "missing.pt")),
    (export.load_backbone, ValueError, "backbone is required for a bare state dict",
     lambda t: export.load_backbone(_bare_state(t))),
    (export.load_backbone, ValueError, "backbone must be one of",
     lambda t: export.load_backbone(_bare_state(t), backbone="r999")),
    (export.export_onnx, ValueError, "input_size must be an int >= 16",
     lambda t: export.export_onnx(nn.Flatten(), t / "m.onnx", input_size=8)),
    (export.export_onnx, ImportError, r"export extra: pip install 'arclab\[export\]'",
     lambda t: _without("onnxscript", lambda: export.export_onnx(
         nn.Flatten(), t / "m.onnx", input_size=16))),
    (export.onnx_max_difference, ValueError, r"images must be a float \(N, 3, H, W\)",
     lambda t: export.onnx_max_difference(t / "m.onnx", nn.Flatten(), torch.zeros(1, 1, 4, 4))),
    (export.onnx_max_difference, ImportError, "needs onnxruntime",
     lambda t: _without("onnxruntime", lambda: export.onnx_max_difference(
         t / "m.onnx", nn.Flatten(), torch.zeros(1, 3, 4, 4)))),
    # models/flops
    (flops.count_flops, ValueError, r"input_size must be \(C, H, W\)",
     lambda t: flops.count_flops(nn.Flatten(), (3, 0, 4))),
    (flops.track_margins, ValueError, "convention must be",
     lambda t: flops.track_margins({}, convention="gflops")),
    (flops.track_margins, ValueError, r"counts must hold \['embedding_size'\]",
     lambda t: flops.track_margins({"flops": 1.0, "size_mb": 1.0})),
    (flops.check_track, ValueError, r"counts\['flops'\] must be a number >= 0",
     lambda t: flops.check_track({"flops": -1.0, "size_mb": 1.0, "embedding_size": 8})),
    (flops.backbone_costs, ValueError, "name must be one of",
     lambda t: flops.backbone_costs(["r999"])),
    # models/iresnet, mobilefacenet, registry
    (iresnet.iresnet, ValueError, "layers must be 4 positive integers",
     lambda t: iresnet.iresnet((2, 2, True, 2))),
    (mobilefacenet.mobilefacenet, ValueError, "blocks must be 4 positive integers",
     lambda t: mobilefacenet.mobilefacenet((1, 4, 6))),
    (registry.get_model, ValueError, "name must be one of",
     lambda t: registry.get_model("r999")),
    (registry.get_model, ValueError, "input_size must be an integer >= 16",
     lambda t: registry.get_model("mbf", input_size=8)),
    (registry.get_model, ValueError, "embedding_size must be a positive integer, got True",
     lambda t: registry.get_model("mbf", embedding_size=True)),
    (registry.get_model, ValueError, r"dropout must be a number in \[0, 1\)",
     lambda t: registry.get_model("r18", dropout="0.1")),
]

(test_documented_errors_are_raised, test_docstring_lists_exactly_the_errors_tested,
 test_every_public_function_and_class_is_covered) = sweep_tests(CASES, MODULES, NO_ERRORS)


def test_numpy_integers_are_sizes():
    net = registry.get_model("mbf", embedding_size=np.int64(8), input_size=np.int64(32))
    assert tuple(net.eval()(torch.zeros(1, 3, 32, 32)).shape) == (1, 8)
    assert variants.sphereface_lambda(np.int64(0)) == 1000.0
