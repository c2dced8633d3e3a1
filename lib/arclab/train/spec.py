"""A training run as data: ``{train, data, validation}`` from YAML, the data sets and
validators it names, and runs cached on disk by the hash of their spec.

The spec (``python -m arclab.train SPEC.yaml`` reads the same file)::

    train:                  # TrainConfig keys (arclab.train.config)
      backbone: r18
      input_size: 32
    data:
      source: synthfaces    # synthfaces | imagefolder | recordio
      n_identities: 200     # synthfaces: identities × images each, rendered aligned
      n_per_identity: 20
      synth: {nuisance: 0.5}  # SynthConfig keys
      label_noise: {closed_rate: 0.1, open_rate: 0.2, seed: 0}   # optional, exact
      keep: [0, 1, 5, ...]  # optional: train on these items only (e.g. after drop_noisy)
      # imagefolder: {root: DIR}; recordio: {rec: FILE, idx: FILE}; both take
      # workers: N  (DataLoader processes decoding images; default min(4, CPUs); not hashed)
    validation:             # name: a SynthFaces protocol (lfw, cfp_fp, agedb) with its
      lfw: {n_identities: 100, pairs_per_fold: 60}   # arguments, or {bin: FILE.bin}
      my_lfw: {bin: data/lfw.bin}
    distill:                # optional: knowledge distillation (arclab.losses.distill)
      teacher: {train: ..., data: ...}   # a spec, trained (or reloaded) first
      # checkpoint: runs/big/checkpoint.pt  # or a checkpoint written by arclab.train
      weight: 1.0           # λ of the feature term
      copy_head: true       # start from the teacher's classifier and keep it fixed
    log: [jsonl, tensorboard]  # optional: also TensorBoard in <run>/tensorboard (not hashed)

Here: loading and checking a spec (:func:`load_spec`: every name, type, range and file,
before anything is rendered), checking a run before it starts (:func:`check_run`: the
device, the data set size, the checkpoint already in the run folder), its run folder, running
it. The data sets are built in :mod:`arclab.train.sources`, the validators in
:mod:`arclab.train.validation`.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path

import torch
import yaml

import arclab
from arclab.atomic import atomic_path
from arclab.data.cache import RENDER_VERSION, cache_dir
from arclab.data.real_sets import train_data_section
from arclab.models import get_model
from arclab.train.config import TrainConfig, load_config, weights_key
from arclab.train.loop import check_precision, train
from arclab.train.sources import LOADING_KEYS, build_dataset, check_data, data_size
from arclab.train.state import check_resume, read_checkpoint
from arclab.train.tblog import check_log
from arclab.train.validation import build_validator, check_validation

__all__ = ["check_run", "load_spec", "run_dir", "run_spec", "tutorial_spec"]

_SECTIONS = ("train", "data", "validation", "distill", "log")
_DISTILL_KEYS = {"teacher", "checkpoint", "weight", "copy_head"}


def _read_yaml(path: str | Path):
    """A YAML file's content; a syntax error becomes a one-line ValueError with its place."""
    text = Path(path).read_text()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"not valid YAML{where}: {getattr(err, 'problem', None) or err}"
                         ) from None


def _train_config(raw) -> TrainConfig:
    """``load_config`` of the train section, its errors naming ``train.<key>``."""
    try:
        return load_config(raw)
    except (TypeError, ValueError) as err:
        msg = str(err)
        known = {f.name for f in fields(TrainConfig)}
        raise ValueError(f"train.{msg}" if msg.split(" ")[0] in known else f"train: {msg}"
                         ) from None


def load_spec(source: dict | str | Path) -> dict:
    """Read and check a spec; returns {"train": TrainConfig, "data": dict, "validation": dict}.

    Every unknown key, bad type or range, unknown backbone and missing or unreadable data or
    validation file fails here, before any rendering or training, naming the key.

    Raises:
        ValueError: a YAML syntax error, or any bad key (the message names it, e.g.
            ``train.backbone must be one of [...]``).
        OSError: ``source`` is a file that cannot be read.

    Example:
        >>> s = load_spec({"train": {"input_size": 32},
        ...                "data": {"n_identities": 4, "n_per_identity": 2}})
        >>> s["train"].input_size, s["data"]["source"], s["validation"]
        (32, 'synthfaces', {})
    """
    raw = source if isinstance(source, dict) else _read_yaml(source)
    if not isinstance(raw, dict):
        raise ValueError(f"a spec must be a mapping with keys {list(_SECTIONS)}, got "
                         f"{type(raw).__name__}")
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"unknown spec sections {unknown}; valid: {list(_SECTIONS)}")
    for section in ("train", "data", "validation"):
        if raw.get(section) is not None and not isinstance(raw[section], dict):
            raise ValueError(f"{section} must be a mapping of keys, got {raw[section]!r}")
    train_cfg = _train_config(raw.get("train") or {})
    data = dict(raw.get("data") or {})
    data.setdefault("source", "synthfaces")
    check_data(data)
    validation = dict(raw.get("validation") or {})
    check_validation(validation, data)
    spec = {"train": train_cfg, "data": data, "validation": validation}
    if raw.get("distill") is not None:
        spec["distill"] = _load_distill(raw["distill"], train_cfg)
    if raw.get("log") is not None:
        spec["log"] = check_log(raw["log"])
    return spec


def _load_distill(raw, student: TrainConfig) -> dict:
    if not isinstance(raw, dict) or set(raw) - _DISTILL_KEYS:
        keys = sorted(set(raw) - _DISTILL_KEYS) if isinstance(raw, dict) else raw
        raise ValueError(f"distill must be a mapping with keys among {sorted(_DISTILL_KEYS)}; "
                         f"unknown: {keys!r}")
    if ("teacher" in raw) == ("checkpoint" in raw):
        raise ValueError("distill needs exactly one of 'teacher' (a spec) or 'checkpoint' "
                         "(a file written by arclab.train)")
    weight, copy_head = raw.get("weight", 1.0), raw.get("copy_head", False)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0 \
            or weight == float("inf"):
        raise ValueError(f"distill.weight must be a finite number >= 0, got {weight!r}")
    if not isinstance(copy_head, bool):
        raise ValueError(f"distill.copy_head must be true or false, got {copy_head!r}")
    out = {"weight": float(weight), "copy_head": copy_head}
    if "teacher" in raw:
        teacher = raw["teacher"]
        if not isinstance(teacher.get("train") if isinstance(teacher, dict) else None,
                          TrainConfig):
            if not isinstance(teacher, (dict, str)):
                raise ValueError(f"distill.teacher must be a spec (a mapping) or a spec file, "
                                 f"got {teacher!r}")
            try:
                teacher = load_spec(teacher)
            except ValueError as err:
                raise ValueError(f"distill.teacher: {err}") from None
        if teacher["train"].input_size != student.input_size:
            raise ValueError(f"distill.teacher trains at {teacher['train'].input_size} px, the "
                             f"student at {student.input_size} px: they must see the same images")
        out["teacher"] = teacher
    else:
        if not isinstance(raw["checkpoint"], str):
            raise ValueError(f"distill.checkpoint must be a file path, got {raw['checkpoint']!r}")
        path = Path(raw["checkpoint"])
        if not path.is_file():
            raise ValueError(f"distill.checkpoint {str(path)!r} is not a file")
        out["checkpoint"] = str(path)
    return out


def _spec_dict(spec: dict) -> dict:
    out = {"train": spec["train"].to_dict(), "data": spec["data"],
           "validation": spec["validation"]}
    if spec.get("distill"):
        d = spec["distill"]
        out["distill"] = {k: _spec_dict(v) if k == "teacher" else v for k, v in d.items()}
    if spec.get("log"):
        out["log"] = spec["log"]
    return out


def _distill_key(distill: dict) -> dict:
    """What of a distill section decides the student's weights: the teacher's own run key
    (or the checkpoint file's SHA-256), the weight and copy_head."""
    key = {"weight": distill["weight"], "copy_head": distill["copy_head"]}
    if "teacher" in distill:
        return key | {"teacher": run_dir(distill["teacher"], "").name}
    digest = hashlib.sha256()
    with open(distill["checkpoint"], "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return key | {"checkpoint_sha256": digest.hexdigest()}


def run_dir(spec: dict, root: str | Path | None = None) -> Path:
    """Where a spec's run lives: ``root`` (default ``$ARCLAB_CACHE/runs``) / a hash of
    everything that decides the weights (the train and data sections, the renderer version),
    so a changed key never resumes a stale run. Validation settings are left out: they read the
    model and never change it, so two notebooks that train the same model share one run; so is
    ``data.workers`` (:data:`~arclab.train.sources.LOADING_KEYS`): it never changes a batch."""
    root = Path(root) if root is not None else cache_dir() / "runs"
    content = {"train": weights_key(spec["train"].to_dict()), "data": _data_key(spec["data"]),
               "render": RENDER_VERSION}
    if spec.get("distill"):  # absent for plain runs, so their hashes are what they were
        content["distill"] = _distill_key(spec["distill"])
    blob = json.dumps(content, sort_keys=True)
    return root / hashlib.sha256(blob.encode()).hexdigest()[:20]


def _check_device(device: str | None) -> torch.device:
    name = device or os.environ.get("ARCLAB_DEVICE") or None
    try:
        dev = arclab.get_device(device)
    except ValueError as err:
        raise ValueError(f"device {name!r} cannot be used: {err}") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} cannot be used: this machine has "
                         f"{torch.cuda.device_count()} CUDA devices")
    return dev


def _check_out(out: Path) -> None:
    """The run folder (or its nearest existing parent) is a writable folder."""
    here = out
    while not here.exists() and here != here.parent:
        here = here.parent
    if not here.is_dir() or not os.access(here, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir {str(out)!r} cannot be written ({str(here)!r} is not a "
                         "writable folder)")


def _data_key(data: dict) -> dict:
    """The part of a data section that decides the items: without ``workers``; a
    ``train.rec`` (and its index) also by size and modification time, so a file rewritten at
    the same path starts a new run."""
    key = {k: v for k, v in data.items() if k not in LOADING_KEYS}
    if data.get("source") == "recordio":
        key["stat"] = [[s.st_size, s.st_mtime_ns] for s in
                       (os.stat(data[k]) for k in ("rec", "idx") if data.get(k))]
    return key


def _check_same_data(out: Path, spec: dict) -> None:
    """A resumed run's stored spec.json (when readable) has the same data section (the
    number of DataLoader workers aside)."""
    try:
        stored = _data_key(json.loads((out / "spec.json").read_text())["data"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return  # no (or an unreadable) record of the data: the checkpoint's config decides
    data = json.loads(json.dumps(_data_key(spec["data"]), default=str))
    if stored != data:
        raise ValueError(f"{out} holds a run on other data ({out / 'spec.json'}: data "
                         f"{stored!r}, the spec: {data!r}); use a new out_dir")


def check_run(spec: dict, out_dir: str | Path | None = None, *, device: str | None = None,
              max_steps: int | None = None) -> Path:
    """Check what running a loaded spec needs before anything is rendered or written: the
    device and its ``amp`` mode, a batch that fits the SynthFaces set, a writable run folder,
    and the checkpoint already there (readable, same config and data, ``max_steps`` not
    below its step); a distillation teacher's run too. Returns the run folder.

    Raises:
        ValueError: the first problem found, naming the key, option or file.
    """
    cfg: TrainConfig = spec["train"]
    check_precision(cfg, _check_device(device))
    n_items = data_size(spec["data"])
    if n_items is not None and cfg.batch_size > n_items:
        raise ValueError(f"train.batch_size ({cfg.batch_size}) must not exceed the data set "
                         f"({n_items} items from data.n_identities x data.n_per_identity"
                         f"{' and data.keep' if spec['data'].get('keep') else ''})")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if cfg.batch_size % world:
        raise ValueError(f"train.batch_size ({cfg.batch_size}) must be divisible by the number "
                         f"of processes ({world})")
    out = Path(out_dir) if out_dir is not None else run_dir(spec)
    _check_out(out)
    if check_resume(out / "checkpoint.pt", cfg, max_steps) > 0:
        _check_same_data(out, spec)
    distill = spec.get("distill") or {}
    if "teacher" in distill:
        check_run(distill["teacher"], device=device)
    elif "checkpoint" in distill:
        state = read_checkpoint(Path(distill["checkpoint"]), mmap=True,
                                keys=frozenset({"config", "model"}))
        try:
            load_config(state["config"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"distill.checkpoint {distill['checkpoint']!r}: its config is "
                             f"refused: {err}") from None
    return out


def run_spec(spec: dict | str | Path, out_dir: str | Path | None = None, *,
             device: str | None = None, progress: bool = True,
             max_steps: int | None = None) -> dict:
    """Train what a spec describes; resumes (or, when finished, just reloads) the run in
    ``out_dir`` (default :func:`run_dir`). Returns :func:`arclab.train.train`'s dict plus
    ``"out_dir"`` and ``"spec"``.

    Raises:
        ValueError: as :func:`load_spec` and :func:`check_run`, before anything is rendered
            or anything in ``out_dir`` is written.
    """
    spec = load_spec(spec) if not isinstance(spec.get("train") if isinstance(spec, dict)
                                             else None, TrainConfig) else spec
    out = check_run(spec, out_dir, device=device, max_steps=max_steps)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "spec.json") as tmp:
        tmp.write_text(json.dumps(_spec_dict(spec), indent=1, sort_keys=True))
    size = spec["train"].input_size
    dataset, n_classes = build_dataset(spec["data"], size, progress=progress)
    validate = build_validator(spec["validation"], spec["data"], size)
    teacher = _teacher(spec["distill"], device, progress) if spec.get("distill") else None
    result = train(spec["train"], dataset, n_classes, out, validate=validate,
                   max_steps=max_steps, device=device, progress=progress, teacher=teacher,
                   tensorboard="tensorboard" in spec.get("log", ()))
    return {**result, "out_dir": out, "spec": copy.deepcopy(spec)}


def _teacher(distill: dict, device: str | None, progress: bool) -> dict:
    """``train``'s teacher argument: the teacher spec's run (trained first if it is not
    finished) or a checkpoint written by :func:`arclab.train.train`, read as untrusted
    (``weights_only``), its backbone rebuilt from the config stored in it."""
    if "teacher" in distill:
        run = run_spec(distill["teacher"], device=device, progress=progress)
        model, head = run["model"], run["head"].state_dict()
    else:
        path = distill["checkpoint"]
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(f"distill.checkpoint {path!r} is not a checkpoint torch.load("
                             f"weights_only=True) can read: {err}") from None
        if not isinstance(state, dict) or not {"config", "model"} <= set(state):
            raise ValueError(f"distill.checkpoint {path!r} has no 'config' and 'model': it was "
                             "not written by arclab.train")
        cfg = load_config(state["config"])
        model = get_model(cfg.backbone, embedding_size=cfg.embedding_size,
                          input_size=cfg.input_size)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise ValueError(f"distill.checkpoint {path!r}: its weights do not fit the "
                             f"backbone its config names ({cfg.backbone}): {err}") from None
        head = state.get("head") or {}
    return {"model": model, "head": head, "weight": distill["weight"],
            "copy_head": distill["copy_head"]}


CHANNELS_LAST = ("mbf", "y2", "mnet_lfr")
"""Backbones the notebooks train with NHWC convolutions: the depthwise ones. At 32 px, batch
64, on 2 CPU cores (``benchmarks/train_throughput.py``, 2026-12-04) the loop ran 1.34x faster
for mbf and 1.37x for mnet_lfr, and 1.01x for r18 (left NCHW). Measured and not kept: bfloat16
autocast (mbf 1.2x slower; r18 1.5x faster, but it changes the numbers a comparison rests on:
``amp: bf16`` turns it on) and ``torch.compile`` (mbf 1.3x faster per step after about 85 s of
compilation, more than it saves in a notebook's run)."""


def tutorial_spec(*, backbone: str = "r18", input_size: int = 32, embedding_size: int = 128,
                  margin: str = "arcface", scale: float = 32.0, n_train_ids: int = 200,
                  n_per_id: int = 12, epochs: int = 5, batch_size: int = 64, seed: int = 0,
                  data_seed: int | None = None, gradient: str = "exact",
                  overflow: str = "monotonic", validation: dict | None = None,
                  validate_every: int = 0, subcenters: int = 1,
                  label_noise: dict | None = None, keep: list[int] | None = None,
                  synth: dict | None = None, distill: dict | None = None,
                  weight_decay: float = 5e-4,
                  milestones: tuple[float, ...] = (0.5, 0.75),
                  train_data: str | os.PathLike | None = None) -> dict:
    """The notebooks' SynthFaces recipe as a checked spec: SGD lr 0.1, 20 warm-up steps,
    step decay at 50% and 75%, the given margin (or "triplet", P × 4 batches) and scale, a
    checkpoint every 200 steps. ``seed`` seeds the initialisation and the batch order,
    ``data_seed`` (default: ``seed``) the SynthFaces identities and validation pairs.
    Notebooks that pass the same arguments share one cached run (validation aside).
    ``subcenters``, ``label_noise`` and ``keep`` go to the spec as they are (sub-center
    ArcFace on noisy data, retraining on a kept subset); ``synth`` adds SynthConfig keys
    (e.g. ``{"nuisance": 0.5}``) to the data's seed; ``distill`` is a spec's distill section
    (its ``teacher`` may be another ``tutorial_spec``). ``train_data`` (a ``train.rec``, a
    folder holding one, or an image folder: :func:`arclab.data.real_sets.train_data_section`)
    trains on that set instead of SynthFaces; ``n_train_ids``, ``n_per_id`` and ``data_seed``
    then do not apply.

    Raises:
        ValueError: an argument :func:`load_spec` refuses (the message names its spec key,
            e.g. ``train.backbone``); ``train_data`` that names no training set, or given with
            ``label_noise``, ``keep`` or ``synth`` (SynthFaces only).

    Example:
        >>> tutorial_spec(backbone="mbf", epochs=2)["train"].backbone
        'mbf'
    """
    if train_data is not None:
        given = [k for k, v in (("label_noise", label_noise), ("keep", keep), ("synth", synth))
                 if v is not None]
        if given:
            raise ValueError(f"{', '.join(given)} apply to SynthFaces only; not with train_data")
        data = train_data_section(train_data)
    else:
        data = ({"source": "synthfaces", "n_identities": n_train_ids, "n_per_identity": n_per_id,
                 "synth": {"seed": seed if data_seed is None else data_seed} | (synth or {})}
                | ({"label_noise": dict(label_noise)} if label_noise else {})
                | ({"keep": [int(i) for i in keep]} if keep is not None else {}))
    return load_spec({
        "train": {"backbone": backbone, "embedding_size": embedding_size,
                  "input_size": input_size, "margin": margin, "s": scale, "lr": 0.1,
                  "batch_size": batch_size, "epochs": epochs, "warmup_steps": 20,
                  "weight_decay": weight_decay, "milestones": list(milestones),
                  "validate_every": validate_every, "checkpoint_every": 200, "seed": seed,
                  "channels_last": backbone in CHANNELS_LAST,
                  "gradient": gradient, "overflow": overflow, "subcenters": subcenters},
        "data": data,
        "validation": validation or {}} | ({"distill": distill} if distill else {}))
