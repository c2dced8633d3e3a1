"""Real data sets named by a path, as the notebooks' ``train_data`` / ``eval_data`` parameters
take them: the spec sections (``data``, ``validation``) that train and validate on them
instead of SynthFaces.

- ``train_data``: an insightface ``train.rec`` (its ``train.idx`` beside it is used when
  present), a folder holding ``train.rec``, or an image folder with one sub-folder per
  identity;
- ``eval_data``: a verification ``.bin`` file (LFW, CFP-FP, AgeDB-30 as insightface ships
  them) or a folder of them, each protocol named by its file's stem (``lfw``, ``cfp_fp``,
  ``agedb_30``) (notebook 04); or an image folder with one sub-folder per identity, scored
  over all its pairs (:func:`identity_folder`, notebook 08).

The section builders read nothing beyond a directory listing: the readers
(:mod:`arclab.data.recordio`, :mod:`arclab.data.formats`) check the files when a run opens
them.

Taught in: notebooks/04_training_a_face_model.ipynb and notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from arclab.data.formats import ImageFolderFaces

__all__ = ["eval_data_sections", "identity_folder", "train_data_section"]

_IMAGES = {".jpg", ".jpeg", ".png", ".bmp"}


def train_data_section(train_data: str | os.PathLike, *, name: str = "train_data") -> dict:
    """The spec's ``data`` section for a training set given by its path.

    Args:
        train_data: a ``.rec`` file, a folder holding ``train.rec``, or an image folder (one
            sub-folder of images per identity).
        name: the parameter's name, for the error messages.

    Returns:
        ``{"source": "recordio", "rec": str, "idx": str | None}`` or
        ``{"source": "imagefolder", "root": str}``.

    Raises:
        ValueError: the path does not exist, is a file that is not ``.rec``, or a folder with
            neither ``train.rec`` nor a sub-folder holding images (the message names ``name``).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / "train.rec").write_bytes(b"")
        0
        >>> train_data_section(d)["source"], train_data_section(d)["idx"]
        ('recordio', None)
    """
    path = Path(train_data)
    if not path.exists():
        raise ValueError(f"{name}: {str(path)!r} does not exist (expected a train.rec, a folder "
                         "holding one, or an image folder with one sub-folder per identity)")
    rec = path / "train.rec" if path.is_dir() else path
    if rec.is_file():
        if rec.suffix != ".rec":
            raise ValueError(f"{name}: {str(path)!r} is a file but not a .rec (MXNet RecordIO); "
                             "give a train.rec or an image folder")
        idx = rec.with_suffix(".idx")
        return {"source": "recordio", "rec": str(rec), "idx": str(idx) if idx.is_file() else None}
    has_images = any(f.suffix.lower() in _IMAGES for d in path.iterdir() if d.is_dir()
                     for f in d.iterdir())
    if not has_images:
        raise ValueError(f"{name}: folder {str(path)!r} holds no train.rec and no sub-folder of "
                         f"images ({', '.join(sorted(_IMAGES))}); expected one of the two")
    return {"source": "imagefolder", "root": str(path)}


def eval_data_sections(eval_data: str | os.PathLike, *, name: str = "eval_data"
                       ) -> dict[str, dict]:
    """The spec's ``validation`` section for verification ``.bin`` files given by a path.

    Args:
        eval_data: one ``.bin`` file or a folder of them (only the ``*.bin`` files directly in
            it are taken, in name order).
        name: the parameter's name, for the error messages.

    Returns:
        {stem: {"bin": str}}, e.g. ``{"agedb_30": {...}, "cfp_fp": {...}, "lfw": {...}}``.

    Raises:
        ValueError: the path does not exist, is a file that is not ``.bin``, or a folder with
            no ``.bin`` file (the message names ``name``).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()); (d / "lfw.bin").write_bytes(b"")
        0
        >>> list(eval_data_sections(d))
        ['lfw']
    """
    path = Path(eval_data)
    if not path.exists():
        raise ValueError(f"{name}: {str(path)!r} does not exist (expected a .bin file or a "
                         "folder of them)")
    files = [path] if path.is_file() else sorted(path.glob("*.bin"))
    if path.is_file() and path.suffix != ".bin":
        raise ValueError(f"{name}: {str(path)!r} is not a .bin verification file")
    if not files:
        raise ValueError(f"{name}: folder {str(path)!r} holds no .bin verification file")
    return {f.stem: {"bin": str(f)} for f in files}


def identity_folder(eval_data: str | os.PathLike, size: int, *, name: str = "eval_data",
                    progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every image of a folder with one sub-folder per identity, for all-pairs evaluation.

    Args:
        eval_data: the folder (images ``.jpg``, ``.jpeg``, ``.png``, ``.bmp`` directly inside
            each identity's sub-folder; :class:`~arclab.data.formats.ImageFolderFaces`).
        size: the side in pixels the images are resized to (bilinear) where they differ.
        name: the parameter's name, for the error messages.

    Returns:
        (images uint8 (N, size, size, 3) RGB, identity (N,) int64: the index of the sub-folder
        in name order), grouped by identity.

    Raises:
        ValueError: a missing folder, an identity folder without images, an image that does
            not decode (the message names ``name`` and the file).
    """
    try:
        faces = ImageFolderFaces(eval_data, image_size=size)
        images = np.empty((len(faces), size, size, 3), np.uint8)
        for k in tqdm(range(len(faces)), desc="reading images", disable=not progress):
            images[k] = faces[k][0].permute(1, 2, 0).numpy()
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    return images, np.array([label for _, label in faces.samples], dtype=np.int64)
