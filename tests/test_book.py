"""The book builds from the smoke outputs with warnings as errors, and works offline."""

from __future__ import annotations

import re
import shutil

import pytest

from arclab.book.notebook import repo_root
from arclab.book.runner import build_book, notebook_paths

ROOT = repo_root()


def copy_book(tmp_path):
    dest = tmp_path / "book"
    shutil.copytree(ROOT / "book", dest, ignore=shutil.ignore_patterns(
        "_build", "notebooks", "_vendor"))
    return dest


def test_book_builds_strictly_and_offline(smoke_run, tmp_path):
    book = copy_book(tmp_path)
    index = build_book(smoke_run["executed"], book_dir=book)
    assert index.is_file()
    html = book / "_build" / "html"
    for nb in notebook_paths(ROOT / "notebooks"):
        page = (html / "notebooks" / f"{nb.stem}.html").read_text()
        assert "Reproduces:" in page
        assert "Traceback" not in page
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', page)
        assert not [s for s in scripts if "://" in s], f"{nb.stem} loads scripts from a CDN"
        assert "application/vnd.jupyter.widget-view+json" not in page
    tour = (html / "notebooks" / "00_tour.html").read_text()
    figures = re.findall(r'<img[^>]+src="\.\./(_images/[^"]+\.svg)"', tour)
    assert figures and all((html / f).is_file() for f in figures)
    assert any("mathjax/MathJax.js" in s for s in re.findall(r'<script[^>]+src="([^"]+)"', tour))
    assert (html / "_static" / "mathjax" / "MathJax.js").is_file()
    # the root redirect names the icon, so no browser asks for a missing /favicon.ico
    icon = re.search(r'<link rel="icon" href="([^"]+)"', index.read_text())
    assert icon and (html / icon.group(1)).is_file()


def test_book_build_fails_on_a_warning(smoke_run, tmp_path):
    book = copy_book(tmp_path)
    (book / "intro.md").write_text((book / "intro.md").read_text() + "\nSee {doc}`nowhere`.\n")
    with pytest.raises(RuntimeError, match="nowhere"):
        build_book(smoke_run["executed"], book_dir=book)


def test_book_build_needs_every_executed_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="00_tour.ipynb is missing"):
        build_book(tmp_path, book_dir=copy_book(tmp_path))
