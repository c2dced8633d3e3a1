"""Execute the notebooks headless with papermill, and build the book from what they produced.

Command line (run from the repository root)::

    python -m arclab.book.runner list
    python -m arclab.book.runner run --profile smoke [NAMES ...] [--out build/smoke] [--keep-going]
    python -m arclab.book.runner book --profile book
    python -m arclab.book.runner timings --profile book [--since UNIX_TIME]

``run`` executes each notebook with the parameters of ``params/<profile>.yaml`` in a kernel
that runs this very interpreter, writes the executed copy to ``build/<profile>/NAME.ipynb``
(atomically: a failed run leaves ``NAME.failed.ipynb`` beside it and no fresh-looking output
for Make to trust) and checks that the notebook wrote its results JSON. On failure it names the
notebook, the cell and the exception, and exits with status 1. ``run`` and ``timings`` (the
end of ``make notebooks`` and ``make book``) print each notebook's wall time and the total.

Taught in: notebooks/00_tour.ipynb
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from arclab import __version__
from arclab.atomic import atomic_path
from arclab.book.notebook import git_sha, load_params, profiles, repo_root, results_path

__all__ = ["NotebookFailed", "build_book", "execute_notebook", "main", "notebook_paths",
           "record_timing", "resolve_notebooks", "run_notebooks", "timings_path", "timings_table"]

KERNEL_NAME = "arclab-runner"
CELL_TIMEOUT_S = 3 * 3600
"""A cell running longer than this fails the notebook instead of hanging the run. Generous:
one cell may train a whole ablation (notebook 11's rows cell, ten detector runs, took about
50 minutes cold in the book profile on 2 CPU cores with torchvision's deformable convolution,
and timed out at the former 30-minute limit; with ``arclab.detection.deform`` about 20)."""


class NotebookFailed(RuntimeError):
    """A notebook raised, or finished without writing its results JSON."""


def notebook_paths(notebooks_dir: Path | None = None) -> list[Path]:
    """All ``NN_slug.ipynb`` notebooks, in book order."""
    notebooks_dir = notebooks_dir or repo_root() / "notebooks"
    return sorted(p for p in notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def resolve_notebooks(names: Sequence[str], notebooks_dir: Path | None = None) -> list[Path]:
    """Notebook paths for names given as ``00_tour``, ``00``, ``00_tour.ipynb`` or a path.

    An empty ``names`` means every notebook.

    Raises:
        ValueError: a name matches no notebook (the message lists the valid names).
    """
    available = notebook_paths(notebooks_dir)
    if not names:
        return available
    by_stem = {p.stem: p for p in available}
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".ipynb")
        hits = [p for s, p in by_stem.items() if s == stem or s.split("_", 1)[0] == stem]
        if len(hits) != 1:
            raise ValueError(f"notebook {name!r} is not one of {sorted(by_stem)}")
        chosen.append(hits[0])
    return chosen


def _restore_env(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def _kernel_for_this_interpreter() -> Iterator[str]:
    """A temporary kernelspec whose kernel is ``sys.executable``, so the venv runs the code."""
    with tempfile.TemporaryDirectory(prefix="arclab-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python (arclab)", "language": "python"}
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        saved = {"JUPYTER_PATH": os.environ.get("JUPYTER_PATH")}
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [tmp, saved["JUPYTER_PATH"]]))
        try:
            yield KERNEL_NAME
        finally:
            _restore_env(saved)


def _describe_failure(path: Path, err: Exception, failed_copy: Path) -> str:
    cell = getattr(err, "cell_index", None)
    if cell is None:  # not a cell error: kernel died, bad notebook JSON, ...
        return f"{path.name} failed before or between cells: {type(err).__name__}: {err}"
    source = textwrap.indent(textwrap.shorten(getattr(err, "source", ""), 300), "    ")
    return (f"{path.name} failed in cell {cell} (execution count {err.exec_count}):\n{source}\n"
            f"  {err.ename}: {err.evalue}\n  executed copy with the traceback: {failed_copy}")


def execute_notebook(path: Path, profile: str, out_dir: Path, *, params_dir: Path | None = None,
                     results_dir: Path | None = None, progress: bool = True) -> Path:
    """Execute one notebook with ``profile``'s parameters; return the executed copy's path.

    Raises:
        NotebookFailed: a cell raised (message: notebook, cell index, exception) or the notebook
            wrote no ``results/<profile>/<name>.json``.
        ValueError: unknown profile.
    """
    import papermill as pm

    parameters = load_params(profile, path.stem, params_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final, failed = out_dir / path.name, out_dir / f"{path.stem}.failed.ipynb"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".ipynb", dir=out_dir)
    os.close(fd)
    env_before = {k: os.environ.get(k) for k in ("ARCLAB_PROFILE", "ARCLAB_RESULTS_DIR")}
    os.environ["ARCLAB_PROFILE"] = profile
    if results_dir is not None:
        os.environ["ARCLAB_RESULTS_DIR"] = str(results_dir)
    expected = results_path(path.stem, profile)
    started = time.time()
    try:
        with _kernel_for_this_interpreter() as kernel:
            pm.execute_notebook(str(path), tmp, parameters=parameters, kernel_name=kernel,
                                cwd=str(path.parent), progress_bar=progress, log_output=False,
                                execution_timeout=CELL_TIMEOUT_S)
    except Exception as err:
        if Path(tmp).exists():
            os.replace(tmp, failed)
        raise NotebookFailed(_describe_failure(path, err, failed)) from err
    finally:
        _restore_env(env_before)
    if not expected.is_file() or expected.stat().st_mtime < started - 1:
        os.replace(tmp, failed)
        raise NotebookFailed(f"{path.name} ran but wrote no results to {expected}; its last cell "
                             "must call save_results(...)")
    os.replace(tmp, final)
    failed.unlink(missing_ok=True)
    return final


def run_notebooks(profile: str, names: Sequence[str] = (), *, out_dir: Path | None = None,
                  notebooks_dir: Path | None = None, params_dir: Path | None = None,
                  results_dir: Path | None = None, keep_going: bool = False) -> list[Path]:
    """Execute several notebooks in order with a progress bar; see :func:`execute_notebook`.

    Raises:
        NotebookFailed: after the first failure, or after all when ``keep_going`` (the message
            lists every failure).
    """
    from tqdm.auto import tqdm

    if profile not in profiles(params_dir):
        raise ValueError(f"profile must be one of {profiles(params_dir)}, got {profile!r}")
    paths = resolve_notebooks(names, notebooks_dir)
    out_dir = out_dir or repo_root() / "build" / profile
    done, failures = [], []
    bar = tqdm(paths, desc=f"notebooks ({profile})", unit="nb", disable=len(paths) < 2)
    for path in bar:
        bar.set_postfix_str(path.stem)
        started, n_failed = time.perf_counter(), len(failures)
        try:
            done.append(execute_notebook(path, profile, out_dir, params_dir=params_dir,
                                         results_dir=results_dir))
        except NotebookFailed as err:
            failures.append(str(err))
        record_timing(timings_path(profile, results_dir), path.stem, time.perf_counter() - started,
                      "failed" if len(failures) > n_failed else "executed")
        if failures and not keep_going:
            break
    if failures:
        raise NotebookFailed("\n".join(failures))
    return done


def timings_path(profile: str, results_dir: Path | None = None) -> Path:
    """``<results dir>/<profile>/timings.json``: each notebook's last wall time, and status."""
    base = results_dir or os.environ.get("ARCLAB_RESULTS_DIR") or repo_root() / "results"
    return Path(base) / profile / "timings.json"


def record_timing(path: Path, stem: str, seconds: float, status: str) -> None:
    """Merge ``{stem: {"seconds", "status" ("executed"|"failed"), "when" (UTC end, ISO)}}``."""
    entries = {}
    with suppress(OSError, ValueError):  # none yet, or hand-broken: timings only, start afresh
        entries = json.loads(path.read_text())
    entries[stem] = {"seconds": round(seconds, 2), "status": status,
                     "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")


def timings_table(path: Path, stems: Sequence[str], *, since: float | None = None,
                  stale: str = "up to date") -> str:
    """A row per notebook (seconds, status, end time; ``stale`` as the status of runs that
    ended before the Unix time ``since``), then the total and the part run since ``since``."""
    entries = json.loads(path.read_text()) if path.is_file() else {}
    rows, total, now = [f"{'notebook':<34}{'seconds':>9}  {'status':<12}ended (UTC)"], 0.0, 0.0
    for stem in stems:
        e = entries.get(stem, {"seconds": 0.0, "status": "never run", "when": ""})
        old = bool(since and e["when"]) and datetime.fromisoformat(e["when"]).timestamp() < since
        total, now = total + e["seconds"], now + e["seconds"] * (not old)
        rows.append(f"{stem:<34}{e['seconds']:>9.1f}  {stale if old else e['status']:<12}"
                    f"{e['when'][:16].replace('T', ' ')}")
    return "\n".join(rows + [f"{'total':<34}{total:>9.1f}  (run now: {now:.1f} s)"])


def _vendor_mathjax(static_dir: Path) -> None:
    """Copy MathJax 2.7 from the jupyter-server-mathjax package so pages render math offline."""
    import jupyter_server_mathjax

    src, dest = Path(jupyter_server_mathjax.__file__).parent / "static", static_dir / "mathjax"
    if not (dest / "MathJax.js").is_file():
        shutil.copytree(src, dest, dirs_exist_ok=True)


def _reproduces(title_source: str) -> str:
    """The first sentence after "Reproduces:" in a notebook's title cell (blockquote marks and
    line breaks removed, final period dropped)."""
    match = re.search(r"Reproduces:(.*?)(?:\n\s*\n|\Z)", title_source, re.S)
    if match is None:
        return ""
    text = " ".join(line.strip().removeprefix(">").strip() for line in match[1].splitlines())
    return re.split(r"\.\s+(?=[A-Z])", text.strip(), maxsplit=1)[0].rstrip(".")


def _execution(nb, executed_dir: Path) -> tuple[str, str]:
    """(profile, UTC end time as "YYYY-MM-DD HH:MM UTC") of an executed notebook, from the
    metadata papermill wrote (the folder name and "unknown time" where it is missing)."""
    meta = nb.metadata.get("papermill", {})
    profile = str(meta.get("parameters", {}).get("profile", executed_dir.name))
    try:
        end = datetime.fromisoformat(meta["end_time"]).astimezone(timezone.utc)
        return profile, end.strftime("%Y-%m-%d %H:%M UTC")
    except (KeyError, TypeError, ValueError):
        return profile, "unknown time"


def _run_note(stem: str, profile: str, when: str) -> str:
    """The admonition under each chapter's title: downloads and the commands that run it."""
    return "\n".join([
        "```{admonition} Run this page yourself", ":class: tip",
        f"Executed headless with the `{profile}` profile ({when}) and rendered without",
        "re-execution. Download {download}`the notebook <_clean/" + stem + ".ipynb>` (no outputs,",
        "as in the repository); the download menu at the top of the page has this executed copy.",
        "From a clone of the repository:", "",
        "    # JupyterLab on notebooks/ with the project's kernel:", "    make lab",
        "    # or run it headless with the book profile, into build/book/:",
        f"    python -m arclab.book.runner run --profile book {stem}",
        "```",
    ])


def _stage_notebooks(executed_dir: Path, staged: Path, notebooks_dir: Path | None
                     ) -> list[tuple[str, str, str, str]]:
    """Copy executed notebooks into ``staged`` with the run note under each title, and the
    clean sources into ``staged/_clean``; return (stem, reproduces, profile, when) per chapter.
    """
    import nbformat

    shutil.rmtree(staged, ignore_errors=True)
    (staged / "_clean").mkdir(parents=True)
    chapters = []
    for src in notebook_paths(notebooks_dir):
        executed = executed_dir / src.name
        if not executed.is_file():
            raise FileNotFoundError(f"{executed} is missing; run the notebooks first "
                                    f"(make notebooks PROFILE={executed_dir.name})")
        shutil.copyfile(src, staged / "_clean" / src.name)
        nb = nbformat.read(executed, as_version=4)
        profile, when = _execution(nb, executed_dir)
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(_run_note(src.stem, profile, when)))
        nbformat.write(nb, staged / src.name)
        chapters.append((src.stem, _reproduces(nb.cells[0].source), profile, when))
    return chapters


def _chapter_list(chapters: list[tuple[str, str, str, str]]) -> str:
    """Markdown for the intro page: each chapter, what it reproduces, its profile and time."""
    sha = git_sha(repo_root())
    sha = sha if sha == "unknown" else sha[:10] + ("-dirty" if sha.endswith("-dirty") else "")
    profiles_used = sorted({profile for _, _, profile, _ in chapters})
    lines = [f"Rendered {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by arclab {__version__} "
             f"(commit `{sha}`) from notebooks executed with the "
             f"{', '.join(f'`{p}`' for p in profiles_used)} profile.", ""]
    for stem, reproduces, profile, when in chapters:
        what = f"reproduces {reproduces}" if reproduces else "reproduces no seed table"
        lines.append(f"- {{doc}}`/notebooks/{stem}`: {what}. *Profile `{profile}`, "
                     f"executed {when}.*")
    return "\n".join(lines) + "\n"


def build_book(executed_dir: Path, *, book_dir: Path | None = None,
               notebooks_dir: Path | None = None, strict: bool = True) -> Path:
    """Render the book from executed notebooks (no execution); return the HTML index path.

    Copies ``executed_dir/NN_*.ipynb`` into ``book_dir/notebooks/`` (fresh mtimes, so Sphinx
    re-reads every page whose notebook changed), each with a note under its title: the profile
    and time it was executed with, a download link to the clean notebook (copied to
    ``notebooks/_clean/``) and the commands that run it. Writes ``notebooks/_chapters.md``
    (included by the intro page: each chapter, what it reproduces, its profile and time), copies
    MathJax into ``book_dir/_vendor/``, then runs ``jupyter-book build`` (``-W -n --keep-going``
    when ``strict``).

    Raises:
        FileNotFoundError: an executed notebook the table of contents needs is missing.
        RuntimeError: jupyter-book failed or warned (its output is in the message).
    """
    book_dir = book_dir or repo_root() / "book"
    staged = book_dir / "notebooks"
    chapters = _stage_notebooks(executed_dir, staged, notebooks_dir)
    (staged / "_chapters.md").write_text(_chapter_list(chapters))
    _vendor_mathjax(book_dir / "_vendor")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(book_dir)]
    cmd += ["-W", "-n", "--keep-going"] if strict else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {proc.returncode}):\n"
                           f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    index = book_dir / "_build" / "html" / "index.html"
    _link_favicon(index)
    return index


def _link_favicon(index: Path) -> None:
    """jupyter-book's root ``index.html`` is a bare redirect without the theme's icon link, so
    a browser asks the server for ``/favicon.ico`` (a 404 in the console): link the book's."""
    text = index.read_text() if index.is_file() else 'rel="icon"'
    icons = sorted((index.parent / "_static").glob("favicon.*"))
    if 'rel="icon"' not in text and icons:
        index.write_text(f'<link rel="icon" href="_static/{icons[0].name}">\n' + text)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m arclab.book.runner", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list notebooks and profiles")
    run = sub.add_parser("run", help="execute notebooks with a profile's parameters")
    run.add_argument("names", nargs="*", help="notebooks (00_tour, 00 or a path); default: all")
    timings = sub.add_parser("timings", help="table of each notebook's last wall time")
    timings.add_argument("--since", type=float, help="Unix time; runs ended before: up to date")
    for p in (run, sub.add_parser("book", help="render the book from executed notebooks"), timings):
        p.add_argument("--profile", default="book", help="smoke | book | full (default: book)")
    run.add_argument("--out", type=Path, help="output folder (default: build/<profile>)")
    run.add_argument("--keep-going", action="store_true", help="run the rest after a failure")
    for p in (run, timings):
        p.add_argument("--notebooks-dir", type=Path, help="notebooks folder (default: notebooks/)")
    run.add_argument("--params-dir", type=Path, help="where <profile>.yaml is (default: params/)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print("profiles: " + ", ".join(profiles()))
            print("\n".join(p.stem for p in notebook_paths()))
        elif args.command == "run":
            stems = [p.stem for p in resolve_notebooks(args.names, args.notebooks_dir)]
            since, log = time.time(), timings_path(args.profile)
            try:
                for path in run_notebooks(args.profile, args.names, out_dir=args.out,
                                          notebooks_dir=args.notebooks_dir,
                                          params_dir=args.params_dir, keep_going=args.keep_going):
                    print(f"executed {path}")
            finally:
                if log.is_file() and log.stat().st_mtime >= since:  # something ran
                    print(timings_table(log, stems, since=since, stale="not run"))
        elif args.command == "timings":
            stems = [p.stem for p in notebook_paths(args.notebooks_dir)]
            print(timings_table(timings_path(args.profile), stems, since=args.since))
        else:
            if args.profile not in profiles():
                raise ValueError(f"profile must be one of {profiles()}, got {args.profile!r}")
            print(f"book: {build_book(repo_root() / 'build' / args.profile)}")
    except (NotebookFailed, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
