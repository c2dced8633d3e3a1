"""TensorBoard beside ``log.jsonl``: the same per-step record, as scalars arcface_torch users
look for.

:class:`TensorBoardLog` stands where the training loop writes ``log.jsonl``: every JSON line
written through it goes to the file unchanged and, as scalars at its ``step``, to TensorBoard
event files in ``<run>/tensorboard/`` (``loss``, ``lr``, ``images_per_s``, ``theta_y_deg``,
``distill`` and ``validation/<name>``). TensorBoard's step counts the steps done, as
arcface_torch's does: a step line's 0-based ``step`` + 1, a validation line's ``step`` as it
is. A resumed run purges the events after its checkpoint, as ``log.jsonl`` is cut back to it,
so both show the uninterrupted run. Needs the
``tensorboard`` extra (``pip install 'arclab[tensorboard]'``); enable it with
``log: [jsonl, tensorboard]`` in a spec. View: ``tensorboard --logdir runs/``.

Taught in: notebooks/04_training_a_face_model.ipynb
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import IO, Any

__all__ = ["LOG_KINDS", "TensorBoardLog", "check_log"]

LOG_KINDS = ("jsonl", "tensorboard")
"""What a spec's ``log`` list may name: ``jsonl`` (always written) and ``tensorboard``."""


def check_log(raw) -> list[str]:
    """A spec's ``log`` section checked: a list of kinds among :data:`LOG_KINDS`, returned
    sorted with ``jsonl`` (always written); ``tensorboard`` needs its package, checked here so
    that a run never starts without it.

    Raises:
        ValueError: not a list of known kinds, or ``tensorboard`` without its package.

    Example:
        >>> check_log(["jsonl"])
        ['jsonl']
    """
    if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw) \
            or set(raw) - set(LOG_KINDS):
        raise ValueError(f"log must be a list of {list(LOG_KINDS)}, got {raw!r}")
    if "tensorboard" in raw and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("log: tensorboard needs the tensorboard package: pip install "
                         "'arclab[tensorboard]'")
    return sorted(set(raw) | {"jsonl"})


class TensorBoardLog:
    """A text file whose JSON lines are also written to TensorBoard as scalars.

    Args:
        file: the open ``log.jsonl`` (append mode).
        log_dir: the TensorBoard folder (created).
        start: the steps the run's checkpoint had done; later events are purged.

    Raises:
        ImportError: the tensorboard package is missing (the message names the extra).

    Example:
        >>> import io, tempfile
        >>> log = TensorBoardLog(io.StringIO(), tempfile.mkdtemp(), start=0)
        >>> log.write('{"step": 0, "loss": 2.5, "lr": 0.1}\\n')
        >>> log.close()
    """

    def __init__(self, file: IO[str], log_dir: str | Path, start: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: the extra
        except ImportError as err:  # torch raises ImportError when tensorboard is missing
            raise ImportError("log: tensorboard needs the tensorboard extra: pip install "
                              "'arclab[tensorboard]'") from err
        self.file = file
        # steps done: events after the checkpoint's step (those a resume redoes) are purged
        self.writer = SummaryWriter(str(log_dir), purge_step=int(start) + 1, flush_secs=30)

    def write(self, line: str) -> None:
        """Write ``line`` to the file and its numbers to TensorBoard at the line's step."""
        self.file.write(line)
        record: dict[str, Any] = json.loads(line)
        step = int(record.pop("step"))
        if "validation" not in record:
            step += 1  # a step line: steps done once it is logged
        scalars = {f"validation/{k}": v for k, v in record.pop("validation", {}).items()}
        scalars |= {k: v for k, v in record.items() if isinstance(v, (int, float))}
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, float(value), step)

    def flush(self) -> None:
        self.file.flush()
        self.writer.flush()

    def fileno(self) -> int:
        """The log file's descriptor (the loop fsyncs it before each checkpoint)."""
        return self.file.fileno()

    def close(self) -> None:
        self.writer.close()
        self.file.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
