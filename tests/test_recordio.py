"""MXNet RecordIO: round trips, hand-built records (multi-label, multi-chunk), hostile files."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from arclab.data.recordio import RECORDIO_MAGIC, RecordIOReader, RecordIOWriter

MAGIC = struct.pack("<I", RECORDIO_MAGIC)


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def chunk(payload: bytes, cflag: int = 0) -> bytes:
    """One chunk as dmlc-core writes it: magic, lrec, payload, zero padding to 4 bytes."""
    return MAGIC + struct.pack("<I", cflag << 29 | len(payload)) + payload \
        + b"\0" * (-len(payload) % 4)


def padded(n: int) -> int:
    return n + (-n % 4)


@pytest.fixture()
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(5, 7), (3, 3), (8, 2)]]


@pytest.fixture()
def written(tmp_path, images):
    rec, idx = tmp_path / "train.rec", tmp_path / "train.idx"
    with RecordIOWriter(rec, idx) as w:
        keys = [w.write(images[0], 3.0), w.write(images[1], [1.5, -2.0, 7.0]),
                w.write(images[2], 0.0)]
    assert keys == [0, 1, 2]
    return rec, idx


def test_round_trip_png_is_exact(written, images):
    rec, idx = written
    sizes = [8 + padded(24 + len(png(images[0]))), 8 + padded(24 + 12 + len(png(images[1])))]
    offsets = [0, sizes[0], sizes[0] + sizes[1]]
    assert idx.read_text() == "".join(f"{k}\t{o}\n" for k, o in enumerate(offsets))
    assert rec.stat().st_size == offsets[2] + 8 + padded(24 + len(png(images[2])))
    with RecordIOReader(rec, idx) as r:
        assert len(r) == 3 and r.keys() == [0, 1, 2]
        for key, img in enumerate(images):
            np.testing.assert_array_equal(r.read_image(key), img)
        h0, data0 = r.read(0)
        assert data0 == png(images[0])
        assert (h0["flag"], h0["label"], h0["id"], h0["id2"]) == (0, 3.0, 0, 0)
        assert h0["labels"].tolist() == [3.0] and h0["labels"].dtype == np.float32
        h1, _ = r.read(1)
        assert h1["flag"] == 3 and h1["id"] == 1
        assert h1["label"].tolist() == h1["labels"].tolist() == [1.5, -2.0, 7.0]
        assert r.identity_range() is None  # record 0 is an image, not a face-set header


def test_scan_without_idx_matches_indexed_read(written, images):
    rec, idx = written
    with RecordIOReader(rec) as scanned, RecordIOReader(rec, idx) as indexed:
        assert scanned.keys() == indexed.keys() == [0, 1, 2]
        for (k1, h1, d1), (k2, h2, d2) in zip(scanned, indexed, strict=True):
            assert (k1, h1["flag"], h1["labels"].tolist(), d1) == \
                (k2, h2["flag"], h2["labels"].tolist(), d2)
        np.testing.assert_array_equal(scanned.read_image(2), images[2])


def test_explicit_keys_iterate_in_key_order(tmp_path, images):
    rec, idx = tmp_path / "a.rec", tmp_path / "a.idx"
    with RecordIOWriter(rec, idx) as w:
        for key, label in [(5, 50.0), (2, 20.0), (9, 90.0)]:
            w.write(images[0], label, key=key)
        assert w.write(images[1], 100.0) == 10  # next after the largest key
    with RecordIOReader(rec, idx) as r:
        assert [(k, h["label"], h["id"]) for k, h, _ in r] == \
            [(2, 20.0, 2), (5, 50.0, 5), (9, 90.0, 9), (10, 100.0, 10)]


def test_jpeg_option_writes_jpeg_close_to_the_input(tmp_path):
    img = np.full((16, 16, 3), (200, 100, 50), np.uint8)
    with RecordIOWriter(tmp_path / "j.rec", tmp_path / "j.idx", image_format="jpeg") as w:
        w.write(img, 1.0)
    with RecordIOReader(tmp_path / "j.rec", tmp_path / "j.idx") as r:
        assert r.read(0)[1][:2] == b"\xff\xd8"
        assert np.abs(r.read_image(0).astype(int) - img).max() <= 3


def test_hand_built_multi_label_record(tmp_path):
    img = np.arange(3 * 3 * 3, dtype=np.uint8).reshape(3, 3, 3) * 9
    payload = struct.pack("<IfQQ", 2, 0.0, 41, 42) + struct.pack("<2f", 3.5, -1.25) + png(img)
    assert len(payload) % 4 != 0  # so that the padding is exercised
    rec = tmp_path / "hand.rec"
    rec.write_bytes(MAGIC + struct.pack("<I", len(payload)) + payload
                    + b"\0" * (-len(payload) % 4))
    (tmp_path / "hand.idx").write_text("0\t0\n")
    for idx in (None, tmp_path / "hand.idx"):
        with RecordIOReader(rec, idx) as r:
            header, data = r.read(0)
            assert header["flag"] == 2 and (header["id"], header["id2"]) == (41, 42)
            assert header["label"].tolist() == header["labels"].tolist() == [3.5, -1.25]
            assert data == png(img)
            np.testing.assert_array_equal(r.read_image(0), img)


def test_multi_chunk_record_is_joined_with_the_magic(tmp_path):
    """dmlc-core splits where the payload holds the magic (4-aligned) and drops those bytes."""
    img = np.full((2, 2, 3), 77, np.uint8)
    magic_float = float(np.frombuffer(MAGIC, "<f4")[0])
    head = struct.pack("<IfQQ", 2, 0.0, 0, 0)
    tail = png(img)
    # payload = head + MAGIC + MAGIC + tail -> chunks: start(head), middle(empty), end(tail)
    rec = tmp_path / "split.rec"
    rec.write_bytes(chunk(head, 1) + chunk(b"", 2) + chunk(tail, 3) + chunk(head + b"x" * 8))
    with RecordIOReader(rec) as r:
        assert r.keys() == [0, 1]
        header, data = r.read(0)
        assert header["labels"].tolist() == [magic_float, magic_float] and data == tail
        np.testing.assert_array_equal(r.read_image(0), img)
        assert r.read(1)[0]["labels"].tolist() == list(np.frombuffer(b"x" * 8, "<f4"))


@pytest.mark.parametrize("chunks", [[(b"abcd", 2)], [(b"abcd", 1), (b"abcd", 0)],
                                    [(b"abcd", 5)]], ids=["starts-mid", "restarts", "cflag5"])
def test_chunk_flags_out_of_order_are_refused(tmp_path, chunks):
    rec = tmp_path / "bad.rec"
    rec.write_bytes(b"".join(chunk(p, f) for p, f in chunks))
    with pytest.raises(ValueError, match=r"bad\.rec: record at offset 0: chunk flag \d at byte"):
        RecordIOReader(rec)


def test_bad_magic_names_file_and_offset(written):
    rec, idx = written
    offset = int(idx.read_text().splitlines()[1].split("\t")[1])
    data = bytearray(rec.read_bytes())
    data[offset:offset + 4] = b"\x00\x01\x02\x03"
    rec.write_bytes(bytes(data))
    with RecordIOReader(rec, idx) as r:
        r.read(0)  # the other records still read
        with pytest.raises(ValueError, match=rf"train\.rec: record at offset {offset}: bad magic "
                                             r"0x03020100"):
            r.read(1)
    with pytest.raises(ValueError, match=rf"record at offset {offset}: bad magic"):
        RecordIOReader(rec)  # scanning meets it too


def test_truncated_record_reports_needed_and_left_bytes(written):
    rec, idx = written
    offset = int(idx.read_text().splitlines()[2].split("\t")[1])
    size = rec.stat().st_size
    need = size - offset - 8
    rec.write_bytes(rec.read_bytes()[:offset + 8 + 10])
    with RecordIOReader(rec, idx) as r:
        with pytest.raises(ValueError, match=rf"train\.rec: record at offset {offset}: "
                                             rf"truncated, needs {need} bytes, 10 left"):
            r.read(2)
    with pytest.raises(ValueError, match=rf"offset {offset}: truncated, needs {need} bytes"):
        RecordIOReader(rec)
    rec.write_bytes(rec.read_bytes()[:offset + 5])
    with pytest.raises(ValueError, match=rf"offset {offset}: truncated, needs 8 header bytes, 5"):
        RecordIOReader(rec)


def test_huge_declared_length_is_refused_without_allocating(tmp_path):
    rec = tmp_path / "huge.rec"
    rec.write_bytes(MAGIC + struct.pack("<I", 2**29 - 1) + b"\0" * 16)
    with pytest.raises(ValueError, match=r"offset 0: truncated, needs 536870912 bytes, 16 left"):
        RecordIOReader(rec)


@pytest.mark.parametrize("line, message", [
    ("1\t999999", r"line 2: offset 999999 is outside .*train\.rec \(\d+ bytes\)"),
    ("1\t-8", r"line 2: offset -8 is outside"),
    ("zero\t0", r"line 2: expected 'key<TAB>offset' integers, got 'zero\\t0'"),
    ("1\t2\t3", r"line 2: expected 'key<TAB>offset'"),
    ("0\t0", r"line 2: key 0 repeats"),
])
def test_bad_idx_lines(written, line, message):
    rec, idx = written
    idx.write_text("0\t0\n" + line + "\n")
    with pytest.raises(ValueError, match=r"train\.idx: " + message):
        RecordIOReader(rec, idx)


def test_idx_offset_past_the_end_by_less_than_a_header(written):
    rec, idx = written
    size = rec.stat().st_size
    idx.write_text(f"0\t{size - 4}\n")
    with pytest.raises(ValueError, match=rf"line 1: offset {size - 4} is outside"):
        RecordIOReader(rec, idx)


def test_short_payloads_are_refused(tmp_path):
    rec = tmp_path / "short.rec"
    first = chunk(b"x" * 10)
    labels_short = struct.pack("<IfQQ", 1000, 0.0, 0, 0) + b"\0" * 8
    rec.write_bytes(first + chunk(labels_short))
    with RecordIOReader(rec) as r:
        with pytest.raises(ValueError, match=r"short\.rec: record at offset 0: payload of 10 "
                                             r"bytes is shorter than the 24-byte image header"):
            r.read(0)
        with pytest.raises(ValueError, match=rf"record at offset {len(first)}: header declares "
                                             r"1000 float32 labels, payload holds 8 bytes"):
            r.read(1)


def test_undecodable_and_missing_images(tmp_path):
    rec, idx = tmp_path / "x.rec", tmp_path / "x.idx"
    with RecordIOWriter(rec, idx) as w:
        w.write(b"not an image at all", 1.0)
        w.write(b"", [1.0, 1.0])
    with RecordIOReader(rec, idx) as r:
        assert r.read(0)[1] == b"not an image at all"
        with pytest.raises(ValueError, match=r"x\.rec: record at offset 0: image does not decode"):
            r.read_image(0)
        offset = 8 + padded(24 + 19)
        with pytest.raises(ValueError, match=rf"record at offset {offset}: holds no image bytes"):
            r.read_image(1)
        with pytest.raises(ValueError, match=r"key must be one of the 2 keys, got 7"):
            r.read(7)


def test_identity_range_from_the_header_record(tmp_path, images):
    rec, idx = tmp_path / "f.rec", tmp_path / "f.idx"
    with RecordIOWriter(rec, idx) as w:
        w.write(b"", [3.0, 5.0])
        w.write(images[0], 0.0)
        w.write(images[1], 1.0)
        w.write(b"", [1.0, 2.0])  # identity 0: image records [1, 2)
        w.write(b"", [2.0, 3.0])
    with RecordIOReader(rec, idx) as r:
        assert r.identity_range() == (3, 5)
    rec2, idx2 = tmp_path / "g.rec", tmp_path / "g.idx"
    with RecordIOWriter(rec2, idx2) as w:
        w.write(b"", [4.0, 2.5])
    with RecordIOReader(rec2, idx2) as r:
        with pytest.raises(ValueError, match=r"header labels must be integers 1 <= first <= end, "
                                             r"got \[4\.0, 2\.5\]"):
            r.identity_range()


@pytest.mark.parametrize("kwargs, message", [
    ({"image": np.zeros((2, 2, 3), np.float32)}, r"image must be uint8 \(H, W, 3\), got float32"),
    ({"image": np.zeros((2, 2), np.uint8)}, r"image must be uint8 \(H, W, 3\), got uint8 \(2, 2\)"),
    ({"image": "a.png"}, r"image must be a uint8 array or bytes, got str"),
    ({"label": []}, r"label must be a non-empty 1-D sequence, got shape \(0,\)"),
    ({"label": "cat"}, r"label must be a float32, got 'cat'"),
    ({"label": 1e50}, r"label must be a float32, got 1e\+50"),
    ({"key": -1}, r"key must be a non-negative int, got -1"),
    ({"key": 0}, r"key must be unused, got 0 a second time"),
])
def test_writer_rejects_bad_input(tmp_path, kwargs, message):
    with RecordIOWriter(tmp_path / "w.rec", tmp_path / "w.idx") as w:
        w.write(np.zeros((1, 1, 3), np.uint8), 0.0)
        args = {"image": np.zeros((1, 1, 3), np.uint8), "label": 1.0} | kwargs
        with pytest.raises(ValueError, match=message):
            w.write(**args)
    assert (tmp_path / "w.idx").read_text() == "0\t0\n"  # nothing half-written
    with pytest.raises(ValueError, match="must be open"):
        w.write(np.zeros((1, 1, 3), np.uint8), 0.0)


def test_writer_and_reader_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="image_format must be 'png' or 'jpeg', got 'gif'"):
        RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx", image_format="gif")
    with pytest.raises(ValueError, match=r"jpeg_quality must be an int in \[1, 100\], got 0"):
        RecordIOWriter(tmp_path / "a.rec", tmp_path / "a.idx", jpeg_quality=0)
    with pytest.raises(ValueError, match="rec_path must be an existing file"):
        RecordIOReader(tmp_path / "missing.rec")
    (tmp_path / "e.rec").write_bytes(b"")
    with pytest.raises(ValueError, match="idx_path must be an existing file"):
        RecordIOReader(tmp_path / "e.rec", tmp_path / "missing.idx")
    with RecordIOReader(tmp_path / "e.rec") as r:
        assert len(r) == 0 and r.keys() == [] and r.identity_range() is None


def test_heads_read_headers_only_and_take_the_first_of_array_labels(written, images,
                                                                    monkeypatch):
    import os

    rec, idx = written
    with RecordIOReader(rec, idx) as r:
        sizes = []
        real = os.pread
        monkeypatch.setattr(os, "pread", lambda fd, n, pos: sizes.append(n) or real(fd, n, pos))
        heads = r.heads()
        monkeypatch.undo()
        assert len(sizes) == 3 and max(sizes) <= 36  # one short read a record, no image bytes
        assert heads["key"].tolist() == [0, 1, 2] and heads["flag"].tolist() == [0, 3, 0]
        assert heads["label"].tolist() == [3.0, 1.5, 0.0]  # arcface_torch's label[0]
        assert heads["image_bytes"].tolist() == [len(r.read(k)[1]) for k in range(3)]
        assert r.heads([2])["label"].tolist() == [0.0]
        with pytest.raises(ValueError, match=r"key must be one of the 3 keys, got 9"):
            r.heads([9])


def test_heads_of_split_short_and_header_only_records(tmp_path):
    head = struct.pack("<IfQQ", 2, 0.0, 0, 0)
    rec = tmp_path / "split.rec"
    rec.write_bytes(chunk(head, 1) + chunk(b"", 2) + chunk(b"tail", 3)  # split: read whole
                    + chunk(struct.pack("<IfQQ", 0, 7.0, 0, 0))  # 24 bytes: header only
                    + chunk(struct.pack("<IfQQ", 1, 0.0, 0, 0) + struct.pack("<f", 5.0)))
    with RecordIOReader(rec) as r:
        heads = r.heads()
        assert heads["label"][1:].tolist() == [7.0, 5.0]
        assert heads["image_bytes"].tolist() == [4, 0, 0]
    bad = tmp_path / "short.rec"
    bad.write_bytes(chunk(struct.pack("<IfQQ", 9, 0.0, 0, 0) + b"\0" * 8))
    with RecordIOReader(bad) as r:
        with pytest.raises(ValueError, match=r"short\.rec: record at offset 0: header declares "
                                             r"9 float32 labels, payload holds 8 bytes"):
            r.heads()
