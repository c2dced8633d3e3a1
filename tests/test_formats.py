"""Verification .bin pickles (incl. hostile ones), WIDER FACE label.txt, identity folders."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from arclab.data.formats import ImageFolderFaces, load_bin, read_wider_labels, write_bin


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def pairs():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (4, 6, 5, 3), dtype=np.uint8), [True, False]


# --- verification .bin -------------------------------------------------------------------------

def test_bin_round_trip_is_exact(tmp_path, pairs):
    images, issame = pairs
    path = tmp_path / "lfw.bin"
    write_bin(path, images, issame)
    with open(path, "rb") as f:
        assert f.read(2) == b"\x80\x04"  # pickle protocol 4
    got, same = load_bin(path)
    assert got.dtype == np.uint8 and got.shape == (4, 6, 5, 3)
    np.testing.assert_array_equal(got, images)
    assert same.dtype == bool and same.tolist() == [True, False]


def test_bin_image_size_resizes(tmp_path):
    images = np.zeros((2, 6, 5, 3), np.uint8)
    images[0], images[1] = (10, 20, 30), (200, 100, 0)
    path = tmp_path / "a.bin"
    write_bin(path, list(images), [True])
    got, _ = load_bin(path, image_size=(3, 4))
    assert got.shape == (2, 3, 4, 3)
    assert got[0].reshape(-1, 3).tolist() == [[10, 20, 30]] * 12
    assert got[1].reshape(-1, 3).tolist() == [[200, 100, 0]] * 12
    assert load_bin(path, image_size=6)[0].shape == (2, 6, 6, 3)
    with pytest.raises(ValueError, match=r"image_size must be None, an int > 0 or \(H, W\), got 0"):
        load_bin(path, image_size=0)


def test_bin_mixed_sizes_need_image_size(tmp_path):
    path = tmp_path / "mixed.bin"
    path.write_bytes(pickle.dumps(([png(np.zeros((4, 4, 3), np.uint8)),
                                    png(np.zeros((5, 4, 3), np.uint8))], [False])))
    with pytest.raises(ValueError, match=r"mixed\.bin: image 1 is \(5, 4\), image 0 \(4, 4\); "
                                         "pass image_size"):
        load_bin(path)
    assert load_bin(path, image_size=4)[0].shape == (2, 4, 4, 3)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_bin_with_numpy_bool_array_loads(tmp_path, pairs, protocol):
    images, _ = pairs
    issame = np.array([False, True])
    path = tmp_path / "old.bin"
    path.write_bytes(pickle.dumps(([png(im) for im in images], issame), protocol=protocol))
    got, same = load_bin(path)
    np.testing.assert_array_equal(got, images)
    assert same.dtype == bool and same.tolist() == [False, True]


def test_python2_style_bin_loads(tmp_path):
    """Python 2 wrote the images as byte strings (BINSTRING), which load as latin-1 text."""
    imgs = [np.full((2, 3, 3), v, np.uint8) for v in (0, 128, 255, 7)]
    body = b"".join(b"T" + struct.pack("<i", len(png(im))) + png(im) for im in imgs)
    # PROTO 2, MARK, [ MARK images APPENDS, [ MARK True False APPENDS, TUPLE, STOP
    data = b"\x80\x02(](" + body + b"e](\x88\x89et."
    path = tmp_path / "py2.bin"
    path.write_bytes(data)
    got, same = load_bin(path)
    np.testing.assert_array_equal(got, np.stack(imgs))
    assert same.tolist() == [True, False]


class SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class EvalCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",)


class HugeArray:
    def __reduce__(self):  # numpy's own reconstructor, asked for a terabyte
        return np.empty(0).__reduce__()[0], (np.ndarray, (10**12,), b"b")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("evil, refused", [
    (SystemCall, rf"refuses global {os.system.__module__}\.system"),
    (EvalCall, r"refuses global (builtins|__builtin__)\.eval"),  # protocol < 3: __builtin__
])
def test_malicious_bin_is_refused_before_it_runs(tmp_path, protocol, evil, refused):
    marker = tmp_path / "pwned"
    good = png(np.zeros((2, 2, 3), np.uint8))
    for payload in (evil(marker), ([good, evil(marker)], [True])):
        path = tmp_path / "evil.bin"
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
        with pytest.raises(ValueError, match=r"evil\.bin: " + refused):
            load_bin(path)
        assert not marker.exists()


@pytest.mark.parametrize("payload, refused", [
    (HugeArray(), r"refuses _reconstruct\(ndarray, \(1000000000000,\)\)"),
    (([b"x", b"y"], np.array([True, False], dtype=object)), r"refuses dtype 'O8'"),
    (([b"x", b"y"], np.zeros(1, dtype=[("a", "f4")])), r"refuses dtype 'V4'"),
    (np.float64(1.0), r"refuses global numpy\._?core\.multiarray\.scalar"),
])
def test_numpy_globals_are_only_used_for_plain_arrays(tmp_path, payload, refused):
    path = tmp_path / "np.bin"
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(ValueError, match=r"np\.bin: " + refused):
        load_bin(path)


@pytest.mark.parametrize("obj, message", [
    ({"bins": []}, r"must hold a \(bins, issame\) pair, got dict"),
    ((1, 2, 3), r"must hold a \(bins, issame\) pair, got tuple"),
    (([], []), r"bins must be a non-empty list, got list"),
    (("ab", [True]), r"bins must be a non-empty list, got str"),
    (([b"a", 3], [True]), r"bins must all be bytes, got \['bytes', 'int'\]"),
    (([b"a", b"b"], [1]), r"issame must be a list or 1-D array of bools, got list"),
    (([b"a", b"b"], np.array([1])), r"issame must be a list or 1-D array of bools, got ndarray i"),
    (([b"a", b"b"], np.array([[True]])), r"issame must be a list or 1-D array of bools"),
    (([b"a", b"b", b"c", b"d"], [True]), r"bins must hold 2 images per pair, got 4 images for 1"),
    (([b"a", b"b"], [True]), r"image 0: image does not decode"),
])
def test_bin_wrong_structure(tmp_path, obj, message):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(ValueError, match=r"bad\.bin: " + message):
        load_bin(path)


def test_bin_truncated_or_not_a_pickle(tmp_path, pairs):
    path = tmp_path / "cut.bin"
    write_bin(path, *pairs)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 3, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"cut\.bin: not a readable pickle"):
            load_bin(path)
    path.write_bytes(png(np.zeros((2, 2, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"cut\.bin: not a readable pickle"):
        load_bin(path)
    # a length field far beyond the file: refused by the opcode scan, nothing allocated
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**62) + b"abc")
    with pytest.raises(ValueError, match=r"not a readable pickle .*only 3 remain"):
        load_bin(path)
    with pytest.raises(ValueError, match=r"path must be an existing file"):
        load_bin(tmp_path / "missing.bin")


def test_write_bin_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"images must be 2 per pair, got 3 images for 1 pairs"):
        write_bin(tmp_path / "x.bin", np.zeros((3, 2, 2, 3), np.uint8), [True])
    with pytest.raises(ValueError, match=r"images\[1\] must be uint8 \(H, W, 3\), got float64"):
        write_bin(tmp_path / "x.bin", [np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3))], [1])
    assert not (tmp_path / "x.bin").exists()


# --- WIDER FACE label.txt ----------------------------------------------------------------------

TRAIN = """\
# 0--Parade/a.jpg
10 20 30 40 15.0 25.0 0.0 35.0 26.0 0.0 -1.0 -1.0 -1.0 20.5 50.0 1.0 30.0 51.0 0.0 0.82
1 2 3 4 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0

# 1--Handshaking/b.jpg
# 2--Demo/c.jpg 1024 768
5 6 7 8
"""


def test_wider_labels_exact(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text(TRAIN)
    a, b, c = read_wider_labels(path)
    assert [a["path"], b["path"], c["path"]] == ["0--Parade/a.jpg", "1--Handshaking/b.jpg",
                                                 "2--Demo/c.jpg"]
    assert a["boxes"].dtype == np.float32
    assert a["boxes"].tolist() == [[10, 20, 40, 60], [1, 2, 4, 6]]
    nan = np.nan
    np.testing.assert_array_equal(a["landmarks"], np.array(
        [[[15, 25], [35, 26], [nan, nan], [20.5, 50], [30, 51]], [[nan, nan]] * 5], np.float32))
    assert a["landmarks"].dtype == np.float32
    assert a["landmark_visible"].tolist() == [[True, True, False, True, True], [False] * 5]
    assert b["boxes"].shape == (0, 4) and b["landmarks"].shape == (0, 5, 2)
    assert b["landmark_visible"].shape == (0, 5)
    assert c["boxes"].tolist() == [[5, 6, 12, 14]]
    assert np.isnan(c["landmarks"]).all() and not c["landmark_visible"].any()


@pytest.mark.parametrize("text, message", [
    ("1 2 3 4\n", r"line 1: a face line before the first '# image' line"),
    ("# a.jpg\n1 2 3\n", r"line 2: expected 4 or 20 finite numbers, got 3: '1 2 3'"),
    ("# a.jpg\n" + "1 " * 19 + "\n", r"line 2: expected 4 or 20 finite numbers, got 19"),
    ("# a.jpg\n1 2 3 4\n1 2 nan 4\n", r"line 3: expected 4 or 20 finite numbers"),
    ("# a.jpg\n\n1 2 x 4\n", r"line 3: expected numbers, got '1 2 x 4'"),
    ("# a.jpg\n1 2 -3 4\n", r"line 2: box width and height must be >= 0, got \[-3\.0, 4\.0\]"),
    ("# a.jpg\n#\n", r"line 2: expected '# relative/path.jpg \[width height\]', got '#'"),
    ("# a.jpg 12\n", r"line 1: expected '# relative/path.jpg"),
    ("# a.jpg 12 wide\n", r"line 1: expected '# relative/path.jpg"),
    ("# /etc/passwd\n", r"line 1: image path must be relative, without '\.\.', got '/etc/passwd'"),
    ("# a/../../x.jpg\n", r"line 1: image path must be relative"),
    ("\n\n", r"holds no '# image' lines"),
])
def test_wider_malformed_lines(tmp_path, text, message):
    path = tmp_path / "label.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"label\.txt: " + message):
        read_wider_labels(path)


def test_wider_not_text_or_missing(tmp_path):
    path = tmp_path / "label.txt"
    path.write_bytes(b"# a.jpg\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"label\.txt: not UTF-8 text"):
        read_wider_labels(path)
    with pytest.raises(ValueError, match=r"path must be an existing file"):
        read_wider_labels(tmp_path / "nope.txt")


# --- identity folders --------------------------------------------------------------------------

def test_image_folder_labels_pixels_and_resize(tmp_path):
    rng = np.random.default_rng(2)
    imgs = {name: [rng.integers(0, 256, (4, 5, 3), dtype=np.uint8) for _ in range(n)]
            for name, n in [("zoe", 1), ("adam", 2)]}
    for name, items in imgs.items():
        (tmp_path / name).mkdir()
        for i, img in enumerate(items):
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    (tmp_path / "adam" / "notes.txt").write_text("not an image")
    (tmp_path / ".cache").mkdir()  # hidden: skipped
    ds = ImageFolderFaces(tmp_path)
    assert ds.classes == ["adam", "zoe"] and len(ds) == 3
    expected = [(imgs["adam"][0], 0), (imgs["adam"][1], 0), (imgs["zoe"][0], 1)]
    for i, (img, label) in enumerate(expected):
        x, y = ds[i]
        assert x.dtype == torch.uint8 and tuple(x.shape) == (3, 4, 5) and y == label
        np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), img)
    assert tuple(ImageFolderFaces(tmp_path, image_size=(2, 3))[0][0].shape) == (3, 2, 3)
    with pytest.raises(IndexError):
        ds[3]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=r"root must be an existing folder, got '.*missing'"):
        ImageFolderFaces(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"root must hold one folder of images per identity"):
        ImageFolderFaces(tmp_path)
    (tmp_path / "ann").mkdir()
    with pytest.raises(ValueError, match=r"root must hold images in every identity folder, "
                                         r"got none in .*ann"):
        ImageFolderFaces(tmp_path)
    (tmp_path / "ann" / "0.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = ImageFolderFaces(tmp_path)
    with pytest.raises(ValueError, match=r"ann/0\.jpg: image does not decode"):
        ds[0]
