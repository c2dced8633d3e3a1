# arclab. Every target creates .venv first if it is missing, so a fresh clone needs only
# Python 3.11 and `make`. Executed notebooks go to build/<profile>/; a notebook re-executes only
# when it, params/<profile>.yaml or a file under lib/ changed.
#   make book                  execute every notebook (book profile) and render book/_build/html
#   make test                  lint, unit tests, smoke runs of every notebook, strict book build
#   make notebooks PROFILE=smoke|book|full
#   make lab                   JupyterLab on notebooks/ with the venv's kernel

PYTHON   ?= $(shell command -v python3.11 || command -v python3)
VENV     := .venv
PY       := $(VENV)/bin/python
PROFILE  ?= book
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
LIB      := $(shell find lib -name '*.py' -not -path '*/__pycache__/*')
EXECUTED  = $(patsubst notebooks/%.ipynb,build/$(PROFILE)/%.ipynb,$(NOTEBOOKS))
BOOK_SRC := book/_config.yml book/_toc.yml $(wildcard book/*.md book/_ext/*.py book/_assets/*)
BOOK_STAMP = book/_build/.built-$(PROFILE)
STARTED  := $(shell date +%s)
TIMINGS   = $(PY) -m arclab.book.runner timings --profile $(PROFILE) --since $(STARTED)

.PHONY: venv test book notebooks lab lint clean distclean chromium

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,docs,export,tensorboard]'
	touch $@

venv: $(VENV)/.installed

build/$(PROFILE)/%.ipynb: notebooks/%.ipynb params/$(PROFILE).yaml $(LIB) | $(VENV)/.installed
	$(PY) -m arclab.book.runner run --profile $(PROFILE) $*

# each notebook's wall time (results/<profile>/timings.json); those Make skipped: "up to date"
notebooks: $(EXECUTED)
	@$(TIMINGS)

$(BOOK_STAMP): $(EXECUTED) $(BOOK_SRC) | $(VENV)/.installed
	rm -f book/_build/.built-*
	$(PY) -m arclab.book.runner book --profile $(PROFILE)
	touch $@

book: $(BOOK_STAMP)
	@$(TIMINGS)
	@echo "open book/_build/html/index.html"

# The browser test of the rendered book needs Debian's chromium: where it is missing and we run
# as root with apt-get (a CI container), install it; elsewhere the browser checks skip.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && { apt-get install -y -q chromium >/dev/null 2>&1 \
	       || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } \
	  || echo "no chromium: the browser checks of the book will be skipped" >&2

test: $(VENV)/.installed chromium
	$(VENV)/bin/ruff check lib tests $(wildcard benchmarks/*.py)
	$(VENV)/bin/nbstripout --verify $(NOTEBOOKS)
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check lib tests $(wildcard benchmarks/*.py)
	$(VENV)/bin/nbstripout --verify notebooks/*.ipynb

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf build results book/_build book/notebooks book/_vendor .pytest_cache

distclean: clean
	rm -rf $(VENV)
