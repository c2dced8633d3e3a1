"""The package's shape, measured from the source (issue "The package's shape").

Run as a script for the report (``python tests/test_package_shape.py``); under pytest each
figure is checked against its limit, and the import graph between arclab modules must have no
cycle. Everything is read with :mod:`ast`, nothing is imported.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"
PACKAGE = LIB / "arclab"

MAX_ROOT_MODULES = 8        # .py files at the package root besides __init__.py
MAX_LONG_FILES = 1          # files over LONG_FILE lines
LONG_FILE = 400
MAX_LONG_FUNCTIONS = 3      # functions over LONG_FUNCTION lines, each with a comment saying why
LONG_FUNCTION = 80
MAX_LOCAL_IMPORTS = 15      # arclab imports inside function bodies


def module_name(path: Path) -> str:
    parts = path.relative_to(LIB).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_package else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path) -> list[tuple[str, ast.AST, bool]]:
    """(imported arclab module, node, inside a function body) for each import in ``path``.

    ``from arclab.x import y`` counts as importing ``arclab.x.y`` when that is a module, else
    ``arclab.x``. Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    known = modules()
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    local: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            local.update(id(n) for b in node.body for n in ast.walk(b))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, name, path.name == "__init__.py")
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        for t in dict.fromkeys(targets):
            if t == "arclab" or t.startswith("arclab."):
                found.append((t, node, id(node) in local))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the arclab modules importing it runs at import time.

    Importing ``arclab.a.b`` first runs ``arclab/__init__`` and ``arclab/a/__init__``, so an
    edge goes to every enclosing package too (a module never depends on its own parents this
    way: Python has already started them).
    """
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        edges = set()
        for target, _, is_local in imports(name, path):
            if is_local:
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep != name and not name.startswith(dep + "."):
                    edges.add(dep)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph() -> dict[str, set[str]]:
    """Top-level part (``losses``, ``data``, ``reference`` ...) -> the parts it imports."""
    graph: dict[str, set[str]] = {}
    for name, deps in import_graph().items():
        part = name.split(".")[1] if "." in name else None
        if part is None:
            continue
        graph.setdefault(part, set()).update(
            d.split(".")[1] for d in deps if "." in d and d.split(".")[1] != part)
    return graph


def long_functions() -> list[tuple[str, int, str]]:
    """(module:function, lines, the comment above it) for functions over LONG_FUNCTION lines."""
    out = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > LONG_FUNCTION:
                    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                    above = lines[first - 2].strip() if first >= 2 else ""
                    out.append((f"{name}:{node.name}", n, above))
    return sorted(out, key=lambda t: -t[1])


def private_imports() -> list[str]:
    """``from arclab.x import _name`` across modules (a module's own privates are fine)."""
    out = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                if base.startswith("arclab"):
                    out += [f"{name} <- {base}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def report() -> dict[str, object]:
    mods = modules()
    root = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    sizes = {n: len(p.read_text().splitlines()) for n, p in mods.items()}
    local = [(n, node.lineno, t) for n, p in mods.items()
             for t, node, is_local in imports(n, p) if is_local]
    stems = Counter(p.stem for p in mods.values() if p.stem != "__init__")
    stems.update(p.name for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__")
    return {
        "root modules": sorted(root),
        "long files": sorted((n, s) for n, s in sizes.items() if s > LONG_FILE),
        "long functions": long_functions(),
        "function-local arclab imports": local,
        "import cycles": cycles(import_graph()),
        "cycles between the package's parts": cycles(package_graph()),
        "private names imported across modules": private_imports(),
        "module names used twice": sorted(s for s, c in stems.items() if c > 1),
    }


def test_root_has_few_modules():
    assert len(report()["root modules"]) <= MAX_ROOT_MODULES


def test_files_are_short():
    assert len(report()["long files"]) <= MAX_LONG_FILES, report()["long files"]


def test_long_functions_are_few_and_say_why():
    found = long_functions()
    assert len(found) <= MAX_LONG_FUNCTIONS, found
    for where, n, above in found:
        assert above.startswith("#"), f"{where} has {n} lines and no comment saying why"


def test_imports_are_at_module_level_with_reasons():
    local = report()["function-local arclab imports"]
    assert len(local) <= MAX_LOCAL_IMPORTS, local
    for name, lineno, _ in local:
        lines = modules()[name].read_text().splitlines()
        said = " ".join(lines[max(0, lineno - 3): lineno]).lower()
        assert "cycle" in said or "heavy" in said or "optional" in said, \
            f"{name}:{lineno}: a function-local import needs a comment saying which cycle " \
            "or heavy dependency it avoids"


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_parts_depend_one_way():
    # losses, models, data, evaluation -> train, detection, parallel -> experiments, book
    graph = package_graph()
    assert cycles(graph) == [], graph
    assert "evaluation" not in graph["data"], "the generator must not import the evaluator"
    for low in ("losses", "models", "data", "evaluation"):
        assert not graph[low] & {"train", "detection", "parallel", "experiments", "book"}, \
            f"{low} imports {graph[low]}"


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_private_names_cross_modules():
    assert private_imports() == []


def test_module_names_are_unique():
    assert report()["module names used twice"] == []


if __name__ == "__main__":
    for key, value in report().items():
        count = len(value)
        print(f"{key}: {count}")
        for item in value:
            print(f"    {item}")
