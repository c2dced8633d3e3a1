"""MXNet RecordIO reader and writer for insightface face sets (``train.rec`` + ``train.idx``).

Files are hostile: lengths and offsets are checked against the file size before anything is read
or allocated; each problem raises ``ValueError`` naming the file and the record's byte offset.

Layout (dmlc-core): uint32 magic ``0xced7230a``, uint32 ``lrec`` (``cflag = lrec >> 29``,
``length = lrec & (2**29 - 1)``), ``length`` payload bytes, zero padding to 4 bytes. Chunks of a
split payload (cflag 1 start, 2 middle, 3 end) are joined with the magic word between them, as
dmlc-core's reader does (its writer splits where the payload holds the magic, 4-aligned, and
drops it). Payload: ``<IfQQ`` (flag, label, id, id2), ``flag`` float32 labels if flag > 0, then
the encoded image. The ``.idx`` file holds text lines ``key<TAB>offset``.

Taught in: notebooks/03_synthfaces.ipynb
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["RECORDIO_MAGIC", "RecordIOReader", "RecordIOWriter", "decode_rgb"]

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_CHUNK = struct.Struct("<II")  # magic, lrec
_IMAGE_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
_IMAGE_FORMATS = ("JPEG", "PNG", "BMP")  # never EPS and friends, which shell out


def decode_rgb(data: bytes, where: str) -> np.ndarray:
    """Decode JPEG/PNG/BMP bytes to a uint8 (H, W, 3) RGB array; ``where`` starts the error.

    Raises:
        ValueError: the bytes do not decode as one of those formats (or are a decompression
            bomb); the message starts with ``where``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS) as img:
                rgb = img.convert("RGB")
    except Exception as exc:  # PIL raises many exception types on hostile bytes
        raise ValueError(f"{where}: image does not decode ({type(exc).__name__}: {exc})") from exc
    return np.array(rgb, dtype=np.uint8)


class RecordIOWriter:
    """Write image records as ``.rec`` + ``.idx`` (single chunks, cflag 0), mxnet-compatible.

    Args:
        rec_path: the ``.rec`` file to create (overwritten).
        idx_path: the ``.idx`` file to create (overwritten).
        image_format: ``"png"`` (lossless) or ``"jpeg"`` for arrays passed to :meth:`write`.
        jpeg_quality: JPEG quality in [1, 100].

    Raises:
        ValueError: an unknown image format or a quality outside [1, 100].
        OSError: the files cannot be created (a missing folder; the error names the file).

    Example:
        >>> import tempfile, numpy as np
        >>> d = Path(tempfile.mkdtemp())
        >>> with RecordIOWriter(d / "t.rec", d / "t.idx") as w:
        ...     w.write(np.zeros((2, 3, 3), np.uint8), 7.0)
        0
        >>> (d / "t.idx").read_text()
        '0\\t0\\n'

    Taught in: notebooks/03_synthfaces.ipynb
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike, *,
                 image_format: str = "png", jpeg_quality: int = 95) -> None:
        fmt = str(image_format).lower()
        if fmt not in ("png", "jpeg", "jpg"):
            raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
        if not (isinstance(jpeg_quality, int) and 1 <= jpeg_quality <= 100):
            raise ValueError(f"jpeg_quality must be an int in [1, 100], got {jpeg_quality!r}")
        self._format, self._quality = ("PNG" if fmt == "png" else "JPEG"), jpeg_quality
        self._keys: set[int] = set()
        self._next_key = 0
        self._rec = open(rec_path, "wb")  # closed by close()
        try:
            self._idx = open(idx_path, "w", encoding="ascii", newline="\n")
        except BaseException:
            self._rec.close()
            raise

    def write(self, image: np.ndarray | bytes, label: float | Sequence[float],
              key: int | None = None) -> int:
        """Append one record; returns its key.

        Args:
            image: uint8 array (H, W, 3) RGB, encoded with the writer's format; or already
                encoded bytes, stored as given (``b""`` gives a header-only record, like the
                face sets' record 0).
            label: a float (flag 0), or a non-empty sequence of floats stored as float32
                labels after the header (flag = their count, the label field 0).
            key: a non-negative int not used before; None takes one more than the largest so far.

        Raises:
            ValueError: a closed writer, a bad image, label or key, or a payload of 2**29 bytes
                or more.

        Taught in: notebooks/03_synthfaces.ipynb
        """
        if self._rec.closed:
            raise ValueError("RecordIOWriter must be open to write, got a closed writer")
        if key is None:
            key = self._next_key
        elif isinstance(key, bool) or not isinstance(key, int | np.integer) or key < 0:
            raise ValueError(f"key must be a non-negative int, got {key!r}")
        key = int(key)
        if key in self._keys:
            raise ValueError(f"key must be unused, got {key} a second time")
        payload = self._header(label, key) + self._encode(image)
        if len(payload) > _LENGTH_MASK:
            raise ValueError(f"image must encode to under 2**29 bytes, got {len(payload)}")
        offset = self._rec.tell()
        self._rec.write(_CHUNK.pack(RECORDIO_MAGIC, len(payload)) + payload
                        + b"\0" * (-len(payload) % 4))
        self._idx.write(f"{key}\t{offset}\n")
        self._keys.add(key)
        self._next_key = max(self._next_key, key + 1)
        return key

    @staticmethod
    def _header(label: float | Sequence[float], key: int) -> bytes:
        if np.ndim(label) == 0:
            try:
                return _IMAGE_HEADER.pack(0, float(label), key, 0)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"label must be a float32, got {label!r}") from exc
        try:
            labels = np.asarray(label, dtype="<f4")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"label must be a sequence of floats, got {label!r}") from exc
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"label must be a non-empty 1-D sequence, got shape {labels.shape}")
        return _IMAGE_HEADER.pack(labels.size, 0.0, key, 0) + labels.tobytes()

    def _encode(self, image: np.ndarray | bytes) -> bytes:
        if isinstance(image, bytes | bytearray | memoryview):
            return bytes(image)
        if not isinstance(image, np.ndarray):
            raise ValueError(f"image must be a uint8 array or bytes, got {type(image).__name__}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or not image.size:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        buf = io.BytesIO()
        extra = {"quality": self._quality} if self._format == "JPEG" else {}
        Image.fromarray(np.ascontiguousarray(image)).save(buf, format=self._format, **extra)
        return buf.getvalue()

    def close(self) -> None:
        """Close both files (idempotent)."""
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordIOReader:
    """Random access to the image records of a ``.rec`` file, by ``.idx`` key or by scanning.

    Without ``idx_path`` the file is scanned once and the records get keys 0, 1, 2, ... in file
    order. Reads use ``os.pread`` where available, so a reader survives ``fork`` into DataLoader
    workers. Iteration yields ``(key, header, image_bytes)`` in ascending key order.

    ``header`` is a dict: ``flag`` (int), ``label`` (float if flag is 0, else the float32 labels
    array (flag,), as mxnet's ``unpack``), ``labels`` (float32 (max(flag, 1),) always), ``id`` and
    ``id2`` (int).

    Raises:
        ValueError: a missing file; an idx line that is not ``key<TAB>offset``, a repeated key or
            an offset outside the .rec; while scanning, any broken record.

    Example:
        >>> import tempfile, numpy as np
        >>> d = Path(tempfile.mkdtemp())
        >>> with RecordIOWriter(d / "t.rec", d / "t.idx") as w:
        ...     w.write(b"", [1.0, 2.0]), w.write(np.full((2, 2, 3), 9, np.uint8), 0.0)
        (0, 1)
        >>> with RecordIOReader(d / "t.rec", d / "t.idx") as r:
        ...     len(r), r.identity_range(), r.read(1)[0]["label"], r.read_image(1)[0, 0].tolist()
        (2, (1, 2), 0.0, [9, 9, 9])

    Taught in: notebooks/03_synthfaces.ipynb
    """

    def __init__(self, rec_path: str | os.PathLike,
                 idx_path: str | os.PathLike | None = None) -> None:
        self.rec_path = Path(rec_path)
        if not self.rec_path.is_file():
            raise ValueError(f"rec_path must be an existing file, got {str(rec_path)!r}")
        self._file = open(self.rec_path, "rb", buffering=0)  # closed by close()
        try:
            self._size = os.fstat(self._file.fileno()).st_size
            self._offsets = self._scan() if idx_path is None else self._read_idx(Path(idx_path))
        except BaseException:
            self._file.close()
            raise
        self._keys = sorted(self._offsets)

    def _read_idx(self, idx_path: Path) -> dict[int, int]:
        if not idx_path.is_file():
            raise ValueError(f"idx_path must be an existing file, got {str(idx_path)!r}")
        try:
            text = idx_path.read_bytes().decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{idx_path}: not an ASCII index ({exc})") from exc
        offsets: dict[int, int] = {}
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not all(p.removeprefix("-").isdigit() for p in parts):
                raise ValueError(f"{idx_path}: line {lineno}: expected 'key<TAB>offset' "
                                 f"integers, got {line[:80]!r}")
            key, offset = int(parts[0]), int(parts[1])
            if key in offsets:
                raise ValueError(f"{idx_path}: line {lineno}: key {key} repeats")
            if not 0 <= offset <= self._size - _CHUNK.size:
                raise ValueError(f"{idx_path}: line {lineno}: offset {offset} is outside "
                                 f"{self.rec_path} ({self._size} bytes)")
            offsets[key] = offset
        return offsets

    def _scan(self) -> dict[int, int]:
        offsets: dict[int, int] = {}
        pos = 0
        while pos < self._size:
            offsets[len(offsets)] = pos
            _, pos = self._record(pos, read=False)
        return offsets

    def _pread(self, n: int, pos: int, where: str) -> bytes:
        if hasattr(os, "pread"):
            data = os.pread(self._file.fileno(), n, pos)
        else:  # Windows: no pread
            self._file.seek(pos)
            data = self._file.read(n)
        if len(data) != n:
            raise ValueError(f"{where}: file changed while reading, got {len(data)} of {n} bytes")
        return data

    def _record(self, offset: int, *, read: bool = True) -> tuple[bytes | None, int]:
        """Payload of the record at ``offset`` (chunks joined) and the offset after it."""
        where = f"{self.rec_path}: record at offset {offset}"
        parts: list[bytes] = []
        pos, first = offset, True
        while True:
            left = self._size - pos
            if left < _CHUNK.size:
                raise ValueError(f"{where}: truncated, needs 8 header bytes, {left} left")
            magic, lrec = _CHUNK.unpack(self._pread(_CHUNK.size, pos, where))
            if magic != RECORDIO_MAGIC:
                raise ValueError(f"{where}: bad magic 0x{magic:08x} at byte {pos}, "
                                 f"expected 0x{RECORDIO_MAGIC:08x}")
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            padded = length + (-length % 4)
            if padded > left - _CHUNK.size:
                raise ValueError(f"{where}: truncated, needs {padded} bytes, "
                                 f"{left - _CHUNK.size} left")
            if cflag > 3 or (cflag in (0, 1)) != first:
                raise ValueError(f"{where}: chunk flag {cflag} at byte {pos} is out of order")
            if read:
                parts.append(self._pread(length, pos + _CHUNK.size, where))
            pos += _CHUNK.size + padded
            if cflag in (0, 3):
                return (b"".join(parts) if read else None), pos
            first = False
            if read:
                parts.append(_MAGIC_BYTES)

    def _where(self, key: int) -> tuple[str, int]:
        try:
            offset = self._offsets[key]
        except (KeyError, TypeError):
            raise ValueError(f"key must be one of the {len(self)} keys, got {key!r}") from None
        return f"{self.rec_path}: record at offset {offset}", offset

    def read(self, key: int) -> tuple[dict[str, Any], bytes]:
        """The record ``key`` as ``(header, image_bytes)``; see the class docstring for header.

        Raises:
            ValueError: an unknown key, a broken or truncated record, a payload shorter than the
                24-byte header or than its declared float32 labels.

        Taught in: notebooks/03_synthfaces.ipynb
        """
        where, offset = self._where(key)
        payload = self._record(offset)[0] or b""
        if len(payload) < _IMAGE_HEADER.size:
            raise ValueError(f"{where}: payload of {len(payload)} bytes is shorter than the "
                             f"{_IMAGE_HEADER.size}-byte image header")
        flag, label, id_, id2 = _IMAGE_HEADER.unpack_from(payload)
        start = _IMAGE_HEADER.size + 4 * flag
        if start > len(payload):
            raise ValueError(f"{where}: header declares {flag} float32 labels, payload holds "
                             f"{len(payload) - _IMAGE_HEADER.size} bytes after the header")
        labels = np.frombuffer(payload, "<f4", count=flag, offset=_IMAGE_HEADER.size)
        labels = labels.astype(np.float32) if flag else np.array([label], np.float32)
        header = {"flag": flag, "label": labels.copy() if flag else float(label),
                  "labels": labels, "id": id_, "id2": id2}
        return header, payload[start:]

    def read_image(self, key: int) -> np.ndarray:
        """The image of record ``key`` decoded to uint8 (H, W, 3) RGB.

        Raises:
            ValueError: as :meth:`read`, or image bytes that are empty or do not decode.

        Taught in: notebooks/03_synthfaces.ipynb
        """
        data = self.read(key)[1]
        where = self._where(key)[0]
        if not data:
            raise ValueError(f"{where}: holds no image bytes (a header-only record)")
        return decode_rgb(data, where)

    def identity_range(self) -> tuple[int, int] | None:
        """``(first_identity_record, end)`` from the face sets' header record 0, else None.

        Record 0 is such a header when it has flag 2 and no image bytes; image records are then
        keys 1 .. first-1 and identity records keys first .. end-1.

        Raises:
            ValueError: a header record whose labels are not integers 1 <= first <= end.

        Taught in: notebooks/03_synthfaces.ipynb
        """
        if 0 not in self._offsets:
            return None
        header, data = self.read(0)
        if header["flag"] != 2 or data:
            return None
        first, end = (float(v) for v in header["labels"])
        if not (first.is_integer() and end.is_integer() and 1 <= first <= end):
            raise ValueError(f"{self._where(0)[0]}: header labels must be integers "
                             f"1 <= first <= end, got {[first, end]}")
        return int(first), int(end)

    def heads(self, keys: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """The headers of records ``keys`` (default: all) without their images, 36 bytes read a
        record (split or short ones whole): arrays (N,) ``key``, ``flag``, ``image_bytes`` (0:
        header only), ``label`` (float64; for flag > 0 the first label, arcface_torch's label[0]).

        Raises:
            ValueError: as :meth:`read`, for the first unknown key or broken record.
        """
        keys = np.array(self._keys if keys is None else [int(k) for k in keys], np.int64)
        offsets = np.array([self._offsets[k] if k in self._offsets else self._where(k)[1]
                            for k in keys.tolist()], np.int64)
        raw = [self._pread(min(36, self._size - o), o, str(self.rec_path))
               for o in offsets.tolist()]  # parsed as arrays below; short reads fail the checks
        head = np.frombuffer(b"".join(r.ljust(36, b"\0") for r in raw), np.uint8).reshape(-1, 36)
        magic, lrec, flag = head[:, :12].copy().view("<u4").astype(np.int64).T.copy()
        floats = head[:, 12:].copy().view("<f4").astype(np.float64)  # label, id, id2, labels
        length, label = lrec & _LENGTH_MASK, np.where(flag > 0, floats[:, 5], floats[:, 0])
        ok = (magic == RECORDIO_MAGIC) & (lrec >> 29 == 0) & (length >= 28) \
            & (24 + 4 * flag <= length) & (offsets + 8 + length + (-length % 4) <= self._size)
        nbytes = length - 24 - 4 * flag
        for i in np.flatnonzero(~ok).tolist():  # the rare or broken cases, by the full rules
            header, data = self.read(int(keys[i]))
            flag[i], label[i], nbytes[i] = header["flag"], header["labels"][0], len(data)
        return {"key": keys, "flag": flag, "label": label, "image_bytes": nbytes}

    def keys(self) -> list[int]:
        """All keys, ascending."""
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any], bytes]]:
        for key in self._keys:
            yield (key, *self.read(key))

    def close(self) -> None:
        """Close the .rec file (idempotent)."""
        self._file.close()

    def __enter__(self) -> RecordIOReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
