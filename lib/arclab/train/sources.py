"""The training data a spec's ``data`` section names: its keys checked per source, and the
data set built from it (SynthFaces rendered and cached, an image folder, an insightface
RecordIO file), as ((3, S, S) float in [−1, 1], label) items.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import bisect
import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from arclab.data.cache import FaceDataset, cached_render
from arclab.data.formats import ImageFolderFaces
from arclab.data.params import SynthConfig
from arclab.data.recordio import RECORDIO_MAGIC, RecordIOReader, decode_rgb
from arclab.data.splits import noisy_training_set

__all__ = ["LOADING_KEYS", "SOURCE_KEYS", "DecodedFaces", "build_dataset", "check_data",
           "data_size", "readable_file", "synth_config", "synth_training_set"]

SOURCE_KEYS: dict[str, set[str]] = {
    "synthfaces": {"n_identities", "n_per_identity", "synth", "label_noise", "keep"},
    "imagefolder": {"root", "workers"}, "recordio": {"rec", "idx", "workers"}}
"""The keys each ``data.source`` takes (besides ``source``)."""

LOADING_KEYS = frozenset({"workers"})
"""Data keys that change how the items are read, never which: ``workers``, the DataLoader's
worker processes (:func:`arclab.train.batches.step_batches`; default
:func:`~arclab.train.batches.default_workers`). Left out of a run's hash."""


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
    workers = data.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 0):
        raise ValueError(f"data.workers must be an integer >= 0 (0: read in the training "
                         f"process), got {workers!r}")


def check_data(data: dict) -> None:
    """Refuse a spec's ``data`` section (``source`` already defaulted) before anything is read
    or rendered.

    Raises:
        ValueError: an unknown source or key; a SynthFaces size that is not an integer (at
            least 2 identities, 1 image each); bad ``synth`` keys, ``label_noise`` or
            ``keep``; a missing or unreadable image folder, ``.rec`` or ``.idx`` file;
            ``workers`` not an integer >= 0. The message names the key.
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


class DecodedFaces(Dataset):
    """uint8 (3, H, W) items of another data set, read and decoded on demand (in the
    DataLoader's workers, :func:`arclab.train.batches.step_batches`), as float [−1, 1].

    ``ds[(i, flip)]`` mirrors item ``i`` when ``flip`` is true: the loader draws the flags from
    the step's seed, so no worker's RNG decides them. ``ds[i]`` mirrors with p = 1/2 from the
    global RNG. ``workers``: the loader's worker processes (``data.workers``; None: its
    default).

    Raises:
        ValueError: an item that is not ``size`` × ``size`` (``train.input_size``).

    Example:
        >>> base = [(torch.arange(12, dtype=torch.uint8).reshape(3, 2, 2), 5)]
        >>> x, y = DecodedFaces(base, 2)[(0, True)]
        >>> x[0].mul(127.5).add(127.5).tolist(), y
        ([[1.0, 0.0], [3.0, 2.0]], 5)
    """

    def __init__(self, base, size: int, workers: int | None = None) -> None:
        self.base, self.size, self.workers, self._labels = base, size, workers, None

    def __len__(self) -> int:
        return len(self.base)

    @property
    def labels(self) -> np.ndarray:
        """Every item's label (for P × K batches); a ``train.rec`` reads its headers once."""
        if self._labels is None:
            self._labels = np.array([label for _, label in self.base.samples], np.int64) \
                if isinstance(self.base, ImageFolderFaces) else np.asarray(self.base.labels)
        return self._labels

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        i, flip = key if isinstance(key, tuple) else (key, torch.rand(()) < 0.5)
        img, label = self.base[int(i)]
        if tuple(img.shape[1:]) != (self.size, self.size):
            where = getattr(self.base, "where", lambda j: f"image {j}")(int(i))
            raise ValueError(f"{where} is {tuple(img.shape[1:])}, expected "
                             f"({self.size}, {self.size}) (train.input_size)")
        img = img.float() / 127.5 - 1
        return (img.flip(2) if flip else img), int(label)


class _RecordIOFaces(Dataset):
    """An insightface ``train.rec``'s image records: (uint8 (3, H, W), label) each, read and
    decoded on demand.

    With the face sets' header record 0 (:meth:`RecordIOReader.identity_range`, ``(first,
    end)``) the images are keys [1, first), as arcface_torch's ``MXFaceDataset`` takes them,
    and the classes the ``end - first`` identity records: nothing more is read before
    training. Without one (or with no identity records) the record headers are read once
    (:meth:`RecordIOReader.heads`, images not read): the images are the records holding image
    bytes, the classes max(label) + 1. An array label (flag > 0) counts by its first value.
    """

    def __init__(self, rec: str, idx: str | None) -> None:
        self.rec, self.idx, self._labels = str(rec), idx if idx is None else str(idx), None
        self._reader: RecordIOReader | None = None
        reader = self.reader()
        span = reader.identity_range()
        if span is not None:
            keys = reader.keys()
            lo, hi = bisect.bisect_left(keys, 1), bisect.bisect_left(keys, span[0])
            if hi - lo != span[0] - 1:
                raise ValueError(f"data.rec {self.rec}: its header record 0 gives image keys "
                                 f"[1, {span[0]}), the index holds {hi - lo} of them")
            self.keys, self.n_classes = range(1, span[0]), span[1] - span[0]
        else:
            heads = reader.heads()  # the one pass: headers only
            images = heads["image_bytes"] > 0
            self.keys, self._labels = heads["key"][images], heads["label"][images]
            self.n_classes = 0
        if not len(self.keys):
            raise ValueError(f"data.rec {self.rec} holds no image records")
        if self.n_classes < 1:
            self.n_classes = int(self.labels.max()) + 1

    def reader(self) -> RecordIOReader:
        """The reader: forked DataLoader workers share it (its reads are ``os.pread``, free of
        file positions) and keep its index; a worker started by spawn opens its own."""
        if self._reader is None:
            self._reader = RecordIOReader(self.rec, self.idx)
        return self._reader

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_reader": None}  # an open file does not pickle

    @property
    def labels(self) -> np.ndarray:
        """Every image's label, int64; read from the record headers once (one pass).

        Raises:
            ValueError: a label that is not a whole number >= 0, naming its record.
        """
        labels = self._labels
        if labels is None or labels.dtype != np.int64:
            if labels is None:
                labels = self.reader().heads(self.keys)["label"]
            bad = np.flatnonzero((labels < 0) | (labels != np.floor(labels)))
            if len(bad):
                raise ValueError(f"{self.where(bad[0])} has label {labels[bad[0]]}: labels must "
                                 "be whole numbers >= 0")
            self._labels = labels = labels.astype(np.int64)
        return labels

    def where(self, i: int) -> str:
        """Item ``i``'s place, for errors: the file and the record's key."""
        return f"data.rec {self.rec}: record {int(self.keys[i])}"

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        header, data = self.reader().read(int(self.keys[i]))
        label = float(header["labels"][0])
        if not (label.is_integer() and 0 <= label < self.n_classes):
            raise ValueError(f"{self.where(i)} has label {label}: labels must be whole numbers "
                             f"in [0, {self.n_classes}) (the classes its header or labels give)")
        if not data:
            raise ValueError(f"{self.where(i)} holds no image bytes (a header-only record)")
        img = decode_rgb(data, self.where(i))
        return torch.from_numpy(img).permute(2, 0, 1), int(label)


def build_dataset(data: dict, size: int, *, progress: bool = True) -> tuple[Dataset, int]:
    """The training set a spec's ``data`` names, at ``size``×``size``; returns
    (data set of ((3, size, size) float in [−1, 1], label), number of classes).

    SynthFaces are rendered (or read from the cache) here, as a
    :class:`~arclab.data.cache.FaceDataset`; an image folder or a ``train.rec`` gives a
    :class:`DecodedFaces` that reads and decodes each image when the loader asks for it (a
    ``train.rec`` reads at most its record headers here, never its images).

    Raises:
        ValueError: a ``train.rec`` without image records, whose header record's image range
            is not in its index, or with a label that is not a whole number >= 0 (the
            message names the file and the record).
    """
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
        return DecodedFaces(base, size, data.get("workers")), len(base.classes)
    base = _RecordIOFaces(data["rec"], data.get("idx"))
    return DecodedFaces(base, size, data.get("workers")), base.n_classes
