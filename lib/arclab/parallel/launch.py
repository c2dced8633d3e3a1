"""Run a function on several local processes, each in a torch.distributed process group.

For notebooks and tests: ``launch(fn, 2)`` gives the multi-rank behaviour of ``torchrun`` on
one machine (gloo on CPU by default) and returns what each rank returned. A rank that raises
does not leave the others hanging in a collective: the launcher terminates them and raises.

Taught in: notebooks/07_sharded_fc.ipynb
"""

from __future__ import annotations

import datetime
import io
import os
import queue as queue_lib
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["launch"]

_POLL_S = 0.1
_GRACE_S = 5.0


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker(fn: Callable, rank: int, world_size: int, args: tuple, backend: str,
            init_method: str, timeout_s: float, threads: int, results: Any) -> None:
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        else:
            torch.set_num_threads(threads)
        dist.init_process_group(backend, init_method=init_method, rank=rank,
                                world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        value = fn(rank, world_size, *args)
        dist.destroy_process_group()
        buffer = io.BytesIO()
        torch.save(value, buffer)
        results.put((rank, "ok", buffer.getvalue()))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises
        text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        results.put((rank, "error", f"{type(err).__name__}: {err}\n{text}"))


def _stop(processes: list, grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    for p in processes:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=grace_s)
        if p.is_alive():
            p.kill()
            p.join()


def launch(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
           timeout_s: float = 60.0) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` spawned processes; their results.

    Each process initialises a process group (``backend``; rendezvous through a file in a
    temporary folder; collective timeout ``timeout_s``), calls ``fn`` and destroys the group.
    ``fn`` and ``args`` must be picklable (a module-level function). A rank's return value is
    sent back with ``torch.save`` and read with ``torch.load(weights_only=True)``: tensors,
    numbers, strings, None and lists / tuples / dicts of them. With a CPU backend each rank
    uses (cores // world_size) threads; with nccl rank r uses CUDA device r mod device count.

    Returns:
        The ranks' return values, in rank order.

    Raises:
        ValueError: world_size < 1, timeout_s ≤ 0.
        RuntimeError: a rank raised (the message names the rank and has its traceback) or
            exited without a result; the other ranks are terminated first, so this comes at
            once, not after the collectives' timeout.

    Example (not run as a doctest: spawning costs seconds)::

        def ranks(rank, world_size):  # at module level, so the spawned processes find it
            return rank, world_size

        launch(ranks, 2)  # [(0, 2), (1, 2)]

    Taught in: notebooks/07_sharded_fc.ipynb
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) \
            or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a number > 0, got {timeout_s!r}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    folder = Path(tempfile.mkdtemp(prefix="arclab-launch-"))
    init_method = (folder / "rendezvous").as_uri()
    threads = max(1, _cpu_count() // world_size)
    processes = [ctx.Process(target=_worker, daemon=True,
                             args=(fn, rank, world_size, args, backend, init_method,
                                   float(timeout_s), threads, results))
                 for rank in range(world_size)]
    values: dict[int, Any] = {}
    failed = True
    try:
        for p in processes:
            p.start()
        dead_since: float | None = None
        while len(values) < world_size:
            try:
                rank, status, payload = results.get(timeout=_POLL_S)
            except queue_lib.Empty:
                dead = [r for r, p in enumerate(processes)
                        if r not in values and p.exitcode is not None]
                if dead:  # give a message in the pipe a moment to arrive
                    dead_since = dead_since or time.monotonic()
                    if time.monotonic() - dead_since > _GRACE_S:
                        code = processes[dead[0]].exitcode
                        raise RuntimeError(f"launch: rank {dead[0]} of {world_size} exited "
                                           f"with code {code} without a result") from None
                continue
            if status == "error":
                raise RuntimeError(f"launch: rank {rank} of {world_size} failed: {payload}")
            try:
                values[rank] = torch.load(io.BytesIO(payload), weights_only=True)
            except Exception as err:
                raise RuntimeError(f"launch: rank {rank}'s return value is not made of tensors, "
                                   f"numbers, strings and containers ({err})") from None
        failed = False
    finally:
        _stop(processes, 0.0 if failed else _GRACE_S)
        results.close()
        shutil.rmtree(folder, ignore_errors=True)
    return [values[r] for r in range(world_size)]
