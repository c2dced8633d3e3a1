"""The book's tooling: what notebooks share, the runner that executes them and builds the
book, the interactive widgets and the figure functions.

- :mod:`~arclab.book.notebook`: provenance, profile parameters, results JSON, tables, the map
  of which notebook reproduces what;
- :mod:`~arclab.book.runner`: ``python -m arclab.book.runner run|book|list``: papermill
  execution and the Jupyter Book build;
- :mod:`~arclab.book.widgets`: ipywidgets controls, each with a static fallback;
- :mod:`~arclab.book.plotting`: one figure style and every figure the notebooks draw.

This package imports nothing itself, so the runner's command line starts without torch.

Taught in: notebooks/00_tour.ipynb
"""
