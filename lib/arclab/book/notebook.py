"""What every notebook shares: provenance, profile parameters and the results JSON.

A notebook's last cell calls :func:`save_results`; tests read those files back, never cell text.
Where results go: ``$ARCLAB_RESULTS_DIR/<profile>/`` if that variable is set (the runner and the
tests set it), else ``<repo>/results/<profile>/``.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

import arclab
from arclab.atomic import atomic_path
from arclab.book.bookmap import BOOK_MAP

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "NAME_PATTERN",
    "book_map",
    "load_params",
    "load_results",
    "profiles",
    "provenance",
    "repo_root",
    "results_path",
    "save_results",
    "summary_table",
    "table",
]

NAME_PATTERN = re.compile(r"^\d{2}_[a-z0-9_]+$")
"""Notebook names: two digits, underscore, lower-case slug (``00_tour``)."""


def repo_root() -> Path:
    """The arclab checkout this package was installed from (editable install), else the cwd."""
    here = Path(arclab.__file__).resolve().parents[2]
    is_checkout = (here / "pyproject.toml").is_file() and (here / "notebooks").is_dir()
    return here if is_checkout else Path.cwd()


def git_sha(root: Path) -> str:
    """The checkout's HEAD commit, with ``-dirty`` when tracked files changed; ``unknown``
    outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty.strip() else "") if sha else "unknown"


def provenance(profile: str | None = None, *, show: bool = True) -> dict[str, str]:
    """Versions, git SHA and device of this run; printed when ``show`` (a notebook's setup cell),
    which also lets tables show whole cells (pandas cuts text at 50 characters by default, so a
    claim or its rule would end in "...").

    Returns:
        dict with keys arclab, git_sha ("unknown" outside a git checkout, "-dirty" suffix when
        tracked files are modified), torch, python, device, profile, time (UTC, ISO 8601).

    Example:
        >>> sorted(provenance("smoke", show=False))
        ['arclab', 'device', 'git_sha', 'profile', 'python', 'time', 'torch']
    """
    import torch

    info = {
        "arclab": arclab.__version__,
        "git_sha": git_sha(repo_root()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(arclab.get_device()),
        "profile": profile or os.environ.get("ARCLAB_PROFILE", "interactive"),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if show:
        import pandas as pd  # heavy: imported here so the runner's command line starts fast

        pd.set_option("display.max_colwidth", None)
        print("  ".join(f"{k}={v}" for k, v in info.items() if k != "time"))
    return info


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"name must look like '00_tour' (two digits, '_', lower-case slug), "
                         f"got {name!r}")


def _check_profile(profile: str) -> None:
    if not isinstance(profile, str) or not re.match(r"^[a-z][a-z0-9_-]*$", profile):
        raise ValueError(f"profile must be a lower-case word such as 'smoke', got {profile!r}")


def results_path(name: str, profile: str) -> Path:
    """Where :func:`save_results` writes: ``<results dir>/<profile>/<name>.json``."""
    _check_name(name)
    _check_profile(profile)
    base = os.environ.get("ARCLAB_RESULTS_DIR")
    base_dir = Path(base) if base else repo_root() / "results"
    return base_dir / profile / f"{name}.json"


def _to_jsonable(value: Any, where: str) -> Any:
    """Plain JSON types from numpy/torch scalars and arrays; NaN/inf refused (they hide bugs)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # numpy arrays and scalars, torch tensors
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"results{where} is {value}; results must be finite numbers")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"results{where} has type {type(value).__name__}; expected numbers, "
                     "strings, lists or dicts")


def save_results(name: str, results: dict[str, Any], profile: str | None = None) -> Path:
    """Write a notebook's numbers to ``results/<profile>/<name>.json`` atomically.

    The file holds ``results`` plus a ``_provenance`` entry (see :func:`provenance`). It is
    written to a temporary file in the same folder and renamed, so a reader never sees half a
    file and a crash leaves the previous results intact.

    Args:
        name: the notebook's name, e.g. ``"00_tour"``.
        results: JSON-able numbers (numpy/torch scalars and arrays are converted); NaN and inf
            are refused.
        profile: ``smoke`` | ``book`` | ``full``; ``None`` takes ``$ARCLAB_PROFILE``, else
            ``"interactive"`` (a notebook run by hand).

    Raises:
        ValueError: bad ``name``, non-dict ``results``, a key starting with ``_``, or a value
            that is not finite or not JSON-able.
    """
    if not isinstance(results, dict):
        raise ValueError(f"results must be a dict, got {type(results).__name__}")
    if any(str(k).startswith("_") for k in results):
        raise ValueError("results keys must not start with '_' (reserved for _provenance)")
    profile = profile or os.environ.get("ARCLAB_PROFILE", "interactive")
    path = results_path(name, profile)
    payload = _to_jsonable(results, "")
    payload["_provenance"] = provenance(profile, show=False)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return path


def load_results(name: str, profile: str) -> dict[str, Any]:
    """Read back what :func:`save_results` wrote.

    Raises:
        FileNotFoundError: the notebook has not been run with this profile (the message says
            the command that produces the file).
    """
    path = results_path(name, profile)
    if not path.is_file():
        raise FileNotFoundError(f"no results at {path}; run `python -m arclab.book.runner run "
                                f"--profile {profile} {name}` first")
    return json.loads(path.read_text())


def profiles(params_dir: Path | None = None) -> list[str]:
    """The profiles that have a ``params/<profile>.yaml`` file."""
    params_dir = params_dir or repo_root() / "params"
    return sorted(p.stem for p in params_dir.glob("*.yaml"))


def load_params(profile: str, name: str, params_dir: Path | None = None) -> dict[str, Any]:
    """The papermill parameters of notebook ``name`` under ``profile``, plus ``profile`` itself.

    ``params/<profile>.yaml`` maps notebook names to their parameter dicts; a notebook absent
    from it runs with the defaults of its ``parameters`` cell.

    Raises:
        ValueError: unknown profile (the message lists the valid ones) or a malformed file.
    """
    params_dir = params_dir or repo_root() / "params"
    valid = profiles(params_dir)
    if profile not in valid:
        raise ValueError(f"profile must be one of {valid}, got {profile!r}")
    path = params_dir / f"{profile}.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map notebook names to parameter dicts")
    entry = data.get(name) or {}
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: entry {name!r} must be a dict of parameters, got {entry!r}")
    return {**entry, "profile": profile}


def book_map() -> pd.DataFrame:
    """The map of the book (:data:`arclab.book.bookmap.BOOK_MAP`) with a ``present`` column
    saying which notebooks exist in this checkout."""
    import pandas as pd  # heavy: imported here so the runner's command line starts fast

    table = pd.DataFrame(BOOK_MAP)
    notebooks_dir = repo_root() / "notebooks"
    table["present"] = [(notebooks_dir / f"{n}.ipynb").is_file() for n in table["notebook"]]
    return table.set_index("notebook")


def summary_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A notebook's closing table: one row per claim, ours beside the seed's, with the scale.

    Each row needs the keys claim, ours, seed, scale and reproduces (bool, shown as yes/no).

    Raises:
        ValueError: a row misses one of the keys.

    Example:
        >>> summary_table([{"claim": "c", "ours": "1%", "seed": "2%", "scale": "toy",
        ...                 "reproduces": False}])["reproduces"].tolist()
        ['no']
    """
    import pandas as pd

    keys = ["claim", "ours", "seed", "scale", "reproduces"]
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"rows[{i}] is missing {missing}; each row needs {keys}")
    table = pd.DataFrame([{k: row[k] for k in keys} for row in rows]).set_index("claim")
    table["reproduces"] = ["yes" if bool(r) else "no" for r in table["reproduces"]]
    return table


def table(rows: dict[str, dict[str, Any]], digits: int = 2) -> pd.DataFrame:
    """A DataFrame with one row per key of ``rows`` (e.g. per loss), numbers rounded; a row
    without some column, or with None there (no such value, e.g. a target angle for a loss
    without class weights), shows "–" (not pandas' NaN, which reads as a failed number).

    Example:
        >>> table({"arcface": {"gap_deg": 41.234}}, digits=1).to_dict()
        {'gap_deg': {'arcface': 41.2}}
        >>> table({"a": {"x": 1.0, "y": 2.0}, "b": {"x": float("nan")}}).to_dict()
        {'x': {'a': 1.0, 'b': nan}, 'y': {'a': 2.0, 'b': '–'}}
        >>> table({"a": {"x": 1.0}, "b": {"x": None}}).to_dict()
        {'x': {'a': 1.0, 'b': '–'}}
        >>> import numpy as np
        >>> print(table({"a": {"x": np.float32(37.7)}, "b": {"x": np.float32(20.6)}}, 1))
              x
        a  37.7
        b  20.6
    """
    import pandas as pd

    df = pd.DataFrame.from_dict(rows, orient="index")
    # float32 columns (numpy scalars from torch) would print their rounded values as 37.700001
    df = df.astype({c: "float64" for c in df.columns if df[c].dtype == "float32"})
    df = df.round(digits)
    absent = pd.DataFrame([[rows[r].get(c) is None for c in df.columns] for r in rows],
                          index=df.index, columns=df.columns)  # a NaN *value* stays NaN
    return df.astype(object).where(~absent, "–") if absent.to_numpy().any() else df
