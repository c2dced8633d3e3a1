"""Documented errors of the data modules other than align and cache (splits, the renderer's
front end, scenes, RecordIO, the interchange formats, the generator's parameters): each public
function raises what its docstring's ``Raises:`` section says."""

from __future__ import annotations

import numpy as np
from documented_raises import sweep_tests

from arclab.data import formats, params, real_sets, recordio, scenes, splits, synth
from arclab.data.params import SynthConfig

MODULES = [splits, synth, scenes, recordio, formats, params, real_sets]

NO_ERRORS = {  # public functions and classes with no error to document, and why
    "arclab.data.synth.plane_landmarks": "maps identity_params/nuisance_params tensors",
    "arclab.data.synth.face_boxes": "maps identity_params/nuisance_params tensors",
}

CFG = SynthConfig()


def _a_file(folder, data: bytes = b"not a pickle"):
    path = folder / "bad.bin"
    path.write_bytes(data)
    return path


# (function, exception, message pattern, call): each call must raise exactly that
CASES = [
    # data/splits
    (splits.identity_items, ValueError, "identities must be a non-empty 1-D list",
     lambda t: splits.identity_items([], 2)),
    (splits.identity_items, ValueError, "first_index must be an integer >= 0",
     lambda t: splits.identity_items([1], 2, first_index=-1)),
    (splits.training_set, ValueError, "n_per_identity must be an integer >= 1, got True",
     lambda t: splits.training_set(CFG, 3, True)),
    (splits.verification_pairs, ValueError, "n_pairs must be an integer >= 20",
     lambda t: splits.verification_pairs(CFG, 10, 10)),
    (splits.lfw_pairs, ValueError, "pairs_per_fold must be an integer >= 2",
     lambda t: splits.lfw_pairs(CFG, 10, 1)),
    (splits.cfp_fp_pairs, ValueError, "n_identities must be an integer >= 2",
     lambda t: splits.cfp_fp_pairs(CFG, 1)),
    (splits.cfp_fp_pairs, ValueError, r"profile_yaw_deg must be \(low, high\)",
     lambda t: splits.cfp_fp_pairs(CFG, 10, 20, profile_yaw_deg=(80.0, 55.0))),
    (splits.agedb_pairs, ValueError, r"min_gap must be in \(0, 1\), got '0.5'",
     lambda t: splits.agedb_pairs(CFG, 10, 20, min_gap="0.5")),
    (splits.all_pairs_set, ValueError, "n_identities must be an integer >= 2",
     lambda t: splits.all_pairs_set(CFG, 1, 3)),
    (splits.video_tracks, ValueError, "n_frames must be an integer >= 2",
     lambda t: splits.video_tracks(CFG, 2, 1)),
    (splits.inject_label_noise, ValueError, r"open_rate must be in \[0, 1\], got True",
     lambda t: splits.inject_label_noise([0, 1], open_rate=True)),
    (splits.inject_label_noise, ValueError, "closed_rate \\+ open_rate must be <= 1",
     lambda t: splits.inject_label_noise([0, 1], closed_rate=0.6, open_rate=0.6)),
    (splits.inject_label_noise, ValueError, "n_classes must be an integer >= 1",
     lambda t: splits.inject_label_noise([0, 1], n_classes=1.5)),
    (splits.noisy_training_set, ValueError, "closed_rate must be in",
     lambda t: splits.noisy_training_set(CFG, 3, 2, closed_rate=-0.1)),
    (splits.make_protocol, ValueError, "protocol must be one of",
     lambda t: splits.make_protocol("ijbc", CFG)),
    (splits.make_protocol, ValueError, "n_pairs must be an integer >= 20",
     lambda t: splits.make_protocol("agedb", CFG, n_pairs=4)),
    # data/synth, data/scenes
    (synth.render_faces, ValueError, "size must be an integer >= 16",
     lambda t: synth.render_faces(CFG, [0], [0], size=8)),
    (synth.render_faces, ValueError, "unknown nuisance override 'yawn'",
     lambda t: synth.render_faces(CFG, [0], [0], size=16, yawn=1.0)),
    (scenes.render_scene, ValueError, "height and width must be >= 32",
     lambda t: scenes.render_scene(CFG, 0, height=16)),
    (scenes.render_scene, ValueError, r"n_faces must be \(low, high\)",
     lambda t: scenes.render_scene(CFG, 0, n_faces=(3, 2))),
    # data/recordio
    (recordio.decode_rgb, ValueError, "where.rec: image does not decode",
     lambda t: recordio.decode_rgb(b"not an image", "where.rec")),
    (recordio.RecordIOWriter, ValueError, "image_format must be 'png' or 'jpeg'",
     lambda t: recordio.RecordIOWriter(t / "a.rec", t / "a.idx", image_format="gif")),
    (recordio.RecordIOWriter, OSError, "missing",
     lambda t: recordio.RecordIOWriter(t / "missing" / "a.rec", t / "missing" / "a.idx")),
    (recordio.RecordIOReader, ValueError, "rec_path must be an existing file",
     lambda t: recordio.RecordIOReader(t / "missing.rec")),
    (recordio.RecordIOReader, ValueError, "bad magic",
     lambda t: recordio.RecordIOReader(_a_file(t, b"\0" * 64))),
    # data/formats
    (formats.load_bin, ValueError, "path must be an existing file",
     lambda t: formats.load_bin(t / "missing.bin")),
    (formats.load_bin, ValueError, "not a readable pickle",
     lambda t: formats.load_bin(_a_file(t))),
    (formats.write_bin, ValueError, "images must be 2 per pair",
     lambda t: formats.write_bin(t / "a.bin", np.zeros((1, 2, 2, 3), np.uint8), [True])),
    (formats.write_bin, OSError, "missing",
     lambda t: formats.write_bin(t / "missing" / "a.bin", np.zeros((2, 2, 2, 3), np.uint8),
                                 [True])),
    (formats.read_wider_labels, ValueError, "path must be an existing file",
     lambda t: formats.read_wider_labels(t)),
    (formats.read_wider_labels, ValueError, "holds no '# image' lines",
     lambda t: formats.read_wider_labels(_a_file(t, b"\n"))),
    (formats.ImageFolderFaces, ValueError, "root must be an existing folder",
     lambda t: formats.ImageFolderFaces(t / "missing")),
    (formats.ImageFolderFaces, ValueError, "image_size must be None, an int > 0",
     lambda t: formats.ImageFolderFaces(t, image_size=0)),
    # data/real_sets
    (real_sets.train_data_section, ValueError, r"train_data: '.*none' does not exist",
     lambda t: real_sets.train_data_section(t / "none")),
    (real_sets.train_data_section, ValueError, r"train_data: '.*bad\.bin' is a file but not a "
     r"\.rec", lambda t: real_sets.train_data_section(_a_file(t))),
    (real_sets.train_data_section, ValueError, "holds no train.rec and no sub-folder of images",
     lambda t: real_sets.train_data_section(t)),
    (real_sets.eval_data_sections, ValueError, r"eval_data: '.*none' does not exist",
     lambda t: real_sets.eval_data_sections(t / "none")),
    (real_sets.eval_data_sections, ValueError, r"eval_data: '.*a\.txt' is not a \.bin",
     lambda t: real_sets.eval_data_sections(_a_file(t).rename(t / "a.txt"))),
    (real_sets.eval_data_sections, ValueError, "eval_data: folder .* holds no .bin",
     lambda t: real_sets.eval_data_sections(t)),
    (real_sets.identity_folder, ValueError, "eval_data: root must be an existing folder",
     lambda t: real_sets.identity_folder(t / "none", 8)),
    # data/params
    (params.SynthConfig, ValueError, "blur_px must be a finite number >= 0, got True",
     lambda t: SynthConfig(blur_px=True)),
    (params.SynthConfig, ValueError, r"jpeg_rate must be in \[0, 1\]",
     lambda t: SynthConfig(jpeg_rate=2.0)),
    (params.identity_params, ValueError, "identities must be a 1-D array of non-negative",
     lambda t: params.identity_params(CFG, [-1])),
    (params.nuisance_params, ValueError, r"indices must have the length of identities \(2\)",
     lambda t: params.nuisance_params(CFG, [0, 1], [0])),
    (params.nuisance_params, ValueError, "indices must be a 1-D array of non-negative",
     lambda t: params.nuisance_params(CFG, [0], [0.5])),
]

(test_documented_errors_are_raised, test_docstring_lists_exactly_the_errors_tested,
 test_every_public_function_and_class_is_covered) = sweep_tests(CASES, MODULES, NO_ERRORS)
