"""Sphinx extension for the arclab book: pages that load without console errors.

sphinx-thebe and sphinx-togglebutton register some inline ``<script>`` bodies twice under
jupyter-book 1.0 (the second ``const THEBE_JS_URL`` throws a SyntaxError on every page). Each
page keeps the first copy of every identical script (the copies differ only in a filename of
None versus ""). It runs last (priority 999) and edits the list in place.
"""

from __future__ import annotations

from typing import Any


def _dedupe_scripts(app, pagename: str, templatename: str, context: dict[str, Any],
                    doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        name = getattr(script, "filename", script) or ""  # None and "" both mean inline
        key = (str(name), tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=999)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
