"""Atomic file writes: write to a temporary file beside the target, then rename over it, so a
reader never sees half a file and a crash leaves the previous version intact.

The temporary file is ``.<name>.<host>.<pid>.<token>.tmp`` beside the target, created with the
permissions the umask gives (0644 under umask 022, as ``open`` would), and synced to disk
before the rename. A writer killed mid-write (``kill -9``, power loss) leaves its temporary file
behind; the next write of the same path removes it once it is stale: its writer's process is
gone (same host) or it is older than :data:`STALE_AGE_S`. Temporary files of live writers are
left alone, so concurrent writers of one path do not disturb each other.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["STALE_AGE_S", "atomic_path", "remove_stale_temps", "temp_name"]

STALE_AGE_S = 24 * 3600.0
"""Age (seconds since the last modification) past which any writer's leftover temporary file is
removed, whatever its PID says (a PID can be reused, and another host's PIDs cannot be seen)."""

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def temp_name(path: str | os.PathLike, pid: int | None = None) -> Path:
    """A fresh temporary name beside ``path`` for writer ``pid`` (default: this process).

    Example:
        >>> temp_name("/data/x.bin", pid=42).name.startswith(".x.bin.")
        True
    """
    path = Path(path)
    pid = os.getpid() if pid is None else pid
    return path.parent / f".{path.name}.{_HOST}.{pid}.{secrets.token_hex(4)}.tmp"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temps(path: str | os.PathLike, *, max_age_s: float = STALE_AGE_S) -> list[Path]:
    """Remove the leftover temporary files of dead writers of ``path`` (only names of
    :func:`temp_name`'s pattern); returns the removed paths.

    A file is stale when its writer ran on this host and its PID is gone, or when it was last
    modified more than ``max_age_s`` seconds ago. Safe under concurrent writers: live writers'
    files are kept, and a file another cleaner removed first is skipped.

    Raises:
        ValueError: ``max_age_s`` is not a number > 0.
    """
    if isinstance(max_age_s, bool) or not isinstance(max_age_s, (int, float)) or max_age_s <= 0:
        raise ValueError(f"max_age_s must be a number > 0, got {max_age_s!r}")
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.([A-Za-z0-9-]+)\.(\d+)\.[0-9a-f]{{8}}\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        host, pid = match.group(1), int(match.group(2))
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        dead = host == _HOST and pid != os.getpid() and not _pid_alive(pid)
        if dead or age > max_age_s:
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def _fsync(path: Path, *, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:  # some systems cannot open a folder: its sync is best effort
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it is synced and replaces
    ``path``, on any exception it is removed and ``path`` is left as it was. Stale temporary
    files of earlier writers of ``path`` are removed first (:func:`remove_stale_temps`).

    The temporary file exists (empty) when yielded, with the umask's permissions; write it by
    name (``open(tmp, "wb")``, ``torch.save(obj, tmp)``), which keeps them.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    while True:
        tmp = temp_name(path)
        try:  # 0o666 & ~umask, as open() creates files
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)
