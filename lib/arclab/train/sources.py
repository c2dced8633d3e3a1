"""The training data a spec's ``data`` section names: its keys checked per source, and the
data set built from it (SynthFaces rendered and cached, an image folder, an insightface
RecordIO file), as ((3, S, S) float in [−1, 1], label) items.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from arclab.data.cache import FaceDataset, cached_render
from arclab.data.formats import ImageFolderFaces
from arclab.data.params import SynthConfig
from arclab.data.recordio import RECORDIO_MAGIC, RecordIOReader
from arclab.data.splits import noisy_training_set

__all__ = ["SOURCE_KEYS", "build_dataset", "check_data", "data_size", "readable_file",
           "synth_config", "synth_training_set"]

SOURCE_KEYS: dict[str, set[str]] = {
    "synthfaces": {"n_identities", "n_per_identity", "synth", "label_noise", "keep"},
    "imagefolder": {"root"}, "recordio": {"rec", "idx"}}
"""The keys each ``data.source`` takes (besides ``source``)."""


def synth_config(data: dict) -> SynthConfig:
    """The SynthConfig of a spec's ``data.synth`` keys.

    Raises:
        ValueError: ``data.synth`` is not a mapping, has an unknown key, or a value
            SynthConfig refuses (the message names ``data.synth.<key>``).
    """
    synth = data.get("synth") or {}
    if not isinstance(synth, dict):
        raise ValueError(f"data.synth must be a mapping of SynthConfig keys, got {synth!r}")
    known = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(synth) - known)
    if unknown:
        raise ValueError(f"unknown data.synth keys {unknown}; valid: {sorted(known)}")
    try:
        return SynthConfig(**synth)
    except (TypeError, ValueError) as err:
        raise ValueError(f"data.synth.{err}") from None


def readable_file(key: str, value) -> bytes:
    """Check that the spec's ``key`` names an existing, readable file; returns its first 4
    bytes (for a format check).

    Raises:
        ValueError: ``value`` is not a path, not an existing file, or cannot be read; the
            message names ``key`` and the path.

    Example:
        >>> readable_file("data.rec", "/no/such.rec")
        Traceback (most recent call last):
        ...
        ValueError: data.rec '/no/such.rec' is not an existing file
    """
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"{key} must be a file path, got {value!r}")
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{key} {str(path)!r} is not an existing file")
    try:
        with open(path, "rb") as f:
            return f.read(4)
    except OSError as err:
        raise ValueError(f"{key} {str(path)!r} cannot be read: {err.strerror}") from None


def _check_noise_keep(data: dict) -> None:
    noise = data.get("label_noise")
    if noise is not None:
        if not isinstance(noise, dict) or set(noise) - {"closed_rate", "open_rate", "seed"}:
            raise ValueError("data.label_noise must be a mapping with keys among closed_rate, "
                             f"open_rate, seed; got {noise!r}")
        for key in ("closed_rate", "open_rate"):
            rate = noise.get(key, 0.0)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                    or not 0 <= rate <= 1:
                raise ValueError(f"data.label_noise.{key} must be in [0, 1], got {rate!r}")
        seed = noise.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"data.label_noise.seed must be an integer >= 0, got {seed!r}")
    keep = data.get("keep")
    if keep is not None:
        n = data["n_identities"] * data["n_per_identity"]
        if (not isinstance(keep, list) or not keep
                or any(isinstance(i, bool) or not isinstance(i, int) for i in keep)
                or min(keep) < 0 or max(keep) >= n or len(set(keep)) != len(keep)):
            raise ValueError(f"data.keep must be a non-empty list of distinct item indices in "
                             f"[0, {n}) (n_identities x n_per_identity)")


def _check_files(data: dict) -> None:
    """The image folder or RecordIO files a ``data`` section names: present and readable."""
    if data["source"] == "imagefolder":
        root = data.get("root")
        if root is None:
            raise ValueError("data.root is required for source 'imagefolder'")
        if not isinstance(root, (str, os.PathLike)) or not Path(root).is_dir():
            raise ValueError(f"data.root {str(root)!r} is not an existing folder")
        if not os.access(root, os.R_OK | os.X_OK):
            raise ValueError(f"data.root {str(root)!r} cannot be read")
    elif data["source"] == "recordio":
        if "rec" not in data:
            raise ValueError("data.rec is required for source 'recordio' (the train.rec file)")
        head = readable_file("data.rec", data["rec"])
        if len(head) < 4 or int.from_bytes(head, "little") != RECORDIO_MAGIC:
            raise ValueError(f"data.rec {str(data['rec'])!r} is not a RecordIO file (it does "
                             "not start with the RecordIO magic number)")
        if data.get("idx") is not None:
            readable_file("data.idx", data["idx"])


def check_data(data: dict) -> None:
    """Refuse a spec's ``data`` section (``source`` already defaulted) before anything is read
    or rendered.

    Raises:
        ValueError: an unknown source or key; a SynthFaces size that is not an integer (at
            least 2 identities, 1 image each); bad ``synth`` keys, ``label_noise`` or
            ``keep``; a missing or unreadable image folder, ``.rec`` or ``.idx`` file. The
            message names the key.
    """
    if not isinstance(data.get("source"), str) or data["source"] not in SOURCE_KEYS:
        raise ValueError(f"data.source must be one of {sorted(SOURCE_KEYS)}, got "
                         f"{data['source']!r}")
    extra = sorted(set(data) - SOURCE_KEYS[data["source"]] - {"source"})
    if extra:
        raise ValueError(f"unknown data keys {extra} for source {data['source']!r}; valid: "
                         f"{sorted(SOURCE_KEYS[data['source']])}")
    if data["source"] == "synthfaces":
        for key, least in (("n_identities", 2), ("n_per_identity", 1)):
            if key not in data:
                raise ValueError(f"data.{key} is required for source 'synthfaces'")
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"data.{key} must be an integer >= {least}, got {value!r}")
        synth_config(data)
        _check_noise_keep(data)
    _check_files(data)


def data_size(data: dict) -> int | None:
    """The number of training items a checked SynthFaces ``data`` section gives (after
    ``keep``), known before rendering; None for the other sources.

    Example:
        >>> data_size({"source": "synthfaces", "n_identities": 4, "n_per_identity": 3})
        12
    """
    if data["source"] != "synthfaces":
        return None
    if data.get("keep") is not None:
        return len(data["keep"])
    return data["n_identities"] * data["n_per_identity"]


def synth_training_set(data: dict) -> dict:
    """The SynthFaces training set a spec's ``data`` names, before ``keep``: the dict of
    :func:`arclab.data.splits.noisy_training_set` (no noise when ``label_noise`` is absent).
    """
    return noisy_training_set(synth_config(data), data["n_identities"], data["n_per_identity"],
                              **(data.get("label_noise") or {}))


class _Normalised(Dataset):
    """uint8 (3, H, W) items of another data set as float [−1, 1], mirrored with p = 1/2."""

    def __init__(self, base: Dataset, size: int) -> None:
        self.base, self.size = base, size

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, label = self.base[i]
        if tuple(img.shape[1:]) != (self.size, self.size):
            raise ValueError(f"image {i} is {tuple(img.shape[1:])}, expected "
                             f"({self.size}, {self.size}) (train.input_size)")
        img = img.float() / 127.5 - 1
        return (img.flip(2) if torch.rand(()) < 0.5 else img), int(label)


class _RecordIOFaces(Dataset):
    """An insightface ``train.rec``: (uint8 (3, H, W), label) per image record."""

    def __init__(self, rec: str, idx: str | None) -> None:
        self.reader = RecordIOReader(rec, idx)
        self.keys = [k for k in self.reader.keys() if self.reader.read(k)[0]["flag"] == 0]
        if not self.keys:
            raise ValueError(f"data.rec {rec} holds no image records")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        key = self.keys[i]
        header, _ = self.reader.read(key)
        return torch.from_numpy(self.reader.read_image(key)).permute(2, 0, 1), int(
            header["label"])


def build_dataset(data: dict, size: int, *, progress: bool = True) -> tuple[Dataset, int]:
    """The training set a spec's ``data`` names, at ``size``×``size``; returns
    (data set of ((3, size, size) float in [−1, 1], label), number of classes)."""
    if data["source"] == "synthfaces":
        t = synth_training_set(data)
        images = cached_render(t["config"], t["items"], size=size, progress=progress)["images"]
        labels = t["label"]
        if data.get("keep") is not None:
            keep = np.asarray(data["keep"], dtype=np.int64)
            images, labels = images[keep], labels[keep]
        return FaceDataset(images, labels, flip=True), int(data["n_identities"])
    if data["source"] == "imagefolder":
        base = ImageFolderFaces(data["root"], image_size=size)
        return _Normalised(base, size), len(base.classes)
    base = _RecordIOFaces(data["rec"], data.get("idx"))
    labels = {int(base.reader.read(k)[0]["label"]) for k in base.keys}
    if min(labels) < 0:
        raise ValueError(f"data.rec {data['rec']} has negative labels")
    return _Normalised(base, size), max(labels) + 1
