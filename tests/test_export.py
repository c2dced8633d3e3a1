"""model.pt at the end of training, and ONNX export checked against torch with onnxruntime."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from arclab.models import get_model, load_backbone_weights
from arclab.models.export import (
    export_onnx,
    load_backbone,
    main,
    onnx_max_difference,
    save_backbone,
)
from arclab.train.__main__ import main as train_main

SPEC = {"train": {"backbone": "mbf", "embedding_size": 16, "input_size": 16, "batch_size": 8,
                  "epochs": 1, "s": 16.0, "lr": 0.05, "checkpoint_every": 2},
        "data": {"source": "synthfaces", "n_identities": 6, "n_per_identity": 4},
        "validation": {}}


def _last_bn(model: torch.nn.Module) -> torch.nn.BatchNorm1d:
    """The embedding's BatchNorm1d (the last layer of every backbone here)."""
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)][-1]


def _unit_scale(model: torch.nn.Module, input_size: int) -> torch.nn.Module:
    """Random BN statistics (eval mode must use them) and a final scale that brings the
    untrained net's embeddings to O(1), as a trained one's are, so 1e-4 is a real tolerance."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    model.eval()
    with torch.no_grad():
        big = model(torch.rand(4, 3, input_size, input_size) * 2 - 1).abs().max()
        _last_bn(model).weight.div_(big)
        _last_bn(model).bias.div_(big)
    return model


def test_a_finished_run_leaves_model_pt_with_the_checkpoints_backbone(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("ARCLAB_CACHE", str(tmp_path / "cache"))
    path, run = tmp_path / "spec.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(SPEC))
    args = [str(path), "--out", str(run), "--device", "cpu", "--no-progress"]
    assert train_main([*args, "--max-steps", "1"]) == 0
    assert not (run / "model.pt").exists()  # an unfinished run has no final backbone
    assert train_main(args) == 0
    state = torch.load(run / "model.pt", weights_only=True)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3 and state.keys() == ckpt["model"].keys()
    assert all(torch.equal(state[k], ckpt["model"][k]) for k in state)
    assert not any(k.startswith("module.") for k in state)
    # arcface_torch's tools build the backbone and load model.pt strictly: so do we
    net = load_backbone_weights(get_model("mbf", embedding_size=16, input_size=16),
                                run / "model.pt")
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in net.state_dict().items())
    # the checkpoint's config names the backbone and sizes, model.pt needs them given
    from_ckpt, size = load_backbone(run / "checkpoint.pt")
    assert size == 16 and all(torch.equal(v, state[k])
                              for k, v in from_ckpt.state_dict().items())
    with pytest.raises(ValueError, match="backbone is required"):
        load_backbone(run / "model.pt")
    with pytest.raises(ValueError, match="contradict the checkpoint's config"):
        load_backbone(run / "checkpoint.pt", backbone="r18")
    with pytest.raises(ValueError, match="do not fit"):  # default embedding size 512
        load_backbone(run / "model.pt", backbone="mbf", input_size=16)


@pytest.mark.parametrize("backbone", ["r18", "mbf"])
def test_onnx_export_matches_torch_on_another_batch_size(backbone, tmp_path):
    pytest.importorskip("onnxruntime")
    model = _unit_scale(get_model(backbone, embedding_size=64, input_size=32), 32)
    path = export_onnx(model, tmp_path / f"{backbone}.onnx", input_size=32)
    images = torch.rand(5, 3, 32, 32) * 2 - 1  # exported with a batch of 2: the axis is dynamic
    with torch.no_grad():
        scale = model(images).abs().max().item()
    assert 0.1 < scale < 10  # embeddings of the size a trained model gives
    assert onnx_max_difference(path, model, images) <= 1e-4
    # the check is not vacuous: a model with one changed weight is far from the file
    other = _unit_scale(get_model(backbone, embedding_size=64, input_size=32), 32)
    with torch.no_grad():
        _last_bn(other).bias.add_(0.01)
    assert onnx_max_difference(path, other, images) >= 0.009


def test_export_cli_writes_and_checks_and_refuses_in_one_line(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = _unit_scale(get_model("mbf", embedding_size=32, input_size=32), 32)
    save_backbone(model, tmp_path / "model.pt")
    out = tmp_path / "mbf.onnx"
    code = main([str(tmp_path / "model.pt"), "--backbone", "mbf", "--embedding-size", "32",
                 "--input-size", "32", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0 and out.is_file() and "max |difference|" in printed.out, printed.err
    assert onnx_max_difference(out, model, torch.rand(3, 3, 32, 32) * 2 - 1) <= 1e-4
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"features.weight": Payload()}, tmp_path / "bad.pt")
    for argv, pattern in (([str(tmp_path / "bad.pt"), "--backbone", "mbf"], "weights-only"),
                          ([str(tmp_path / "none.pt"), "--backbone", "mbf"], "is not a file"),
                          ([str(tmp_path / "model.pt"), "--backbone", "r999"], "backbone must")):
        assert main([*argv, "--out", str(tmp_path / "x.onnx")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and pattern in err[0], err
    assert not marker.exists() and not (tmp_path / "x.onnx").exists()


def test_save_backbone_refuses_non_finite_weights_and_strips_ddp(tmp_path):
    model = get_model("mbf", embedding_size=8, input_size=16)

    class Wrapped(torch.nn.Module):  # what DistributedDataParallel's .module looks like
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    state = torch.load(save_backbone(Wrapped(model), tmp_path / "m.pt"), weights_only=True)
    assert state.keys() == model.state_dict().keys()
    with torch.no_grad():
        _last_bn(model).weight[0] = float("nan")
    with pytest.raises(ValueError, match=r"'features\..*weight' holds NaN"):
        save_backbone(model, tmp_path / "nan.pt")
    assert not (tmp_path / "nan.pt").exists()
    with pytest.raises(ValueError, match="model must be an nn.Module"):
        save_backbone({"a": torch.ones(1)}, tmp_path / "d.pt")
    with pytest.raises(ValueError, match="input_size must be an int >= 16"):
        export_onnx(model, tmp_path / "x.onnx", input_size=8)
