"""Checks over every notebook and the project files, without a kernel (STYLE.md, section 5)."""

from __future__ import annotations

import ast
import re

import nbformat
import pytest
import yaml

from arclab.book.notebook import NAME_PATTERN, repo_root
from arclab.book.runner import notebook_paths

ROOT = repo_root()
NOTEBOOKS = notebook_paths(ROOT / "notebooks")
PROFILES = sorted(p.stem for p in (ROOT / "params").glob("*.yaml"))


def test_there_are_notebooks_and_profiles():
    assert NOTEBOOKS, "no notebooks found"
    assert PROFILES == ["book", "full", "smoke"]


def parameter_names(nb) -> dict[str, object]:
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    names = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"parameters cell must hold simple assignments only, got {ast.dump(node)[:60]}"
        names[node.targets[0].id] = ast.literal_eval(node.value)  # literals only
    return names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_shape(path):
    assert NAME_PATTERN.match(path.stem)
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), \
        f"{path.name} has outputs: run nbstripout"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "Reproduces:" in first.source, "the title cell must say what it reproduces"
    for c in code:
        assert len(c.source.splitlines()) <= 15, f"code cell over 15 lines:\n{c.source[:200]}"
        assert not re.search(r"^\s*class\s", c.source, re.M), "no classes in notebooks"
    assert "save_results(" in code[-1].source, "the last cell must call save_results"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "profile" in parameter_names(nb)
    import papermill as pm  # papermill must parse every parameter line (comments included)

    assert set(pm.inspect_notebook(str(path))) == set(parameter_names(nb))


# Calls whose value Jupyter shows only as the last expression of a cell: tables, and the
# sentences of arclab.book.claims (a say() followed by anything else would state nothing).
SHOWN_ONLY_LAST = ("notebook.table", "notebook.summary_table", "claims.claims_table",
                   "claims.claims_summary", "claims.say", "say")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tables_are_shown(path):
    # notebook.table / summary_table return a DataFrame: Jupyter shows it only as the last
    # expression of its cell. Two tables (notebooks 09 and 10) were computed and never shown
    # because a print followed them.
    for c in nbformat.read(path, as_version=4).cells:
        if c.cell_type != "code":
            continue
        body = ast.parse(c.source).body
        for st in body[:-1]:
            if isinstance(st, ast.Expr) and isinstance(st.value, ast.Call) and \
                    ast.unparse(st.value.func) in SHOWN_ONLY_LAST:
                raise AssertionError(f"{path.name}: a table that is not its cell's last "
                                     f"expression is never shown:\n{c.source[:300]}")


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_keys_are_parameters(profile):
    data = yaml.safe_load((ROOT / "params" / f"{profile}.yaml").read_text()) or {}
    by_name = {p.stem: p for p in NOTEBOOKS}
    for name, params in data.items():
        assert name in by_name, f"params/{profile}.yaml names {name!r}, not a notebook"
        known = parameter_names(nbformat.read(by_name[name], as_version=4))
        unknown = set(params) - set(known)
        assert not unknown, f"params/{profile}.yaml: {name} has unknown parameters {unknown}"
        assert "profile" not in params, "the runner sets profile itself"
        for key, value in params.items():
            assert type(value) is type(known[key]), f"{name}.{key}: {value!r} vs {known[key]!r}"


def test_every_notebook_is_in_the_book():
    toc = (ROOT / "book" / "_toc.yml").read_text()
    files = set(re.findall(r"file:\s*notebooks/(\S+)", toc))
    assert files == {p.stem for p in NOTEBOOKS}


def test_taught_in_links_exist():
    """Docstrings end "Taught in: notebooks/NN_x.ipynb"; that file exists, or the link says
    "(planned)" and the notebook is on the book map."""
    from arclab.book.bookmap import BOOK_MAP

    planned = {f"notebooks/{row['notebook']}.ipynb" for row in BOOK_MAP}
    found = 0
    for module in (ROOT / "lib" / "arclab").rglob("*.py"):
        for target, mark in re.findall(r"Taught in: (\S+\.ipynb)( \(planned\))?",
                                       module.read_text()):
            if mark:
                assert target in planned, f"{module.name}: {target} is not on the book map"
                assert not (ROOT / target).is_file(), f"{module.name}: {target} exists now"
            else:
                assert (ROOT / target).is_file(), f"{module.name} points to missing {target}"
            found += 1
    assert found > 0


def test_ci_runs_the_readme_test_command():
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert ci == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()


# Numbers a run can change must reach the page through code (arclab.book.claims.say), never be
# typed into markdown. The scan: decimals, percentages, and numbers followed by s, ms, °, ×, AP
# or points, outside math ($...$), code spans and fenced code.
MEASURED = re.compile(r"""(?<![\w.])(
    \d+(?:,\d{3})*\.\d+(?:\s?(?:%|°|×|s|ms|AP|points?)(?!\w))?  # a decimal, with its unit
  | \d+(?:,\d{3})*\s?(?:%|°|×)                              # a percentage, angle or factor
  | \d+(?:,\d{3})*\s?(?:s|ms|AP|points?)(?!\w)              # a time, an AP, points
)""", re.X)
# Constants that are not measurements, each with why it may stay typed. Keep this short.
ALLOWED_NUMBERS = {
    "28.6°": "the margin m = 0.5 rad in degrees, a definition",
    "90°": "orthogonal vectors, a definition",
    "180°": "opposite vectors, the end of the angle range",
    "0°": "identical directions, the start of the angle range",
    "112×": "the papers' crop size, 112×112 pixels, a fixed protocol setting",
    "95%": "the confidence level of every interval in the book",
}
MAX_MARKDOWN_NUMBERS = 30  # across all notebooks (issue 30: 301 before)


def markdown_numbers(source: str) -> list[str]:
    """The scan's hits in one markdown cell (math, code and link targets removed first)."""
    for pattern in (r"```.*?```", r"\$\$.*?\$\$", r"\$[^$\n]*\$", r"`[^`\n]*`", r"\]\([^)]*\)"):
        source = re.sub(pattern, " ", source, flags=re.S)
    return [m.group(1).replace(" ", "") for m in MEASURED.finditer(source)]


def test_the_scan_finds_what_it_should():
    text = ("ArcFace reaches 83.4 % (±1.2 points) in 3.5 s, 17° and 4× faster; "
            "`0.5` and $0.35$ are code and math; ```\n1.0\n``` fenced; 3 seeds; 2 AP")
    assert markdown_numbers(text) == ["83.4%", "1.2points", "3.5s", "17°", "4×", "2AP"]


def test_markdown_states_no_measured_numbers():
    found = {p.stem: [n for c in nbformat.read(p, as_version=4).cells
                      if c.cell_type == "markdown" for n in markdown_numbers(c.source)]
             for p in NOTEBOOKS}
    typed = {k: [n for n in v if n not in ALLOWED_NUMBERS] for k, v in found.items()}
    assert not any(typed.values()), (
        f"numbers typed into markdown (state them from results with claims.say): "
        f"{ {k: v for k, v in typed.items() if v} }")
    assert sum(map(len, found.values())) <= MAX_MARKDOWN_NUMBERS, found
