"""Trained backbones out of arclab: the bare ``model.pt`` that arcface_torch's tools read, and
ONNX for deployment.

- :func:`save_backbone` writes a backbone's state dict, float32 and contiguous on the CPU, with
  arcface_torch's names (``arclab.train`` writes ``model.pt`` beside ``checkpoint.pt`` when a
  run finishes; insightface's ``eval_ijbc.py`` and ``torch2onnx.py`` read it as it is);
- :func:`load_backbone` rebuilds the backbone from a ``model.pt`` (name and sizes given) or an
  arclab ``checkpoint.pt`` (its stored config gives them), reading either as untrusted;
- :func:`export_onnx` writes ONNX with a dynamic batch axis (input ``(N, 3, H, W)`` float32 in
  [-1, 1] as :func:`arclab.models.embed_images` feeds it, output ``(N, D)`` unnormalised
  embeddings); :func:`onnx_max_difference` runs it with onnxruntime against torch.

Command line (the ``export`` extra: ``pip install 'arclab[export]'``)::

    python -m arclab.models.export runs/r18/checkpoint.pt --out r18.onnx
    python -m arclab.models.export model.pt --backbone r50 --input-size 112 --out r50.onnx

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from arclab.atomic import atomic_path
from arclab.models.registry import MODEL_NAMES, get_model
from arclab.models.weights import load_backbone_weights

__all__ = ["export_onnx", "load_backbone", "main", "onnx_max_difference", "save_backbone"]


def save_backbone(model: nn.Module, path: str | Path) -> Path:
    """Write ``model``'s state dict to ``path`` atomically: float32, contiguous, on the CPU,
    without the ``module.`` prefix DistributedDataParallel adds. Returns the path.

    Raises:
        ValueError: ``model`` not an ``nn.Module``, or a weight that is NaN or inf (a diverged
            run must not leave a ``model.pt`` that embeds nothing).

    Example:
        >>> import tempfile
        >>> net = get_model("mbf", embedding_size=8, input_size=32)
        >>> p = save_backbone(net, Path(tempfile.mkdtemp()) / "model.pt")
        >>> torch.load(p, weights_only=True).keys() == net.state_dict().keys()
        True
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    model = getattr(model, "module", model)  # DDP
    state = {}
    for name, value in model.state_dict().items():
        value = value.detach().to("cpu")
        if value.is_floating_point():
            value = value.float()
            if not torch.isfinite(value).all():
                raise ValueError(f"model weight {name!r} holds NaN or inf values; "
                                 f"not writing {str(path)!r}")
        state[name] = value.contiguous()
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def _checkpoint_config(source: Path) -> dict | None:
    """The config stored in an arclab checkpoint, or None for a bare state dict."""
    try:
        data = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # a hostile file may raise anything while being parsed
        raise ValueError(f"source {str(source)!r} could not be read as a weights-only torch "
                         f"file: {err}") from err
    if isinstance(data, Mapping) and isinstance(data.get("config"), Mapping):
        return dict(data["config"])
    return None


def load_backbone(source: str | Path, *, backbone: str | None = None,
                  embedding_size: int | None = None,
                  input_size: int | None = None) -> tuple[nn.Module, int]:
    """The backbone in ``source`` in eval mode, and its input size in pixels.

    ``source`` is an arclab ``checkpoint.pt`` (its config names the backbone and sizes; the
    arguments, if given, must agree) or a bare ``model.pt`` state dict, which needs
    ``backbone``; ``embedding_size`` defaults to 512 and ``input_size`` to 112 there
    (arcface_torch's). The file is read with ``torch.load(weights_only=True)`` and loaded
    strictly (:func:`arclab.models.load_backbone_weights`).

    Raises:
        ValueError: an unreadable file; a bare state dict without ``backbone``; an unknown
            backbone; arguments that contradict the checkpoint's config; weights that do not
            fit (names, shapes) or are not finite.
    """
    source = Path(source)
    if not source.is_file():
        raise ValueError(f"source {str(source)!r} is not a file")
    config = _checkpoint_config(source)
    given = {"backbone": backbone, "embedding_size": embedding_size, "input_size": input_size}
    if config is not None:
        clash = {k: (v, config.get(k)) for k, v in given.items()
                 if v is not None and v != config.get(k)}
        if clash:
            raise ValueError(f"arguments contradict the checkpoint's config "
                             f"(given, stored): {clash}")
        given = {k: config.get(k) for k in given}
    elif backbone is None:
        raise ValueError(f"backbone is required for a bare state dict ({str(source)!r} holds "
                         f"no arclab config); one of {sorted(MODEL_NAMES)}")
    if given["backbone"] not in MODEL_NAMES:
        raise ValueError(f"backbone must be one of {sorted(MODEL_NAMES)}, "
                         f"got {given['backbone']!r}")
    size = int(given["input_size"] or 112)
    model = get_model(given["backbone"], embedding_size=int(given["embedding_size"] or 512),
                      input_size=size)
    load_backbone_weights(model, source)
    return model.eval(), size


def export_onnx(model: nn.Module, path: str | Path, *, input_size: int,
                opset: int = 18) -> Path:
    """Write ``model`` (eval mode, float32, CPU) as ONNX to ``path`` with a dynamic batch axis:
    input "input" ``(N, 3, input_size, input_size)``, output "embedding" ``(N, D)``. Needs the
    ``export`` extra (onnx, onnxscript). Returns the path.

    Raises:
        ValueError: ``model`` not an ``nn.Module``, ``input_size`` not an int >= 16.
        ImportError: onnx or onnxscript missing (the message names the extra).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16:
        raise ValueError(f"input_size must be an int >= 16 (pixels), got {input_size!r}")
    try:
        import onnx  # noqa: F401  (optional: the export extra)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError("ONNX export needs the export extra: pip install "
                          "'arclab[export]' (onnx, onnxscript, onnxruntime)") from err
    model = getattr(model, "module", model).float().cpu().eval()
    example = torch.zeros(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1)
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                    input_names=["input"], output_names=["embedding"],
                                    dynamic_shapes=({0: batch},), external_data=False)
        program.save(str(tmp))
    return path


def onnx_max_difference(path: str | Path, model: nn.Module, images: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime's output for ``images`` (N, 3, H, W)
    and ``model``'s (float32, CPU). Needs onnxruntime (the ``export`` extra).

    Raises:
        ValueError: ``images`` not a 4-D float tensor with 3 channels.
        ImportError: onnxruntime missing.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
            or not images.is_floating_point():
        raise ValueError(f"images must be a float (N, 3, H, W) tensor, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("checking ONNX needs onnxruntime: pip install 'arclab[export]'"
                          ) from err
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = images.detach().float().cpu()
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        want = getattr(model, "module", model).float().cpu().eval()(x)
    return float((got - want).abs().max())


def main(argv: list[str] | None = None) -> int:
    """``python -m arclab.models.export SOURCE --out FILE.onnx``: returns the exit status
    (0 written and checked, 2 a bad argument or file, named in one line on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m arclab.models.export",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a model.pt (bare backbone state dict) or checkpoint.pt")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    parser.add_argument("--backbone", default=None, help=f"one of {', '.join(MODEL_NAMES)}")
    parser.add_argument("--embedding-size", type=int, default=None, help="default 512")
    parser.add_argument("--input-size", type=int, default=None, help="pixels, default 112")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    args = parser.parse_args(argv)
    try:
        model, size = load_backbone(args.source, backbone=args.backbone,
                                    embedding_size=args.embedding_size, input_size=args.input_size)
        path = export_onnx(model, args.out, input_size=size, opset=args.opset)
        diff = onnx_max_difference(path, model, torch.rand(4, 3, size, size) * 2 - 1)
    except (ValueError, ImportError, OSError) as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    print(f"wrote {path} (input (N, 3, {size}, {size}); onnxruntime vs torch on 4 random "
          f"images: max |difference| {diff:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
