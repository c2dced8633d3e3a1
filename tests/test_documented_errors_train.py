"""Documented errors of the training package's checking functions (config, spec, checkpoint
state, data sources, validation, convergence): each public function raises what its
docstring's ``Raises:`` section says. Nothing here renders a data set or trains."""

from __future__ import annotations

import types

import torch
from documented_raises import sweep_tests

from arclab.train import config, convergence, sources, spec, state, validation
from arclab.train.config import TrainConfig

MODULES = [config, spec, state, sources, validation, convergence]

NO_ERRORS = {  # public functions and classes with no error to document, and why
    "arclab.train.config.learning_rate": "arithmetic on a checked TrainConfig",
    "arclab.train.config.weights_key": "filters a config dict",
    "arclab.train.spec.run_dir": "hashes a loaded (checked) spec",
    "arclab.train.convergence.schedule_limited": "words a convergence_table's rows",
    "arclab.train.state.Parts": "a record build fills in",
    "arclab.train.state.Record": "a record of logged values",
    "arclab.train.state.build": "builds from a checked TrainConfig and teacher",
    "arclab.train.state.flush_log": "flushes an open file (or skips None)",
    "arclab.train.state.rank_and_world": "reads the process group",
    "arclab.train.state.same_run": "compares two config dicts",
    "arclab.train.state.save_checkpoint": "writes a run's own parts",
    "arclab.train.sources.data_size": "reads a data section check_data has passed",
    "arclab.train.sources.synth_training_set": "reads a data section check_data has passed",
}

SMALL = {"train": {"input_size": 32}, "data": {"n_identities": 4, "n_per_identity": 2}}
CPU = types.SimpleNamespace(device=torch.device("cpu"))  # the part of Parts resume reads first


def _file(folder, name: str, data: bytes):
    path = folder / name
    path.write_bytes(data)
    return path


def _uint8_item(side: int):
    return [(torch.zeros(3, side, side, dtype=torch.uint8), 0)]


# (function, exception, message pattern, call): each call must raise exactly that
CASES = [
    # train/config
    (config.TrainConfig, ValueError, "backbone must be one of",
     lambda t: TrainConfig(backbone="r999")),
    (config.TrainConfig, ValueError, "epochs must be a positive integer, got True",
     lambda t: TrainConfig(epochs=True)),
    (config.load_config, ValueError, r"unknown config keys \['lr_max'\]",
     lambda t: config.load_config({"lr_max": 1.0})),
    (config.load_config, ValueError, "milestones must be a list of fractions",
     lambda t: config.load_config({"milestones": 0.5})),
    (config.load_config, ValueError, "bad.yaml' is not valid YAML at line 2",
     lambda t: config.load_config(_file(t, "bad.yaml", b"lr: [0.1\n"))),
    (config.load_config, OSError, "missing.yaml",
     lambda t: config.load_config(t / "missing.yaml")),
    # train/spec
    (spec.load_spec, ValueError, "train.backbone must be one of",
     lambda t: spec.load_spec({"train": {"backbone": "r999"}})),
    (spec.load_spec, ValueError, "not valid YAML at line 2",
     lambda t: spec.load_spec(_file(t, "bad.yaml", b"train: {a: [\n"))),
    (spec.load_spec, OSError, "missing.yaml",
     lambda t: spec.load_spec(t / "missing.yaml")),
    (spec.check_run, ValueError, "device 'tpu' cannot be used",
     lambda t: spec.check_run(spec.load_spec(SMALL), t / "run", device="tpu")),
    (spec.run_spec, ValueError, "train.backbone must be one of",
     lambda t: spec.run_spec({"train": {"backbone": "r999"}}, t / "run")),
    (spec.tutorial_spec, ValueError, "train.margin must be one of",
     lambda t: spec.tutorial_spec(margin="arc")),
    # train/state
    (state.check_max_steps, ValueError, "max_steps must be a positive integer, got True",
     lambda t: state.check_max_steps(True)),
    (state.check_resume, ValueError, "junk.pt is not a checkpoint",
     lambda t: state.check_resume(_file(t, "junk.pt", b"junk"), TrainConfig())),
    (state.resume, ValueError, "junk.pt is not a checkpoint",
     lambda t: state.resume(_file(t, "junk.pt", b"junk"), TrainConfig(), CPU)),
    (state.read_checkpoint, ValueError, "junk.pt is not a checkpoint",
     lambda t: state.read_checkpoint(_file(t, "junk.pt", b"junk"))),
    (state.keep_log, ValueError, "log.jsonl line 2 is not a JSON object with a step",
     lambda t: state.keep_log(_file(t, "log.jsonl", b'{"step": 0}\nnot json\n{"step": 1}\n'),
                              5)),
    (state.check_teacher, ValueError, r"teacher must be \{'model': nn.Module",
     lambda t: state.check_teacher({"model": 1}, TrainConfig(), False, None, "cpu")),
    (state.check_teacher, ValueError, r"teacher\['weight'\] must be a finite number >= 0",
     lambda t: state.check_teacher({"model": torch.nn.Identity(), "weight": -1.0},
                                   TrainConfig(), False, None, "cpu")),
    # train/sources
    (sources.DecodedFaces, ValueError, r"is \(2, 2\), expected \(4, 4\) \(train.input_size\)",
     lambda t: sources.DecodedFaces(_uint8_item(2), 4)[(0, False)]),
    (sources.check_data, ValueError, "data.source must be one of",
     lambda t: sources.check_data({"source": "lfw"})),
    (sources.check_data, ValueError, "data.rec is required for source 'recordio'",
     lambda t: sources.check_data({"source": "recordio"})),
    (sources.readable_file, ValueError, "data.rec '.*missing.rec' is not an existing file",
     lambda t: sources.readable_file("data.rec", t / "missing.rec")),
    (sources.synth_config, ValueError, r"unknown data.synth keys \['yawn'\]",
     lambda t: sources.synth_config({"synth": {"yawn": 1}})),
    (sources.build_dataset, ValueError, "holds no image records",
     lambda t: sources.build_dataset({"source": "recordio", "rec": str(_header_only(t))}, 16)),
    # train/validation
    (validation.check_validation, ValueError, "validation.ijbc must be a SynthFaces protocol",
     lambda t: validation.check_validation({"ijbc": {}})),
    (validation.build_validator, ValueError, "junk.bin: not a readable pickle",
     lambda t: validation.build_validator({"lfw": {"bin": str(_file(t, "junk.bin", b"x"))}},
                                          {}, 32)),
    # train/convergence
    (convergence.convergence, ValueError, "losses must hold at least 20 steps, got 5",
     lambda t: convergence.convergence([1.0] * 5)),
    (convergence.convergence, ValueError, "losses must be finite",
     lambda t: convergence.convergence([float("nan")] * 20)),
    (convergence.convergence_table, ValueError, "must hold 'losses'",
     lambda t: convergence.convergence_table({"a": {0: {"target_angles": []}}})),
    (convergence.convergence_table, ValueError, r"last_decay must be a fraction of the steps "
     r"in \(0, 1\], got 75", lambda t: convergence.convergence_table({}, last_decay=75)),
]


def _header_only(folder):
    from arclab.data.recordio import RecordIOWriter

    rec = folder / "train.rec"
    with RecordIOWriter(rec, folder / "train.idx") as writer:
        writer.write(b"", 0.0)
    return rec


(test_documented_errors_are_raised, test_docstring_lists_exactly_the_errors_tested,
 test_every_public_function_and_class_is_covered) = sweep_tests(CASES, MODULES, NO_ERRORS)
