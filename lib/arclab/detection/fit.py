"""Train and evaluate a RetinaFace detector on SynthFaces scenes.

:func:`train_detector` runs SGD with the multitask loss of a named recipe
(:data:`arclab.detection.loss.RECIPES`) on a :func:`arclab.detection.dataset.scene_set`, with
random horizontal flips, warm-up and step decay; it is deterministic by seed (the batches of a
step and the flips are pure functions of (seed, step); bit for bit on one machine and thread
count) and resumes from its checkpoint, which is keyed by the config so that a changed setting
never resumes a stale run. Round-off alone (another thread count, or ``roundoff``'s change of
a few ulps in the initial weights) moves a run about as far as another seed does: a single
LeakyReLU unit changing sign moves the whole gradient, and SGD amplifies that within steps.
:func:`evaluate_detector` detects on a scene set and scores arclab's continuous WIDER-style AP
per difficulty, its average over IoU 0.5:0.95 (``map``) and the landmark NME of the matched faces.

Taught in: notebooks/10_retinaface.ipynb
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

import arclab
from arclab.atomic import atomic_path
from arclab.data.cache import cache_dir
from arclab.detection import metrics
from arclab.detection.dataset import flip_targets, scene_targets
from arclab.detection.dense import DENSE_PARAMS, pixel_loss
from arclab.detection.loss import RECIPES, multitask_loss
from arclab.detection.model import RetinaFace, preprocess
from arclab.detection.postprocess import detect
from arclab.detection.priors import priors

__all__ = ["ROUNDOFF", "DetectorConfig", "build_detector", "config_key", "evaluate_detector",
           "train_detector"]


@dataclass(frozen=True)
class DetectorConfig:
    """What a detector run trains: the model, the loss recipe and the SGD schedule.

    ``steps`` are optimizer steps of ``batch_size`` scenes; the learning rate warms up
    linearly over ``warmup_steps`` and drops ×0.1 at each fraction of ``milestones``.
    ``roundoff`` > 0 multiplies each initial weight of the seed by (1 + 1e-6·z), z ~ N(0, 1)
    drawn with that seed: a change at float32 round-off size (a few ulps), to measure how far
    round-off alone moves a run (:data:`ROUNDOFF`; notebook 11).

    Raises:
        ValueError: an unknown backbone, context or recipe; a count or step size out of
            range or of the wrong type (the message names the field).
    """

    backbone: str = "mobilenet0.25"   # mobilenet0.25 | resnet50
    context: str = "ssh"              # ssh | ssh_dcn (deformable conv in the context module)
    recipe: str = "paper"             # a key of arclab.detection.loss.RECIPES
    landmarks: bool = True            # False: the landmark term is left out (weight 0)
    pixel: bool = False               # the dense L_pixel term (needs a recipe weighting it)
    steps: int = 400
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_steps: int = 20
    milestones: tuple[float, ...] = (0.6, 0.85)
    flip: bool = True
    seed: int = 0
    roundoff: int = 0                 # 0: the seed's initialisation; k > 0: it perturbed (above)

    def __post_init__(self) -> None:
        if self.backbone not in ("mobilenet0.25", "resnet50"):
            raise ValueError(f"backbone must be 'mobilenet0.25' or 'resnet50', got "
                             f"{self.backbone!r}")
        if self.context not in ("ssh", "ssh_dcn"):
            raise ValueError(f"context must be 'ssh' or 'ssh_dcn', got {self.context!r}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {self.recipe!r}")
        for key in ("steps", "batch_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        for key in ("warmup_steps", "seed", "roundoff"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        if any(not 0 < f < 1 for f in self.milestones):
            raise ValueError(f"milestones must be fractions in (0, 1), got {self.milestones!r}")
        if self.pixel and not RECIPES[self.recipe]["pixel"]:
            raise ValueError(f"pixel=True needs a recipe with a pixel term; {self.recipe!r} "
                             "has none")


ROUNDOFF = 1e-6
"""Relative size of the initial-weight perturbation of ``DetectorConfig(roundoff=k)``."""

_LATER_FIELDS = {"roundoff": 0}  # fields added later: hashed only when set (old keys stay)


def config_key(cfg: DetectorConfig, data: dict) -> str:
    """A hash of the config and of the training scenes' pixels and labels (20 hex digits).

    Fields added to :class:`DetectorConfig` later enter the hash only when they differ from
    their default, so the runs cached before they existed keep their keys."""
    fields = {k: v for k, v in asdict(cfg).items()
              if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    h.update(np.ascontiguousarray(data["images"][:, ::7, ::7]).tobytes())
    for boxes in data["boxes"]:
        h.update(np.ascontiguousarray(boxes).tobytes())
    return h.hexdigest()[:20]


def build_detector(cfg: DetectorConfig) -> nn.Module:
    """The RetinaFace model of a config, initialised from ``cfg.seed`` (and perturbed by
    :data:`ROUNDOFF` with ``cfg.roundoff``)."""
    torch.manual_seed(cfg.seed)
    model = RetinaFace(cfg.backbone, context=cfg.context,
                       dense_dim=len(DENSE_PARAMS) if cfg.pixel else 0)
    if cfg.roundoff:
        gen = torch.Generator().manual_seed(cfg.roundoff)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + ROUNDOFF * torch.randn(p.shape, generator=gen))
    return model


def _best_prior_per_face(result: dict) -> tuple[Tensor, Tensor, Tensor]:
    """(image, prior, face) of the positive prior with the highest IoU for each matched face."""
    pos = result["labels"] == 1
    b, p = torch.nonzero(pos, as_tuple=True)
    face = result["matched"][b, p]
    iou = result["iou"][b, p]
    order = torch.argsort(iou, descending=True, stable=True)
    b, p, face = b[order], p[order], face[order]
    key = b * 1_000_000 + face
    _, first = np.unique(key.cpu().numpy(), return_index=True)
    first = torch.as_tensor(first, device=key.device)
    return b[first], p[first], face[first]


def _learning_rate(cfg: DetectorConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * 0.1 ** sum(step >= int(f * cfg.steps) for f in cfg.milestones)


def _batch(data: dict, cfg: DetectorConfig, step: int) -> tuple[Tensor, list[dict]]:
    """The scenes of ``step`` (an epoch-wise permutation seeded by (seed, epoch)), flipped by
    a coin seeded by (seed, step): images (B, 3, S, S) in [0, 1] and normalised targets."""
    n = len(data["images"])
    per_epoch = max(1, n // cfg.batch_size)
    epoch, k = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(
        cfg.seed * 1_000_003 + epoch))
    picks = order[(torch.arange(cfg.batch_size) + k * cfg.batch_size) % n].tolist()
    coin = torch.rand(len(picks), generator=torch.Generator().manual_seed(
        (cfg.seed * 1_000_003 + step) * 31 + 7))
    images, targets = [], []
    for i, c in zip(picks, coin.tolist()):
        img = torch.from_numpy(np.ascontiguousarray(data["images"][i])).permute(2, 0, 1)
        t = scene_targets(data, i)
        if cfg.flip and c < 0.5:
            img, t = img.flip(2), flip_targets(t)
        images.append(img.float() / 255)
        targets.append(t)
    return torch.stack(images), targets


def _resume(ckpt: Path, key: str, model: nn.Module, opt: torch.optim.Optimizer,
            dev: torch.device) -> tuple[list[float], dict[str, list[float]], int]:
    """Load ``ckpt`` into ``model`` and ``opt`` when it exists: (losses, terms, next step);
    ([], {}, 0) without one.

    Raises:
        ValueError: the checkpoint's config key is not ``key`` (another config or scene set).
    """
    if not ckpt.is_file():
        return [], {}, 0
    state = torch.load(ckpt, map_location=dev, weights_only=True)
    if state.get("key") != key:
        raise ValueError(f"{ckpt} was written by another config or scene set; use a new "
                         "out_dir")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return list(state["losses"]), dict(state["terms"]), int(state["step"])


def _save(ckpt: Path, cfg: DetectorConfig, key: str, model: nn.Module,
          opt: torch.optim.Optimizer, step: int, losses: list[float],
          terms: dict[str, list[float]]) -> None:
    """Write the checkpoint of ``step`` (steps done) atomically, creating its folder."""
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(ckpt) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "step": step, "losses": losses, "terms": terms, "key": key,
                    "config": {**asdict(cfg), "milestones": list(cfg.milestones)}}, tmp)


def _pixel_term(cfg: DetectorConfig, pred: dict, result: dict, images: Tensor,
                targets: list[dict], dev: torch.device) -> Tensor:
    """L_pixel of a batch (:func:`arclab.detection.dense.pixel_loss`) on the best positive
    prior of each matched face; stored in ``result["pixel"]`` and returned weighted by the
    recipe. ``images``: (B, 3, S, S) in [0, 1]; target boxes are normalised, so × S pixels."""
    size = images.shape[2]
    bi, pi, fi = _best_prior_per_face(result)
    boxes = torch.stack([targets[int(i)]["boxes"][int(f)] for i, f in
                         zip(bi, fi)]).to(dev) * size if len(bi) else \
        torch.zeros(0, 4, device=dev)
    result["pixel"] = pixel_loss(pred["dense"][bi, pi], images.to(dev), boxes, bi)
    return RECIPES[cfg.recipe]["pixel"] * result["pixel"]


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, cfg: DetectorConfig, data: dict,
                step: int, anchors: Tensor, dev: torch.device) -> dict:
    """One SGD step on the batch of ``step`` (:func:`_batch`) at its learning rate.

    Returns the loss terms of :func:`arclab.detection.loss.multitask_loss` (+ "pixel" with
    ``cfg.pixel``), "total" being the loss that was minimised.

    Raises:
        FloatingPointError: the loss is not finite (nothing is updated).
    """
    images, targets = _batch(data, cfg, step)
    if not cfg.landmarks:
        targets = [{**t, "landmark_valid": torch.zeros_like(t["landmark_valid"])}
                   for t in targets]
    for group in opt.param_groups:
        group["lr"] = _learning_rate(cfg, step)
    pred = model(preprocess(images.to(dev)))
    result = multitask_loss(pred["cls"], pred["box"], pred["landmarks"],
                            [{k: v.to(dev) for k, v in t.items()} for t in targets],
                            anchors, recipe=cfg.recipe)
    loss = result["total"]
    if cfg.pixel:
        loss = loss + _pixel_term(cfg, pred, result, images, targets, dev)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"detector loss became {loss.item()} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {**result, "total": loss}


def train_detector(cfg: DetectorConfig, data: dict, out_dir: str | Path | None = None, *,
                   device: str | torch.device | None = None, max_steps: int | None = None,
                   progress: bool = True) -> dict:
    """Train a RetinaFace detector on a scene set (:func:`arclab.detection.dataset.scene_set`).

    Resumes from ``out_dir/checkpoint.pt`` (default: ``$ARCLAB_CACHE/detectors/<config_key>``)
    when it exists and was written by the same config and scenes; checkpoints every 100 steps
    and at the end, atomically. ``max_steps`` stops early (an interruption, for tests).

    Returns:
        {"model" (eval mode), "losses": every step's total loss, "terms": {name: list per
        step} for the recipe's terms, "step", "out_dir", "seconds": training time of this
        call, "images_per_s"}.
    """
    size = data["images"].shape[1]
    key = config_key(cfg, data)
    out = Path(out_dir) if out_dir is not None else cache_dir() / "detectors" / key
    dev = torch.device(device) if isinstance(device, torch.device) else arclab.get_device(device)
    model = build_detector(cfg).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    anchors = priors((size, size), "port").to(dev)
    ckpt = out / "checkpoint.pt"
    losses, terms, start = _resume(ckpt, key, model, opt, dev)
    stop = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, stop), desc="training detector", unit="step", leave=False,
               disable=not progress, initial=start, total=stop)
    for step in bar:
        result = _train_step(model, opt, cfg, data, step, anchors, dev)
        losses.append(result["total"].item())
        for name, value in result.items():
            if name != "total" and isinstance(value, Tensor) and value.ndim == 0:
                terms.setdefault(name, []).append(float(value.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if (step + 1) % 100 == 0:
            _save(ckpt, cfg, key, model, opt, step + 1, losses, terms)
    bar.close()
    seconds = time.perf_counter() - t0
    _save(ckpt, cfg, key, model, opt, stop, losses, terms)
    model.eval()
    done = stop - start
    return {"model": model, "losses": losses, "terms": terms, "step": stop, "out_dir": out,
            "seconds": seconds,
            "images_per_s": done * cfg.batch_size / seconds if done else float("nan")}


@torch.no_grad()
def evaluate_detector(model: nn.Module, data: dict, *, batch_size: int = 8,
                      score_threshold: float = 0.02, nms_threshold: float = 0.4,
                      device: str | torch.device | None = None, counts=None) -> dict:
    """Detect on every scene and score it against the ground truth.

    Returns {"easy", "medium", "hard": AP at IoU 0.5 (WIDER rules: a subset's AP counts its
    faces and ignores the others), "map": AP over IoU 0.50:0.05:0.95 on all faces, "nme":
    landmark NME of the faces matched at IoU 0.5 that have visible landmarks (normalised by
    the box size, see :func:`arclab.detection.metrics.landmark_nme`), "pr": {subset: (recall,
    precision)} of the subsets that have faces, "detections": the per-scene outputs of
    :func:`arclab.detection.postprocess.detect`}; with ``counts`` (R, n_scenes) scene resamples,
    also "boot": {"easy", "medium", "hard", "map": (R,) AP per resample} (NaN: no face there;
    :func:`arclab.detection.metrics.ap_resamples`).
    """
    images = data["images"]
    dets: list[dict] = []
    for s in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size]))
        dets += detect(model, batch.permute(0, 3, 1, 2).float() / 255,
                       score_threshold=score_threshold, nms_threshold=nms_threshold,
                       device=device)
    rows = [torch.cat([d["boxes"], d["scores"][:, None]], dim=1).cpu().numpy() for d in dets]
    gt = [np.asarray(b) for b in data["boxes"]]
    difficulty = [np.asarray(d) for d in data["difficulty"]]
    ap = metrics.average_precision(rows, gt, difficulty, iou=0.5)
    result = {k: float(ap[k]) for k in ("easy", "medium", "hard")}
    result["map"] = float(metrics.ap_iou_sweep(rows, gt, difficulty))
    result["pr"] = {k: metrics.precision_recall(rows, gt, difficulty, subset=k)
                    for k in ("easy", "medium", "hard") if result[k] == result[k]}
    pred_lm, true_lm, true_boxes = [], [], []
    for d, boxes, lms, vis in zip(dets, data["boxes"], data["landmarks"],
                                  data["landmark_visible"]):
        pairs = metrics.match_detections(d["boxes"].cpu().numpy(), np.asarray(boxes), iou=0.5)
        for det_i, gt_i in pairs:
            if vis[gt_i]:
                pred_lm.append(d["landmarks"][det_i].cpu().numpy())
                true_lm.append(np.asarray(lms[gt_i]))
                true_boxes.append(np.asarray(boxes[gt_i]))
    result["nme"] = float(metrics.landmark_nme(np.stack(pred_lm), np.stack(true_lm),
                                               np.stack(true_boxes))) if pred_lm else \
        float("nan")
    result["landmark_faces"] = len(pred_lm)
    if counts is not None:
        boot = {k: metrics.ap_resamples(rows, gt, difficulty, counts, subset=k)
                for k in ("easy", "medium", "hard")}
        boot["map"] = np.mean([metrics.ap_resamples(rows, gt, difficulty, counts, iou=t)
                               for t in np.linspace(0.5, 0.95, 10)], axis=0)
        result["boot"] = boot
    return result | {"detections": dets}
