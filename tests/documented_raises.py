"""Shared checks for the ``tests/test_documented_errors*.py`` sweeps.

Each sweep file lists ``CASES`` as ``(function, exception, message pattern, call)`` and the
modules it covers; these helpers read a docstring's ``Raises:`` section and run the checks.
"""

from __future__ import annotations

import re
import types

import pytest


def documented(obj) -> set[str]:
    """Exception names listed in the ``Raises:`` section of ``obj``'s docstring."""
    doc = obj.__doc__ or ""
    match = re.search(r"^\s*Raises:\n(.*?)(?:^\s*(?:Example|Examples|Returns|Taught in)\b|\Z)",
                      doc, re.S | re.M)
    return set(re.findall(r"^\s{4,}(\w+(?:Error|Warning)):", match.group(1), re.M)) \
        if match else set()


def ident(obj) -> str:
    return f"{obj.__module__.rsplit('.', 1)[-1]}.{obj.__qualname__}"


def by_function(cases) -> dict:
    grouped: dict = {}
    for case in cases:
        grouped.setdefault(case[0], []).append(case[1:])
    return grouped


def check_raised(function, cases, tmp_path) -> None:
    """Each call raises its exception with a message matching its pattern, of a type the
    docstring lists (a RuntimeError from torch is not a ValueError)."""
    for exception, pattern, call in cases:
        with pytest.raises(exception, match=pattern) as info:
            call(tmp_path)
        assert any(k.__name__ in documented(function) for k in type(info.value).__mro__), \
            f"{ident(function)} raised {type(info.value).__name__}: {info.value}"


def check_docstring(function, cases) -> None:
    raised = {exception.__name__ for exception, _, _ in cases}
    assert documented(function) == raised, ident(function)


def check_coverage(modules, grouped: dict, no_errors: dict) -> None:
    """Every public function and class of ``modules`` defined there is either tested or listed
    in ``no_errors`` (with the reason it has no error to document), not both."""
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, (types.FunctionType, type)) and obj.__module__ == module.__name__:
                where = f"{module.__name__}.{name}"
                assert (obj in grouped) != (where in no_errors), where
                assert not documented(obj) or obj in grouped, f"{where}: Raises untested"


def sweep_tests(cases, modules, no_errors: dict) -> tuple:
    """The three tests of a sweep file, to bind to ``test_*`` names there: each documented
    error is raised (per function), each docstring lists exactly the errors tested, and every
    public function and class of ``modules`` is covered."""
    grouped = by_function(cases)

    @pytest.mark.parametrize("function", list(grouped), ids=ident)
    def raised(function, tmp_path):
        check_raised(function, grouped[function], tmp_path)

    @pytest.mark.parametrize("function", list(grouped), ids=ident)
    def listed(function):
        check_docstring(function, grouped[function])

    def covered():
        check_coverage(modules, grouped, no_errors)

    return raised, listed, covered
