"""Faults lose nothing: training processes killed (SIGKILL) at random moments and resumed end
with the uninterrupted run's log and bit-identical weights; a writer killed inside
:func:`arclab.atomic.atomic_path` leaves the old file, and its temporary file goes on the next
write.

Every process runs with one CPU thread (``OMP_NUM_THREADS=1``): the reference and the killed
runs then sum in the same order, so their tensors can be compared bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from arclab.atomic import atomic_path, temp_name

SPEC = {"train": {"backbone": "mbf", "embedding_size": 16, "input_size": 16, "batch_size": 8,
                  "epochs": 10, "s": 16.0, "lr": 0.05, "warmup_steps": 2,
                  "checkpoint_every": 4, "validate_every": 3},  # 30 steps, validations at
        "data": {"source": "synthfaces", "n_identities": 6, "n_per_identity": 4},  # 3, 6, ..
        "validation": {"lfw": {"n_identities": 10, "pairs_per_fold": 4}}}
KILLS = 6                # SIGKILLs per test run, each within a few seconds of a start
BUDGET_S = 40.0          # no kill starts after this much time in the kill loop
WALL_FIELDS = {"images_per_s"}  # wall-clock: differs between any two runs by nature


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "ARCLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore"}


def _start(spec: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "arclab.train", str(spec), "--out", str(out),
                             "--device", "cpu", "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _log(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_FIELDS}
            for line in (out / "log.jsonl").read_text().splitlines()]


def _stamp(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def _wait(proc: subprocess.Popen, until) -> None:
    while proc.poll() is None and not until():
        time.sleep(0.005)


def _await_moment(proc: subprocess.Popen, kind: int, out: Path, t0: float,
                  rng: random.Random) -> None:
    """Wait until the moment a kill of ``kind`` (0, 1, 2: see :func:`_kill_at_random`)."""
    spec_json, ckpt = out / "spec.json", out / "checkpoint.pt"
    if kind == 0:
        _wait(proc, lambda: spec_json.exists() and spec_json.stat().st_mtime >= t0)
        delay = rng.uniform(0.3, 1.5)
    elif kind == 1:
        for _ in range(rng.randint(1, 2)):
            before = _stamp(ckpt)
            _wait(proc, lambda: _stamp(ckpt) != before)  # noqa: B023 - called at once
        delay = rng.uniform(0, 0.4)
    else:
        delay = rng.uniform(0, 3)
    deadline = time.time() + delay
    _wait(proc, lambda: time.time() >= deadline)


def _kill_at_random(spec: Path, out: Path, env: dict, rng: random.Random) -> list[str]:
    """Start, SIGKILL at a random moment, repeat (at most KILLS times); returns where each kill
    landed. In turn: 0.3-1.5 s after the run folder's spec.json is written (data set, resume,
    log cut, first steps); 0-0.4 s after the first or second checkpoint this process writes
    (steps, checkpoint and validation writes); 0-3 s after the start (start-up, spec checks)."""
    landed, begin = [], time.time()
    for k in range(KILLS):
        if time.time() - begin > BUDGET_S:
            break
        t0 = time.time()
        proc = _start(spec, out, env)
        _await_moment(proc, k % 3, out, t0, rng)
        if proc.poll() is not None:  # finished before its kill
            assert proc.returncode == 0, proc.stderr.read()
            landed.append("after the end")
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        ckpt = out / "checkpoint.pt"
        step = torch.load(ckpt, weights_only=True)["step"] if ckpt.exists() else 0
        landed.append(f"{time.time() - t0:.1f} s after the start, checkpoint at step {step}")
    return landed


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(tmp_path):
    spec, env = tmp_path / "spec.yaml", _env(tmp_path)
    spec.write_text(yaml.safe_dump(SPEC))
    whole = subprocess.run([sys.executable, "-m", "arclab.train", str(spec), "--out",
                            str(tmp_path / "whole"), "--device", "cpu", "--no-progress"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    seed = random.SystemRandom().randrange(2**32)
    landed = _kill_at_random(spec, tmp_path / "killed", env, random.Random(seed))
    done = subprocess.run([sys.executable, "-m", "arclab.train", str(spec), "--out",
                           str(tmp_path / "killed"), "--device", "cpu", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (seed, landed, done.stderr)
    print(f"seed {seed}; kills: {landed}")
    assert any("after the start" in k for k in landed)  # at least one run really killed

    a, b = _log(tmp_path / "whole"), _log(tmp_path / "killed")
    assert [r["step"] for r in a if "validation" in r] == list(range(3, 31, 3))
    assert b == a, (seed, landed)  # every step once, every validation once, same values
    x = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    y = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert x["step"] == y["step"] == 30
    for key in ("losses", "validation", "target_angles", "config"):
        assert x[key] == y[key], key
    for part in ("model", "head"):
        for name, tensor in x[part].items():
            assert torch.equal(tensor, y[part][name]), (seed, landed, part, name)
    for i, state in x["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], y["optimizer"]["state"][i]["momentum_buffer"])
    # the last checkpoint write removed what killed writes of it had left
    assert not list((tmp_path / "killed").glob(".checkpoint.pt.*.tmp"))


WRITER = """
import sys, time
from arclab.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of the new")
    print(tmp, flush=True)
    time.sleep(60)
"""


def _writer(target: Path) -> tuple[subprocess.Popen, Path]:
    """A process inside atomic_path(target), stopped after writing part of its file."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return proc, Path(proc.stdout.readline().strip())


@pytest.fixture()
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def test_a_killed_atomic_write_keeps_the_old_file_and_the_next_write_removes_its_temp(
        tmp_path, umask):
    target = tmp_path / "results.json"
    target.write_text("old")
    dead, dead_tmp = _writer(target)
    live, live_tmp = _writer(target)
    dead.send_signal(signal.SIGKILL)
    dead.wait()
    assert target.read_text() == "old" and dead_tmp.read_text() == "half of the new"
    aged = temp_name(target, pid=live.pid)  # a live PID (perhaps reused) but two days old
    aged.write_text("x")
    os.utime(aged, (time.time() - 2 * 86400,) * 2)
    other = tmp_path / ".results.json.backup.tmp"  # not the helper's pattern: never touched
    other.write_text("keep")
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("new")
        assert target.read_text() == "new"
        assert not dead_tmp.exists() and not aged.exists()
        assert live_tmp.read_text() == "half of the new"  # a live writer's file is its own
        assert other.read_text() == "keep"
        assert target.stat().st_mode & 0o777 == 0o644  # umask 022, not mkstemp's 0600
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
        live.stdout.close()
    dead.stdout.close()
    for mask, mode in ((0o077, 0o600), (0o002, 0o664)):
        umask(mask)
        with atomic_path(target) as tmp:
            tmp.write_text(f"umask {mask:o}")
        assert target.stat().st_mode & 0o777 == mode
        assert not live_tmp.exists()  # its writer is dead now
    assert sorted(p.name for p in tmp_path.iterdir()) == [".results.json.backup.tmp",
                                                          "results.json"]
