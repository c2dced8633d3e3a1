"""The challenge's binary feature files: a 16-byte header, then float32 rows.

The lightweight-recognition challenge (seed 001, section 3.4) takes "a binary feature matrix
(ImageNum × FeatureDim in float32)". The public feature writers that go with it (insightface's
``gen_megaface.py`` / ``gen_image_feature.py``, ``write_bin``) write ``struct.pack('4i', len(f),
1, 4, 5)`` then the floats, one vector per file. The four int32 are read here as
(rows, columns, bytes per element = 4, OpenCV type code 5 = CV_32F); that reading of the last
two is an assumption (no public spec names them), so both are checked on read and a file with
other values is refused rather than guessed at. Everything is little-endian.

Taught in: notebooks/08_trillion_pairs.ipynb
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np
from torch import Tensor

__all__ = ["HEADER", "read_features", "write_features"]

HEADER = struct.Struct("<4i")
"""(rows, columns, bytes per element = 4, OpenCV type code = 5 for CV_32F), little-endian."""

_CHUNK = 1 << 24  # floats checked for finiteness at a time


def write_features(path: str | os.PathLike, features: np.ndarray | Tensor) -> None:
    """Write features in the challenge format, atomically (temporary file, then rename).

    A 2-D array is written as (rows, columns) = its shape; a 1-D vector of D floats as
    (D, 1), which is byte for byte what insightface's ``write_bin`` writes for one feature.

    Shapes: features (N, D) or (D,).
    Units: none (raw float32 values).

    Raises:
        ValueError: features empty, not 1-D or 2-D, not real, or not finite.
        OSError: the file cannot be written (its folder is missing or not a folder).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.bin"
        >>> write_features(p, np.eye(2, 3, dtype=np.float32))
        >>> p.stat().st_size, read_features(p).shape
        (40, (2, 3))

    Taught in: notebooks/08_trillion_pairs.ipynb
    """
    a = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating)
                               or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"features must hold real numbers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.size == 0 or max(a.shape) >= 2**31:
        raise ValueError(f"features must be a non-empty (N, D) or (D,) array with sides below "
                         f"2**31, got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype="<f4")
    if not np.isfinite(a).all():
        raise ValueError(f"features must be finite, got NaN or inf in row "
                         f"{int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(HEADER.pack(a.shape[0], a.shape[1], 4, 5))
            a.tofile(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_features(path: str | os.PathLike) -> np.ndarray:
    """Read a challenge feature file, checking the header against the file before reading.

    Shapes: -> (rows, columns) float32; a single insightface vector file gives (D, 1).
    Units: none (raw float32 values).

    Raises:
        ValueError: the file is shorter than the header; rows or columns are not positive;
            the element size is not 4 or the type code not 5; rows·columns·4 differs from the
            bytes after the header (truncated or padded file); a value is NaN or inf.
        OSError: the file cannot be opened (missing, unreadable; the error names it).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.bin"
        >>> write_features(p, np.array([0.6, 0.8]))
        >>> read_features(p).tolist()
        [[0.6000000238418579], [0.800000011920929]]

    Taught in: notebooks/08_trillion_pairs.ipynb
    """
    path = Path(path)
    size = path.stat().st_size
    name = str(path)
    if size < HEADER.size:
        raise ValueError(f"path {name!r} must start with a {HEADER.size}-byte header, got a "
                         f"{size}-byte file")
    with open(path, "rb") as f:
        rows, cols, elem, code = HEADER.unpack(f.read(HEADER.size))
        if rows <= 0 or cols <= 0:
            raise ValueError(f"path {name!r} must have positive rows and columns in its header, "
                             f"got {rows} x {cols}")
        if (elem, code) != (4, 5):
            raise ValueError(f"path {name!r} must have element size 4 and type code 5 (CV_32F) "
                             f"in its header, got {elem} and {code}")
        if rows * cols * 4 != size - HEADER.size:
            raise ValueError(f"path {name!r} must hold {rows} x {cols} float32 = "
                             f"{rows * cols * 4} bytes after the header, got "
                             f"{size - HEADER.size}")
        data = np.fromfile(f, dtype="<f4", count=rows * cols).reshape(rows, cols)
    step = max(1, _CHUNK // cols)
    for start in range(0, rows, step):
        ok = np.isfinite(data[start:start + step]).all(axis=1)
        if not ok.all():
            raise ValueError(f"path {name!r} must hold finite values, got NaN or inf in row "
                             f"{start + int(np.flatnonzero(~ok)[0])}")
    return data
